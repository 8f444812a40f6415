// A query whose iterator is dropped half-way — never finished, never returned — holds a pin
// on its snapshot and its spill pages. Without cleanup the pin keeps every page it reaches from
// reuse, so later writes grow the file without bound, and the spill pages stay taken until close.
// Once such an iterator is garbage collected, its hold is released; an iterator still in use
// keeps its snapshot whatever the GC does.
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Collection, Database } from '../../src/index.js';
import { MODES, Orders, makeOrders, openOrders, type Order } from './helpers.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Collects garbage until `done()` holds (finalizers run as tasks after a collection), or gives up. */
async function collectUntil(done: () => boolean): Promise<void> {
  for (let round = 0; round < 30 && !done(); round++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const N = 20_000;

describe.each(MODES)('abandoned query iterators (%s)', (mode) => {
  let db: Database;
  let orders: Collection<typeof Orders>;
  let rows: Order[];
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    ({ db, orders, rows, cleanup } = await openOrders(mode, [...makeOrders({ count: N, seed: 5 })]));
  });
  afterAll(async () => cleanup?.());

  /** Starts queries and drops them after their first row or batch (in a frame of their own, so nothing keeps them). */
  async function abandonSome(): Promise<void> {
    for (let i = 0; i < 4; i++) {
      const it = orders.query().where('qty', '>', i)[Symbol.asyncIterator]();
      expect((await it.next()).done).toBe(false);
    }
    // A sort under 128 KiB spills its runs before its first batch.
    const sorted = orders.query().orderBy('amount', 'desc').options({ memoryLimit: 128 * 1024 }).batches();
    expect((await sorted.next()).done).toBe(false);
    const readable = orders.query().orderBy('ts').stream();
    for await (const first of readable) { expect(first).toBeTruthy(); break; } // break destroys it: not abandoned
    const readable2 = orders.query().stream();
    await new Promise((resolve) => readable2.once('readable', resolve));
    expect(readable2.read()).toBeTruthy();
  }

  it('releases their snapshot pins and spill pages once they are garbage collected', async () => {
    await abandonSome();
    expect(db.stats().snapshots).toBe(6);
    expect(db.stats().spill.pagesInUse).toBeGreaterThan(0);
    await collectUntil(() => db.stats().snapshots === 0 && db.stats().spill.pagesInUse === 0);
    expect(db.stats().snapshots).toBe(0);
    expect(db.stats().spill.pagesInUse).toBe(0);

    // With no pin left, rewrites reuse the pages they free: the file does not grow. (The first
    // commit takes the released spill pages at the file's tail into the file as free pages.)
    await orders.update(rows[0].id, { qty: 99 });
    const before = (await db.verify()).pageCount;
    for (let i = 0; i < 40; i++) await orders.update(rows[i].id, { qty: 100 + i });
    expect((await db.verify()).pageCount - before).toBeLessThanOrEqual(4);
  });

  it('keeps the snapshot of an iterator still in use, through collections and later commits', async () => {
    const live = orders.query().orderBy('id')[Symbol.asyncIterator]();
    const seen: number[] = [];
    for (let i = 0; i < 10; i++) seen.push((await live.next()).value!.qty);
    const want = (await orders.query().orderBy('id').toArray()).map((r) => r.qty);
    const sixteenth = (await orders.query().orderBy('id').offset(15).first())!;
    await orders.update(sixteenth.id, { qty: 999 }); // a row the iterator has not reached yet
    await collectUntil(() => false);
    expect(db.stats().snapshots).toBe(1);
    for (let r = await live.next(); !r.done; r = await live.next()) seen.push(r.value.qty);
    expect(seen).toEqual(want); // the commit after its start is not seen
    expect(db.stats().snapshots).toBe(0);
  });
});
