// Streaming rules: queries are lazy and pull-based, a limit reads only the pages it needs,
// stopping early releases the snapshot (so freed pages become reusable), abort signals give
// ABORTED, a running query sees the snapshot it started with, and stream() is a Readable.
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelVaultError, type Collection, type Database } from '../../src/index.js';
import { MODES, Orders, collect, expectCode, makeOrders, openDb, openOrders, openShared, type Order } from './helpers.js';

const LARGE = 30_000;

/** Pages the buffer pool served (hits + misses) so far. */
function pageTouches(db: Database): number {
  const s = db.stats().cache;
  return s.hits + s.misses;
}

describe.each(MODES)('streaming over a large collection (%s)', (mode) => {
  let db: Database;
  let orders: Collection<typeof Orders>;
  let rows: Order[];
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    ({ db, orders, rows, cleanup } = await openOrders(mode, [...makeOrders({ count: LARGE, seed: 21 })]));
  });
  afterAll(async () => cleanup?.());

  it('does nothing until the first pull', async () => {
    const before = pageTouches(db);
    const q = orders.query().where('qty', '>', 2).orderBy('amount').limit(100);
    const rowsIt = q[Symbol.asyncIterator]();
    const batchesIt = q.batches();
    const readable = q.stream();
    await new Promise((resolve) => setImmediate(resolve));
    expect(pageTouches(db)).toBe(before);
    expect(db.stats().snapshots).toBe(0);

    // The first pull runs the query and pins a snapshot until the iterator is done.
    const first = await rowsIt.next();
    expect(first.done).toBe(false);
    expect(pageTouches(db)).toBeGreaterThan(before);
    expect(db.stats().snapshots).toBe(1);
    await rowsIt.return!(undefined);
    await batchesIt.return(undefined);
    readable.destroy();
    expect(db.stats().snapshots).toBe(0);
  });

  it('limit(5) reads only a few pages of a large collection', async () => {
    let before = pageTouches(db);
    const all = await orders.query().toArray();
    const fullScan = pageTouches(db) - before;
    expect(all.length).toBe(LARGE);
    expect(fullScan).toBeGreaterThan(100);

    before = pageTouches(db);
    const five = await orders.query().limit(5).toArray();
    expect(pageTouches(db) - before).toBeLessThan(10);
    expect(five.map((r) => r.id)).toEqual([1, 2, 3, 4, 5]);

    before = pageTouches(db);
    const last = await orders.query().orderBy('id', 'desc').limit(5).toArray();
    expect(pageTouches(db) - before).toBeLessThan(10);
    expect(last.map((r) => r.id)).toEqual([LARGE, LARGE - 1, LARGE - 2, LARGE - 3, LARGE - 4]);

    before = pageTouches(db);
    const firstRow = await orders.query().where('qty', '>=', 0).first();
    expect(pageTouches(db) - before).toBeLessThan(10);
    expect(firstRow?.id).toBe(1);

    // A for-await that breaks after 5 rows reads as little.
    before = pageTouches(db);
    const seen: number[] = [];
    for await (const r of orders.query()) {
      seen.push(r.id);
      if (seen.length === 5) break;
    }
    expect(pageTouches(db) - before).toBeLessThan(10);
    expect(seen).toEqual([1, 2, 3, 4, 5]);
    expect(db.stats().snapshots).toBe(0);
  });

  it('an already-aborted signal gives ABORTED with the reason as cause, for every way of running', async () => {
    const ac = new AbortController();
    const reason = new Error('stop now');
    ac.abort(reason);
    const q = orders.query().where('qty', '>', 1).options({ signal: ac.signal });
    const err = await expectCode(() => q.toArray(), 'ABORTED');
    expect(err.cause).toBe(reason);
    await expectCode(() => q.first(), 'ABORTED');
    await expectCode(() => collect(q), 'ABORTED');
    await expectCode(() => collect(q.batches()), 'ABORTED');
    await expectCode(() => q.orderBy('amount').toArray(), 'ABORTED');
    await expectCode(() => q.explain({ analyze: true }), 'ABORTED');
    // Also when the answer needs no scan at all.
    await expectCode(() => orders.query().options({ signal: ac.signal }).count(), 'ABORTED');
    expect(db.stats().snapshots).toBe(0);
  });

  it('aborting mid-iteration stops the query with ABORTED and releases the snapshot', async () => {
    const ac = new AbortController();
    const q = orders.query().options({ signal: ac.signal });
    let n = 0;
    let caught: unknown;
    try {
      for await (const r of q) {
        expect(r.id).toBe(n + 1);
        n++;
        if (n === 1500) ac.abort();
      }
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ModelVaultError);
    expect((caught as ModelVaultError).code).toBe('ABORTED');
    expect(n).toBe(1500); // not one more row, though the rest of its batch was made
    expect(db.stats().snapshots).toBe(0);
  });

  it('no batch and no row leaves after an abort, also from a sort that holds every row', async () => {
    for (const q of [orders.query(), orders.query().orderBy('amount', 'desc')]) {
      const ac = new AbortController();
      let batches = 0;
      const err = await expectCode(async () => {
        for await (const rows of q.options({ signal: ac.signal }).batches()) {
          expect(rows.length).toBeGreaterThan(0);
          if (++batches === 2) ac.abort();
        }
      }, 'ABORTED');
      expect(batches).toBe(2);
      expect(err.cause).toBe(ac.signal.reason);
      // Aborted after its first row was pulled: the next pull fails, and so does every later one.
      const ac2 = new AbortController();
      const it = q.options({ signal: ac2.signal })[Symbol.asyncIterator]();
      expect((await it.next()).done).toBe(false);
      ac2.abort();
      await expectCode(() => it.next(), 'ABORTED');
      expect((await it.next()).done).toBe(true);
      expect(db.stats().snapshots).toBe(0);
    }
  });

  it('stream() is an object-mode Readable with the same rows, honouring backpressure', async () => {
    const q = orders.query().where('category', '=', 'cat03').orderBy('amount', 'desc').orderBy('id');
    const want = await q.toArray();
    expect(want.length).toBeGreaterThan(100);
    const readable = q.stream();
    expect(readable.readableObjectMode).toBe(true);
    expect(await collect(readable)).toEqual(want);

    // Through a slow object-mode Writable via pipeline.
    const got: unknown[] = [];
    const sink = new Writable({
      objectMode: true,
      highWaterMark: 4,
      write(row, _enc, done) { got.push(row); setImmediate(done); },
    });
    await pipeline(q.stream(), sink);
    expect(got).toEqual(want);

    // Destroying the stream early releases the snapshot.
    const early = orders.query().stream();
    const [firstRow] = await once(early, 'data');
    expect((firstRow as Order).id).toBe(1);
    early.destroy();
    await once(early, 'close');
    await new Promise((resolve) => setImmediate(resolve));
    expect(db.stats().snapshots).toBe(0);
  });
});

