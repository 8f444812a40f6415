// The workload of io-faults.test.ts, with a plain-JS reference of what the database must hold.
// Two collections with secondary indexes (one unique); a base image built once without faults;
// then steps run through the public API on a Database over a FaultyStore: multi-collection
// transactions (one of them large enough to write pages out before its commit), a spilling
// ORDER BY, and index-driven reads. Each step's effect on the reference is applied only when
// the step succeeded.
import { Database, ModelVaultError, count, model, sum, t, type Infer, type OpenOptions } from '../../src/index.js';
import { prng, randomInt } from '../crash/crash-helpers.js';
import type { BlockStore } from '../../storage/block-store.js';

export const Accounts = model('accounts', {
  id: t.int(),
  owner: t.string(),
  balance: t.int(),
  tier: t.enum(['a', 'b', 'c']),
}, {
  primaryKey: 'id',
  indexes: [
    { name: 'byOwner', fields: ['owner'] },
    { name: 'byTier', fields: ['tier', 'balance'] },
  ],
});

export const Ledger = model('ledger', {
  id: t.int(),
  account: t.int(),
  amount: t.int(),
  memo: t.string(),
  ref: t.string().optional(),
}, {
  primaryKey: 'id',
  indexes: [
    { name: 'byAccount', fields: ['account'] },
    { name: 'byRef', fields: ['ref'], unique: true },
  ],
});

export type Account = Infer<typeof Accounts>;
export type LedgerRow = Infer<typeof Ledger>;

export const PAGE_SIZE = 16384;
/** Operator memory small enough that ORDER BY memo over the ledger spills several runs. */
export const MEMORY_LIMIT = 48 * 1024;
/** A transaction writes its modified pages out once they pass this (PagerOptions.maxDirtyBytes). */
export const MAX_DIRTY_BYTES = 8 * PAGE_SIZE;
export const BASE_ACCOUNTS = 120;
export const BASE_LEDGER = 1600;

/** Options of every open in the fault loop (maxDirtyBytes reaches the pager through the options object). */
export const OPEN_OPTS = { pageSize: PAGE_SIZE, cacheSize: 0, memoryLimit: MEMORY_LIMIT, maxDirtyBytes: MAX_DIRTY_BYTES } as OpenOptions;

const memoFor = (i: number, random: () => number) => `m${String(randomInt(random, 0, 1e6)).padStart(6, '0')}-${i}-`.padEnd(48 + (i % 23), 'x');

/** The reference: what the collections must hold. */
export class RefState {
  constructor(readonly accounts: Map<number, Account>, readonly ledger: Map<number, LedgerRow>) {}
  clone(): RefState {
    return new RefState(new Map([...this.accounts].map(([k, v]) => [k, { ...v }])), new Map([...this.ledger].map(([k, v]) => [k, { ...v }])));
  }
  /** Canonical text of the whole state (fields in a fixed order, rows by id). */
  digest(): string {
    const accounts = [...this.accounts.values()].sort((a, b) => a.id - b.id).map((a) => [a.id, a.owner, a.balance, a.tier]);
    const ledger = [...this.ledger.values()].sort((a, b) => a.id - b.id).map((r) => [r.id, r.account, r.amount, r.memo, r.ref ?? null]);
    return JSON.stringify({ accounts, ledger });
  }
  get total(): number {
    let n = 0;
    for (const a of this.accounts.values()) n += a.balance;
    return n;
  }
}

export function baseState(): RefState {
  const random = prng(0xba5e);
  const accounts = new Map<number, Account>();
  for (let i = 0; i < BASE_ACCOUNTS; i++) {
    accounts.set(i, { id: i, owner: `owner${i % 37}`, balance: 1000 + randomInt(random, 0, 500), tier: (['a', 'b', 'c'] as const)[i % 3] });
  }
  const ledger = new Map<number, LedgerRow>();
  for (let i = 0; i < BASE_LEDGER; i++) {
    const row: LedgerRow = { id: i, account: randomInt(random, 0, BASE_ACCOUNTS), amount: randomInt(random, -500, 500), memo: memoFor(i, random) };
    if (i % 4 === 0) row.ref = `r${i}`;
    ledger.set(i, row);
  }
  return new RefState(accounts, ledger);
}

/** The committed image of the base state, built without faults. */
export async function buildBaseImage(state: RefState): Promise<Uint8Array> {
  const db = await Database.openInMemory({ pageSize: PAGE_SIZE });
  try {
    await (await db.register(Accounts)).insertMany(state.accounts.values());
    await (await db.register(Ledger)).insertMany(state.ledger.values());
    return await db.snapshotBytes();
  } finally {
    await db.close();
  }
}

