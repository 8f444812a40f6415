// Transactions: commit on resolve, rollback on throw (same error), own writes visible inside,
// snapshot isolation for readers and running queries, one writer at a time, closed after
// the callback, database-level calls join the running transaction, caught errors keep
// earlier writes, snapshotBytes() sees only committed state.
import { describe, expect, it } from 'vitest';
import { Database, model, t, type Collection, type Transaction } from '../../src/index.js';
import { MODES, byId, expectCode, openDb } from '../helpers/db.js';

const Accounts = model('accounts', {
  id: t.int(),
  owner: t.string(),
  balance: t.int(),
  email: t.string().optional(),
  pad: t.string().optional(),
}, { primaryKey: 'id', indexes: [{ name: 'byOwner', fields: ['owner'] }, { name: 'byEmail', fields: ['email'], unique: true }] });

const account = (id: number, balance = 100) => ({ id, owner: `o${id % 10}`, balance });

/** A promise with its resolver, to hold a transaction open at a known point. */
function gate<T = void>(): { promise: Promise<T>; open(v: T): void } {
  let open!: (v: T) => void;
  const promise = new Promise<T>((resolve) => { open = resolve; });
  return { promise, open };
}

/** Lets queued work run: several turns of the event loop. */
async function settle(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setImmediate(resolve));
}

async function setup(mode: (typeof MODES)[number], n = 10, opts = {}) {
  const db = await openDb(mode, opts);
  const accounts = await db.register(Accounts);
  if (n > 0) await accounts.insertMany(Array.from({ length: n }, (_, i) => account(i)));
  return { db, accounts };
}

const state = async (c: Collection<typeof Accounts>) => (await c.query().toArray()).sort(byId);