describe.each(MODES)('snapshots and early termination with writers (%s)', (mode) => {
  it('breaking out early releases the snapshot pin, so freed pages are reused, and close() returns', async () => {
    const { db } = await openDb(mode, { pageSize: 16384 });
    const orders = await db.register(Orders);
    await orders.insertMany(makeOrders({ count: 5000, seed: 5 }));

    // While an iterator holds its snapshot, pages freed by commits cannot be reused: the file grows.
    const held = orders.query()[Symbol.asyncIterator]();
    await held.next();
    expect(db.stats().snapshots).toBe(1);
    const p0 = db.stats().pageCount;
    for (let i = 0; i < 15; i++) await orders.update(100 + i, { qty: 9 });
    const p1 = db.stats().pageCount;
    expect(p1).toBeGreaterThan(p0);

    // Break out of a for-await: the pin goes at once.
    await held.return!(undefined);
    for await (const r of orders.query().where('qty', '>=', 0)) {
      expect(r.id).toBe(1);
      break;
    }
    expect(db.stats().snapshots).toBe(0);

    // Now freed pages are reused: the same number of commits no longer grows the file.
    for (let i = 0; i < 15; i++) await orders.update(200 + i, { qty: 9 });
    const p2 = db.stats().pageCount;
    for (let i = 0; i < 15; i++) await orders.update(300 + i, { qty: 9 });
    const p3 = db.stats().pageCount;
    expect(p3 - p2).toBeLessThan((p1 - p0) / 3);
    expect(p2 - p1).toBeLessThan((p1 - p0) / 3);

    // A break inside a sorted (blocking) query also releases everything.
    for await (const r of orders.query().orderBy('amount', 'desc')) {
      expect(typeof r.amount).toBe('number');
      break;
    }
    expect(db.stats().snapshots).toBe(0);
    await db.close(); // must not wait for anything: nothing is pinned or running
  });

  it('a long iteration sees the state as of its start while writers commit', async () => {
    const { db } = await openDb(mode, { pageSize: 16384 });
    const orders = await db.register(Orders);
    const rows = [...makeOrders({ count: 6000, seed: 8 })];
    await orders.insertMany(rows);

    const it = orders.query().orderBy('id').batches();
    const got: Order[] = [];
    const firstBatch = await it.next();
    expect(firstBatch.done).toBe(false);
    got.push(...(firstBatch.value as Order[]));
    expect(got.length).toBeLessThan(3000);

    // Writers commit while the reader is half-way: inserts, deletes, updates, in a transaction too.
    await orders.insertMany(makeOrders({ count: 500, seed: 9, firstId: 10_001 }));
    for (let id = 4000; id < 4100; id++) await orders.delete(id);
    await orders.update(5000, { qty: 123, note: 'changed' });
    await db.transaction(async (tx) => {
      const o = tx.collection(Orders);
      await o.delete(5500);
      await o.put({ ...rows[5998], amount: -1 });
    });
    let interleaved = 0;
    for (;;) {
      const next = await it.next();
      if (next.done) break;
      got.push(...(next.value as Order[]));
      if (interleaved++ < 3) await orders.update(5999 - interleaved, { qty: 77 }); // more commits mid-way
    }
    expect(got.length).toBe(rows.length);
    expect(got).toEqual(rows.map((r) => {
      const { pad: _pad, ...rest } = r;
      return Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
    }));
    expect(db.stats().snapshots).toBe(0);

    // A new query sees the new state.
    expect(await orders.query().count()).toBe(rows.length + 500 - 100 - 1);
    expect((await orders.get(5000))?.qty).toBe(123);
    expect(await orders.query().where('id', '=', 4050).first()).toBeUndefined();
  });

  it('iterating a query after db.close() fails with CLOSED within a leaf or so', async () => {
    const own = await openShared(mode, { pageSize: 16384 });
    const o = await own.db.register(Orders);
    await o.insertMany([...makeOrders({ count: 5000, seed: 3 })]);
    const it = o.query()[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    await own.db.close();
    let seen = 1;
    const err = await (async () => {
      for (;;) {
        const next = await it.next();
        if (next.done) return null;
        seen++;
      }
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelVaultError);
    expect((err as ModelVaultError).code).toBe('CLOSED');
    expect(seen).toBeLessThan(5000);
    await own.cleanup();
  });
});