/** One step: runs against the database, and (when it succeeded) changes the reference. */
export interface Step {
  readonly name: string;
  readonly commits: boolean;
  run(db: Database, ref: RefState): Promise<void>;
  apply?(ref: RefState): void;
}

/**
 * The steps. Keys touched by different steps are disjoint, so every step is valid whether or
 * not an earlier one failed; reads compare what they get with the reference as it stands.
 */
export function steps(): Step[] {
  const txTransfer: Step = {
    name: 'transaction: transfers + ledger inserts/deletes + new accounts',
    commits: true,
    async run(db, ref) {
      await db.transaction(async (tx) => {
        const accounts = tx.collection(Accounts), ledger = tx.collection(Ledger);
        for (const [from, to, amount] of TRANSFERS) {
          const a = await accounts.get(from), b = await accounts.get(to);
          if (!a || !b) throw new Error(`test bug: account ${from} or ${to} missing`);
          await accounts.update(from, { balance: a.balance - amount });
          await accounts.update(to, { balance: b.balance + amount });
        }
        for (const row of TX1_LEDGER) await ledger.insert(row);
        for (const id of TX1_DELETES) if (!(await ledger.delete(id))) throw new Error(`test bug: ledger ${id} missing`);
        for (const acc of TX1_ACCOUNTS) await accounts.insert(acc);
        // Reads inside the transaction see its own writes (through the unique and plain indexes).
        const first = await ledger.query().where('ref', '=', TX1_LEDGER[0].ref).toArray();
        if (first.length !== 1 || first[0].id !== TX1_LEDGER[0].id) throw new Error('transaction does not see its own insert through byRef');
        if ((await accounts.count()) !== ref.accounts.size + TX1_ACCOUNTS.length) throw new Error('count inside the transaction is wrong');
      });
    },
    apply(ref) {
      for (const [from, to, amount] of TRANSFERS) {
        ref.accounts.get(from)!.balance -= amount;
        ref.accounts.get(to)!.balance += amount;
      }
      for (const row of TX1_LEDGER) ref.ledger.set(row.id, { ...row });
      for (const id of TX1_DELETES) ref.ledger.delete(id);
      for (const acc of TX1_ACCOUNTS) ref.accounts.set(acc.id, { ...acc });
    },
  };

  const spillingQuery: Step = {
    name: 'spilling query: ORDER BY memo over the ledger',
    commits: false,
    async run(db, ref) {
      const ledger = await db.collection('ledger');
      const rows = await ledger.query().orderBy('memo').orderBy('id').select('id', 'memo').toArray();
      const expected = [...ref.ledger.values()].sort((a, b) => (a.memo < b.memo ? -1 : a.memo > b.memo ? 1 : a.id - b.id)).map((r) => r.id);
      const got = rows.map((r) => r.id as number);
      if (got.length !== expected.length || got.some((id, i) => id !== expected[i])) {
        throw new Error(`spilling query returned ${got.length} rows, expected ${expected.length} (or a different order)`);
      }
    },
  };

  const txBulk: Step = {
    name: 'transaction: bulk ledger insert (pages written before commit) + account updates',
    commits: true,
    async run(db) {
      await db.transaction(async (tx) => {
        const ledger = tx.collection(Ledger), accounts = tx.collection(Accounts);
        await ledger.insertMany(TX2_LEDGER);
        for (const id of TX2_UPDATES) await ledger.update(id, { memo: `updated-${id}`, ref: `u${id}` });
        for (const id of TX2_ACCOUNT_DELETES) if (!(await accounts.delete(id))) throw new Error(`test bug: account ${id} missing`);
      });
    },
    apply(ref) {
      for (const row of TX2_LEDGER) ref.ledger.set(row.id, { ...row });
      for (const id of TX2_UPDATES) Object.assign(ref.ledger.get(id)!, { memo: `updated-${id}`, ref: `u${id}` });
      for (const id of TX2_ACCOUNT_DELETES) ref.accounts.delete(id);
    },
  };

  const indexReads: Step = {
    name: 'index reads and an aggregate',
    commits: false,
    async run(db, ref) {
      const accounts = await db.collection('accounts'), ledger = await db.collection('ledger');
      const owner = 'owner5';
      const byOwner = (await accounts.query().where('owner', '=', owner).toArray()).map((r) => r.id).sort((a, b) => (a as number) - (b as number));
      const expOwner = [...ref.accounts.values()].filter((a) => a.owner === owner).map((a) => a.id).sort((a, b) => a - b);
      if (JSON.stringify(byOwner) !== JSON.stringify(expOwner)) throw new Error('byOwner index read differs');
      const acct = 7;
      const n = await ledger.query().where('account', '=', acct).count();
      if (n !== [...ref.ledger.values()].filter((r) => r.account === acct).length) throw new Error('byAccount index count differs');
      const [agg] = await accounts.query().aggregate({ n: count(), total: sum('balance') }).toArray();
      if (agg.n !== ref.accounts.size || agg.total !== ref.total) throw new Error(`aggregate ${JSON.stringify(agg)} differs`);
    },
  };

  const txSmall: Step = {
    name: 'autocommit: one ledger insert',
    commits: true,
    async run(db) {
      await (await db.collection('ledger')).insert(TX3_ROW);
    },
    apply(ref) {
      ref.ledger.set(TX3_ROW.id, { ...TX3_ROW });
    },
  };

  // The last spill comes after the last commit, so close() has a spill tail to truncate.
  return [txTransfer, spillingQuery, txBulk, indexReads, txSmall, { ...spillingQuery, name: `${spillingQuery.name}, again` }];
}

