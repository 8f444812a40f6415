// The bank of concurrency.test.ts: accounts whose balances always sum to TOTAL, and a ledger
// with one row per committed transfer, both written by the same transactions.
import { model, t } from '../../src/index.js';
import type { Database } from '../../src/index.js';

export const ACCOUNTS = 64;
export const OPENING_BALANCE = 1_000;
export const TOTAL = ACCOUNTS * OPENING_BALANCE;

export const Accounts = model('accounts', {
  id: t.int(),
  owner: t.string(),
  balance: t.int(),
  version: t.int(),
}, { primaryKey: 'id', indexes: [{ name: 'byOwner', fields: ['owner'] }] });

export const Transfers = model('transfers', {
  id: t.int(),
  from: t.int(),
  to: t.int(),
  amount: t.int(),
}, { primaryKey: 'id', indexes: [{ name: 'byFrom', fields: ['from'] }] });

export async function openBank(db: Database): Promise<void> {
  const accounts = await db.register(Accounts);
  await db.register(Transfers);
  if ((await accounts.count()) === 0) {
    await accounts.insertMany(Array.from({ length: ACCOUNTS }, (_, id) => ({ id, owner: `owner${id % 8}`, balance: OPENING_BALANCE, version: 0 })));
  }
}

/**
 * One transfer in one transaction: both balances, both versions, and a ledger row. When
 * `failMidway`, it throws after the first update: the transaction must roll back entirely.
 */
export async function transfer(db: Database, id: number, from: number, to: number, amount: number, failMidway = false): Promise<void> {
  await db.transaction(async (tx) => {
    const accounts = tx.collection(Accounts);
    const a = await accounts.get(from), b = await accounts.get(to);
    if (!a || !b) throw new Error(`account ${from} or ${to} missing`);
    await accounts.update(from, { balance: a.balance - amount, version: a.version + 1 });
    if (failMidway) throw new RollbackProbe();
    await accounts.update(to, { balance: b.balance + amount, version: b.version + 1 });
    await tx.collection(Transfers).insert({ id, from, to, amount });
  });
}

export class RollbackProbe extends Error {
  constructor() { super('deliberate failure inside a transfer'); }
}

/** A bank spread over many leaf pages (long rows), for readers whose queries take a while. */
export const BIG_ACCOUNTS = 3000;
export const BIG_TOTAL = BIG_ACCOUNTS * OPENING_BALANCE;
export const LedgerBig = model('ledger_big', {
  id: t.int(),
  balance: t.int(),
  memo: t.string(),
}, { primaryKey: 'id' });