describe.each(MODES)('db.transaction (%s)', (mode) => {
  it('commits when the callback resolves and passes its return value through', async () => {
    const { db, accounts } = await setup(mode);
    const result = await db.transaction(async (tx) => {
      const a = tx.collection(Accounts);
      await a.insert(account(100));
      await a.update(1, { balance: 0 });
      await a.delete(2);
      return { total: await a.count(), tag: 'done' };
    });
    expect(result).toEqual({ total: 10, tag: 'done' });
    expect(await accounts.get(100)).toEqual(account(100));
    expect((await accounts.get(1))!.balance).toBe(0);
    expect(await accounts.get(2)).toBeUndefined();
    expect(await accounts.count()).toBe(10);
  });

  it('rolls back when the callback throws, re-throwing the same error object', async () => {
    const { db, accounts } = await setup(mode);
    const before = await state(accounts);
    const boom = new Error('boom');
    await expect(db.transaction(async (tx) => {
      const a = tx.collection(Accounts);
      await a.insert(account(100));
      await a.update(1, { balance: 0, email: 'x@y.z' });
      await a.delete(2);
      await a.insertMany(Array.from({ length: 50 }, (_, i) => account(200 + i)));
      expect(await a.count()).toBe(60);
      throw boom;
    })).rejects.toBe(boom);
    // a thrown non-Error value comes out as is too
    const odd = { reason: 'not an Error' };
    await expect(db.transaction(async (tx) => {
      await tx.collection(Accounts).insert(account(101));
      throw odd;
    })).rejects.toBe(odd);
    expect(await accounts.count()).toBe(10);
    expect(await state(accounts)).toEqual(before);
    expect(await accounts.query().where('owner', '=', 'o0').count()).toBe(1);
    // the unique value the rolled-back update set is free
    await accounts.update(3, { email: 'x@y.z' });
    expect((await accounts.query().where('email', '=', 'x@y.z').toArray()).map((r) => r.id)).toEqual([3]);
  });

  it('reads inside see the transaction’s own writes (get, count, query)', async () => {
    const { db, accounts } = await setup(mode);
    await db.transaction(async (tx) => {
      const a = tx.collection(Accounts);
      await a.insert({ ...account(100), owner: 'new-owner', email: 'n@o.p' });
      await a.update(1, { balance: 7 });
      await a.delete(2);
      expect(await a.get(100)).toEqual({ ...account(100), owner: 'new-owner', email: 'n@o.p' });
      expect((await a.get(1))!.balance).toBe(7);
      expect(await a.get(2)).toBeUndefined();
      expect(await a.count()).toBe(10);
      expect(await a.query().count()).toBe(10);
      expect((await a.query().where('owner', '=', 'new-owner').toArray()).map((r) => r.id)).toEqual([100]);
      expect((await a.query().where('email', '=', 'n@o.p').toArray()).map((r) => r.id)).toEqual([100]);
      expect((await a.query().where('balance', '=', 7).toArray()).map((r) => r.id)).toEqual([1]);
      expect((await a.query().toArray()).map((r) => r.id).sort((x, y) => x - y)).toEqual([0, 1, 3, 4, 5, 6, 7, 8, 9, 100]);
      // the database-level handle, called from inside the callback, joins the transaction
      expect(await accounts.get(100)).toBeDefined();
    });
  });

  it('a reader outside does not see uncommitted writes; after the commit it does', async () => {
    const { db, accounts } = await setup(mode);
    const written = gate();
    const release = gate();
    const tx = db.transaction(async (t) => {
      const a = t.collection(Accounts);
      await a.insert(account(100));
      await a.update(1, { balance: 0 });
      await a.delete(2);
      written.open();
      await release.promise;
    });
    await written.promise;
    // this code runs outside the callback: it reads the last committed state
    expect(await accounts.get(100)).toBeUndefined();
    expect((await accounts.get(1))!.balance).toBe(100);
    expect(await accounts.get(2)).toEqual(account(2));
    expect(await accounts.count()).toBe(10);
    expect(await accounts.query().count()).toBe(10);
    expect((await accounts.query().where('balance', '=', 0).toArray())).toEqual([]);
    const snap = await Database.openSnapshotBytes(await db.snapshotBytes());
    expect(await (await snap.register(Accounts)).count()).toBe(10);
    await snap.close();
    release.open();
    await tx;
    expect(await accounts.get(100)).toEqual(account(100));
    expect(await accounts.count()).toBe(10);
    expect((await accounts.get(1))!.balance).toBe(0);
  });

  it('a query started before a commit returns the state it started on (snapshot isolation)', async () => {
    const { db, accounts } = await setup(mode, 0, { cacheSize: 2 ** 20 });
    const N = 5000;
    await accounts.insertMany(Array.from({ length: N }, (_, i) => ({ ...account(i, i), pad: `p${i}`.padEnd(200, '.') })));
    const before = await state(accounts);
    const it = accounts.query().batches()[Symbol.asyncIterator]();
    const seen: typeof before = [];
    const first = await it.next();
    expect(first.done).toBe(false);
    seen.push(...first.value!);
    expect(seen.length).toBeLessThan(N);

    // commit big changes while the query is between batches: every row changes, some go,
    // new ones come, so freed pages would be reused if the query's snapshot did not pin them
    await accounts.insertMany(Array.from({ length: 2000 }, (_, i) => ({ ...account(N + i, -1), pad: 'new'.repeat(70) })));
    await db.transaction(async (tx) => {
      const a = tx.collection(Accounts);
      for (let i = 0; i < N; i += 3) await a.delete(i);
    });
    await db.transaction(async (tx) => {
      const a = tx.collection(Accounts);
      for (let i = 1; i < N; i += 3) await a.put({ ...account(i, -i), pad: 'changed'.repeat(40) });
    });
    await accounts.update(2, { balance: -2 });

    for (;;) {
      const r = await it.next();
      if (r.done) break;
      seen.push(...r.value);
    }
    expect(seen.length).toBe(N);
    expect(seen.sort(byId)).toEqual(before);
    // a query started now sees the new state
    expect(await accounts.count()).toBe(N - Math.ceil(N / 3) + 2000);
    expect((await accounts.get(1))!.balance).toBe(-1);
  });

  it('a row-by-row iteration that stops early releases its snapshot (later writes proceed)', async () => {
    const { accounts } = await setup(mode, 300);
    for await (const row of accounts.query()) {
      expect(row.id).toBe(0);
      break;
    }
    await accounts.insert(account(1000));
    expect(await accounts.count()).toBe(301);
  });

  it('writers queue: a second transaction waits for the first and sees its writes', async () => {
    const { db, accounts } = await setup(mode);
    const events: string[] = [];
    const release = gate();
    const firstStarted = gate();
    const first = db.transaction(async (tx) => {
      events.push('first:start');
      firstStarted.open();
      await tx.collection(Accounts).update(1, { balance: 500 });
      await release.promise;
      events.push('first:end');
      return 'first';
    });
    await firstStarted.promise;
    const second = db.transaction(async (tx) => {
      events.push('second:start');
      const a = tx.collection(Accounts);
      const b = (await a.get(1))!.balance;
      await a.update(1, { balance: b + 1 });
      events.push(`second:saw ${b}`);
      return 'second';
    });
    const autocommit = accounts.insert(account(100)).then(() => { events.push('autocommit'); });
    await settle();
    expect(events).toEqual(['first:start']);
    release.open();
    expect(await Promise.all([first, second, autocommit])).toEqual(['first', 'second', undefined]);
    expect(events).toEqual(['first:start', 'first:end', 'second:start', 'second:saw 500', 'autocommit']);
    expect((await accounts.get(1))!.balance).toBe(501);
  });

  it('a failed transaction does not block the queue', async () => {
    const { db, accounts } = await setup(mode);
    const failing = db.transaction(async (tx) => {
      await tx.collection(Accounts).insert(account(100));
      throw new Error('nope');
    });
    const next = db.transaction(async (tx) => tx.collection(Accounts).count());
    await expect(failing).rejects.toThrow('nope');
    expect(await next).toBe(10);
    expect(await accounts.get(100)).toBeUndefined();
  });

  it('using tx after the callback ended is TRANSACTION_CLOSED (after commit and after rollback)', async () => {
    const { db, accounts } = await setup(mode);
    let kept!: Transaction;
    let keptCollection!: Collection<typeof Accounts>;
    await db.transaction(async (tx) => {
      kept = tx;
      keptCollection = tx.collection(Accounts);
      await keptCollection.insert(account(100));
    });
    await expectCode(keptCollection.insert(account(101)), 'TRANSACTION_CLOSED');
    await expectCode(keptCollection.update(1, { balance: 1 }), 'TRANSACTION_CLOSED');
    await expectCode(keptCollection.delete(1), 'TRANSACTION_CLOSED');
    await expectCode(keptCollection.get(1), 'TRANSACTION_CLOSED');
    await expectCode(keptCollection.count(), 'TRANSACTION_CLOSED');
    await expectCode(keptCollection.query().toArray(), 'TRANSACTION_CLOSED');
    await expectCode(kept.collection(Accounts).put(account(102)), 'TRANSACTION_CLOSED');

    await db.transaction(async (tx) => {
      keptCollection = tx.collection(Accounts);
      throw new Error('rollback');
    }).catch(() => undefined);
    await expectCode(keptCollection.insert(account(103)), 'TRANSACTION_CLOSED');
    expect(await accounts.count()).toBe(11);
    expect(await accounts.get(101)).toBeUndefined();
    expect(await accounts.get(1)).toEqual(account(1));
  });

  it('an operation left running when the callback returns finishes inside the transaction', async () => {
    const { db, accounts } = await setup(mode);
    let pending!: Promise<void>;
    await db.transaction(async (tx) => {
      pending = tx.collection(Accounts).insert(account(100)); // not awaited
    });
    await pending;
    expect(await accounts.get(100)).toEqual(account(100));
  });

  it('a database-level collection call inside the callback joins the transaction (no deadlock)', async () => {
    const { db, accounts } = await setup(mode);
    const n = await db.transaction(async () => {
      await accounts.insert(account(100));
      await accounts.update(1, { balance: 1 });
      expect(await accounts.get(100)).toEqual(account(100));
      return accounts.count();
    });
    expect(n).toBe(11);
    expect(await accounts.count()).toBe(11);
    // and it rolls back with it
    await expect(db.transaction(async (tx) => {
      await accounts.insert(account(200));
      await tx.collection(Accounts).insert(account(201));
      expect(await accounts.query().where('id', '>=', 200).count()).toBe(2);
      throw new Error('undo');
    })).rejects.toThrow('undo');
    expect(await accounts.get(200)).toBeUndefined();
    expect(await accounts.get(201)).toBeUndefined();
    expect(await accounts.count()).toBe(11);
  });

  it('db.transaction(), compact() and close() inside a callback are LOCKED at once, not a wait for itself', async () => {
    const { db, accounts } = await setup(mode);
    const n = await db.transaction(async (tx) => {
      await tx.collection(Accounts).insert(account(100));
      const nested = await expectCode(db.transaction(async () => accounts.insert(account(101))), 'LOCKED');
      expect(nested.message).toMatch(/no nested transactions/);
      await expectCode(db.compact(), 'LOCKED');
      await expectCode(db.close(), 'LOCKED');
      await tx.collection(Accounts).insert(account(102)); // the transaction goes on
      return accounts.count();
    });
    expect(n).toBe(12);
    expect((await state(accounts)).map((a) => a.id)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 100, 102]);
    // A timer set inside the callback that fires after the commit is not inside it any more.
    const later = gate<number>();
    await db.transaction(async () => {
      setTimeout(() => { db.transaction(async (tx) => tx.collection(Accounts).insert(account(103))).then(() => later.open(1), () => later.open(0)); }, 20);
    });
    expect(await later.promise).toBe(1);
    expect(await accounts.get(103)).toEqual(account(103));
  });

  it('a DUPLICATE_KEY (or VALIDATION) caught inside keeps the earlier writes, and the commit succeeds', async () => {
    const { db, accounts } = await setup(mode);
    await accounts.update(5, { email: 'taken@x.y' });
    const out = await db.transaction(async (tx) => {
      const a = tx.collection(Accounts);
      await a.insert(account(100));
      await a.update(1, { balance: 1 });
      const dup = await a.insert(account(3)).catch((e: unknown) => e);
      expect(dup).toMatchObject({ code: 'DUPLICATE_KEY' });
      const uniq = await a.insert({ ...account(101), email: 'taken@x.y' }).catch((e: unknown) => e);
      expect(uniq).toMatchObject({ code: 'DUPLICATE_KEY' });
      const bad = await a.insert({ ...account(102), balance: 0.5 }).catch((e: unknown) => e);
      expect(bad).toMatchObject({ code: 'VALIDATION' });
      await a.insert(account(105));
      return a.count();
    });
    expect(out).toBe(12);
    expect(await accounts.count()).toBe(12);
    expect(await accounts.get(100)).toEqual(account(100));
    expect(await accounts.get(105)).toEqual(account(105));
    expect((await accounts.get(1))!.balance).toBe(1);
    expect(await accounts.get(3)).toEqual(account(3));
    expect(await accounts.get(101)).toBeUndefined();
    expect(await accounts.get(102)).toBeUndefined();
    expect((await accounts.query().where('email', '=', 'taken@x.y').toArray()).map((r) => r.id)).toEqual([5]);
    expect((await state(accounts)).map((r) => r.id)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 100, 105]);
    expect((await db.verify()).ok).toBe(true);
  });

  it('a failed insertMany() inside db.transaction() leaves nothing: the transaction can only roll back', async () => {
    const { db, accounts } = await setup(mode, 10);
    const before = await state(accounts);
    const err = await db.transaction(async (tx) => {
      const a = tx.collection(Accounts);
      await a.insert(account(200));
      const caught = await a.insertMany([account(300), account(301), account(3)]).catch((e: unknown) => e);
      expect(caught).toMatchObject({ code: 'DUPLICATE_KEY' });
      return 'callback finished';
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'DUPLICATE_KEY' });
    expect(await state(accounts)).toEqual(before);
    expect(await accounts.get(200)).toBeUndefined();
    expect(await accounts.get(300)).toBeUndefined();
  });

  it('snapshotBytes() taken during an open transaction holds only the committed state', async () => {
    const { db, accounts } = await setup(mode, 10, { cacheSize: 2 ** 20 });
    const written = gate();
    const release = gate<Uint8Array>();
    const tx = db.transaction(async (t) => {
      const a = t.collection(Accounts);
      // enough to make the transaction write pages out before its commit
      await a.insertMany(Array.from({ length: 6000 }, (_, i) => ({ ...account(1000 + i), pad: 'x'.repeat(1000) })));
      await a.update(1, { balance: -1 });
      written.open();
      const inside = await db.snapshotBytes(); // also from inside the callback
      await release.promise;
      return inside;
    });
    const writtenBefore = db.stats().pagesWritten;
    await written.promise;
    expect(db.stats().pagesWritten).toBeGreaterThan(writtenBefore); // pages went out before the commit
    const outside = await db.snapshotBytes();
    release.open(outside);
    const inside = await tx;
    for (const image of [outside, inside]) {
      const copy = await Database.openSnapshotBytes(image);
      try {
        const c = await copy.register(Accounts);
        expect(await c.count()).toBe(10);
        expect(await state(c)).toEqual(Array.from({ length: 10 }, (_, i) => account(i)));
        expect((await copy.verify()).ok).toBe(true);
      } finally {
        await copy.close();
      }
    }
    // and after the commit the image has everything
    const after = await Database.openSnapshotBytes(await db.snapshotBytes());
    try {
      const c = await after.register(Accounts);
      expect(await c.count()).toBe(6010);
      expect((await c.get(1))!.balance).toBe(-1);
    } finally {
      await after.close();
    }
    expect(await accounts.count()).toBe(6010);
  });

  it('transaction() needs a function', async () => {
    const { db } = await setup(mode, 0);
    await expectCode(db.transaction(null as never), 'VALIDATION');
  });
});