// Deterministic step data; key ranges are disjoint between steps.
const stepRandom = prng(0x57e9);
const TRANSFERS: [number, number, number][] = Array.from({ length: 25 }, (_, i) => [i * 2, i * 2 + 1, 10 + i]);
const TX1_LEDGER: LedgerRow[] = Array.from({ length: 40 }, (_, k) => ({ id: 100_000 + k, account: k % 50, amount: k, memo: memoFor(100_000 + k, stepRandom), ref: `t1-${k}` }));
const TX1_DELETES = Array.from({ length: 12 }, (_, k) => 1 + k * 7);
const TX1_ACCOUNTS: Account[] = Array.from({ length: 5 }, (_, k) => ({ id: 10_000 + k, owner: `owner5`, balance: 0, tier: 'c' }));
const TX2_LEDGER: LedgerRow[] = Array.from({ length: 450 }, (_, k) => ({ id: 200_000 + k, account: 60 + (k % 40), amount: -k, memo: memoFor(200_000 + k, stepRandom), ...(k % 3 === 0 ? { ref: `t2-${k}` } : {}) }));
const TX2_UPDATES = Array.from({ length: 15 }, (_, k) => 1000 + k * 5);
const TX2_ACCOUNT_DELETES = [110, 111, 112];
const TX3_ROW: LedgerRow = { id: 300_000, account: 3, amount: 42, memo: 'the last one', ref: 't3' };

/** Everything the database holds, in the reference's digest form; also checks counts and indexes. */
export async function readState(db: Database): Promise<RefState> {
  const accounts = new Map<number, Account>(), ledger = new Map<number, LedgerRow>();
  const names = (await db.collections()).map((c) => c.name).sort();
  if (names.join(',') !== 'accounts,ledger') throw new Error(`collections ${names.join(',')}`);
  const acc = await db.collection('accounts'), led = await db.collection('ledger');
  for (const row of await acc.query().toArray()) accounts.set(row.id as number, row as Account);
  for (const row of await led.query().toArray()) ledger.set(row.id as number, row as LedgerRow);
  if ((await acc.count()) !== accounts.size) throw new Error(`accounts: row count ${await acc.count()} but ${accounts.size} rows`);
  if ((await led.count()) !== ledger.size) throw new Error(`ledger: row count ${await led.count()} but ${ledger.size} rows`);
  // Every index tree holds exactly one entry per row.
  for (const meta of await db.collections()) {
    using snap = db.engine.snapshot();
    for (const ix of meta.indexes) {
      let n = 0;
      for await (const _ of snap.entries(ix.tree)) n++;
      if (n !== meta.rowCount) throw new Error(`index ${meta.name}.${ix.name} holds ${n} entries for ${meta.rowCount} rows`);
    }
  }
  // Index-driven reads agree with the rows.
  for (const tier of ['a', 'b', 'c'] as const) {
    const n = await acc.query().where('tier', '=', tier).count();
    const exp = [...accounts.values()].filter((a) => a.tier === tier).length;
    if (n !== exp) throw new Error(`byTier(${tier}) gives ${n}, rows say ${exp}`);
  }
  for (const row of ledger.values()) {
    if (row.ref === undefined || row.id % 331 !== 0) continue;
    const hits = await led.query().where('ref', '=', row.ref).toArray();
    if (hits.length !== 1 || hits[0].id !== row.id) throw new Error(`byRef(${row.ref}) gives ${hits.length} rows`);
  }
  return new RefState(accounts, ledger);
}

export function isIoError(err: unknown): err is ModelVaultError {
  return err instanceof ModelVaultError && err.code === 'IO';
}

export async function openOver(store: BlockStore): Promise<Database> {
  return Database.openStore(store, OPEN_OPTS);
}
