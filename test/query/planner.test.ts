// The planner: which access path explain() reports (index for selective predicates, composite
// index bounds, full scan otherwise, no sort when an index or the primary key delivers the
// order, top-k for orderBy + limit), and that type and path errors are VALIDATION before any work.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { count, sum, type Collection, type Database } from '../../src/index.js';
import {
  CATEGORIES, Customers, MODES, Orders, TS0, compareRows, expectCode, expectCodeSync, keyTuples, makeOrders, openOrders, project,
  type Order,
} from './helpers.js';

const ROWS = 5000;

/** Peak reserved bytes from the last line of explain({ analyze: true }). */
function peakOf(text: string): number {
  const m = /peak memory (\d+) bytes/.exec(text);
  expect(m, text).not.toBeNull();
  return Number(m![1]);
}

describe.each(MODES)('planner and explain() (%s)', (mode) => {
  let db: Database;
  let orders: Collection<typeof Orders>;
  let rows: Order[];
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    // Skewed categories: cat00 holds ~80% of the rows, every other category ~1%.
    ({ db, orders, rows, cleanup } = await openOrders(mode, [...makeOrders({
      count: ROWS,
      seed: 3,
      category: (_i, rnd) => (rnd() < 0.8 ? 'cat00' : CATEGORIES[1 + Math.floor(rnd() * 19)]),
    })]));
    await db.register(Customers);
  });
  afterAll(async () => cleanup?.());

  const ids = (rs: readonly { id: number }[]) => rs.map((r) => r.id).sort((a, b) => a - b);

  it('uses the index for a selective equality and names it', async () => {
    const q = orders.query().where('userId', '=', 7);
    const plan = q.explain();
    expect(plan).toMatch(/^IndexScan: .*via index byUser/m);
    expect(plan).toContain('userId = 7');
    expect(plan).not.toContain('TableScan');
    const want = rows.filter((r) => r.userId === 7);
    expect(want.length).toBeGreaterThan(0);
    expect(ids(await q.toArray())).toEqual(ids(want));
    // A selective range on the index's field too.
    const range = orders.query().where('userId', '<=', 5);
    expect(range.explain()).toMatch(/IndexScan: .*byUser.*userId <= 5/);
    expect(ids(await range.toArray())).toEqual(ids(rows.filter((r) => r.userId <= 5)));
  });

  it('uses the composite index for category = ? AND ts BETWEEN, showing both bounds', async () => {
    const from = new Date(TS0 + 10_000 * 60_000), to = new Date(TS0 + 60_000 * 60_000);
    const q = orders.query().where('category', '=', 'cat05').where('ts', '>=', from).where('ts', '<=', to);
    const plan = q.explain();
    expect(plan).toMatch(/IndexScan: .*via index byCategoryTs/);
    expect(plan).toContain('category = "cat05"');
    expect(plan).toContain(`ts >= ${from.getTime()}`);
    expect(plan).toContain(`ts <= ${to.getTime()}`);
    const want = rows.filter((r) => r.category === 'cat05' && r.ts >= from && r.ts <= to);
    expect(want.length).toBeGreaterThan(0);
    expect(ids(await q.toArray())).toEqual(ids(want));
    // The same through SQL BETWEEN compiles onto the same plan.
    const viaSql = db.sql('SELECT * FROM orders WHERE category = ? AND ts BETWEEN ? AND ?', ['cat05', from, to]);
    expect(viaSql.explain()).toBe(plan);
    expect(ids(await viaSql.toArray() as unknown as Order[])).toEqual(ids(want));
    // Exclusive bounds exclude the boundary rows.
    const edge = want[0].ts;
    const excl = orders.query().where('category', '=', 'cat05').where('ts', '>', edge).where('ts', '<', to);
    expect(excl.explain()).toContain(`ts > ${edge.getTime()}`);
    expect(ids(await excl.toArray())).toEqual(ids(rows.filter((r) => r.category === 'cat05' && r.ts > edge && r.ts < to)));
  });

  it('scans the table when the predicate is not selective', async () => {
    for (const q of [
      orders.query().where('category', '=', 'cat00'), // 80% of the rows: the index would cost more
      orders.query().where('userId', '>=', 5), // 99% of the rows
      orders.query().where('qty', '=', 3), // no index at all
    ]) {
      const plan = q.explain();
      expect(plan).toMatch(/^TableScan: orders/m);
      expect(plan).not.toContain('IndexScan');
      expect(plan).toContain('filter pushed down');
    }
    expect(await orders.query().where('category', '=', 'cat00').count()).toBe(rows.filter((r) => r.category === 'cat00').length);
  });

  it('uses primary-key bounds for a key range', async () => {
    const q = orders.query().where('id', '>', 100).where('id', '<=', 120);
    const plan = q.explain();
    expect(plan).toMatch(/TableScan: .*primary key range/);
    expect(ids(await q.toArray())).toEqual(rows.filter((r) => r.id > 100 && r.id <= 120).map((r) => r.id));
  });

  it('avoids a Sort when the primary key or an index delivers the order', async () => {
    const byIdAsc = orders.query().orderBy('id');
    expect(byIdAsc.explain()).not.toMatch(/Sort|TopK/);
    expect((await byIdAsc.toArray()).map((r) => r.id)).toEqual(rows.map((r) => r.id));

    const byIdDesc = orders.query().where('id', '<=', 50).orderBy('id', 'desc').limit(5);
    const descPlan = byIdDesc.explain();
    expect(descPlan).not.toMatch(/Sort|TopK/);
    expect(descPlan).toContain('reverse');
    expect((await byIdDesc.toArray()).map((r) => r.id)).toEqual([50, 49, 48, 47, 46]);

    // Equality on the leading field, order by the next one: the composite index is in order.
    for (const dir of ['asc', 'desc'] as const) {
      const q = orders.query().where('category', '=', 'cat07').orderBy('ts', dir);
      const plan = q.explain();
      expect(plan).toMatch(/IndexScan: .*byCategoryTs/);
      expect(plan).not.toMatch(/Sort|TopK/);
      const got = await q.toArray();
      const want = rows.filter((r) => r.category === 'cat07').sort(compareRows([{ path: 'ts', desc: dir === 'desc' }]));
      expect(keyTuples(got, [{ path: 'ts', desc: false }])).toEqual(keyTuples(want, [{ path: 'ts', desc: false }]));
    }

    // Order by an indexed field with a limit: walk the index, read only what is needed.
    const top = orders.query().orderBy('userId', 'desc').limit(10);
    const topPlan = top.explain();
    expect(topPlan).toMatch(/IndexScan: .*byUser/);
    expect(topPlan).not.toMatch(/Sort|TopK/);
    const want = [...rows].sort(compareRows([{ path: 'userId', desc: true }])).slice(0, 10);
    expect((await top.toArray()).map((r) => r.userId)).toEqual(want.map((r) => r.userId));
  });

  it('uses TopK for orderBy + limit, keeping only offset + limit rows', async () => {
    const q = orders.query().orderBy('amount', 'desc').orderBy('id').offset(5).limit(10);
    const plan = q.explain();
    expect(plan).toMatch(/TopK: keep best 15 by amount desc, id asc/);
    expect(plan).not.toMatch(/^\s*Sort:/m);
    const want = [...rows].sort(compareRows([{ path: 'amount', desc: true }, { path: 'id', desc: false }])).slice(5, 15);
    expect(await q.toArray()).toEqual(want.map((r) => project(r)));

    // Without a limit it is a full Sort; the top-k run reserves far less memory.
    const full = orders.query().orderBy('amount', 'desc').orderBy('id');
    expect(full.explain()).toMatch(/^Sort: by amount desc, id asc/m);
    const topPeak = peakOf(await orders.query().orderBy('amount', 'desc').limit(10).explain({ analyze: true }));
    const sortPeak = peakOf(await full.explain({ analyze: true }));
    expect(topPeak).toBeGreaterThan(0);
    expect(topPeak * 2).toBeLessThan(sortPeak);
  });

  it('explain({ analyze: true }) runs the query and reports rows per operator', async () => {
    const text = await orders.query().where('qty', '>', 7).orderBy('amount').explain({ analyze: true });
    const n = rows.filter((r) => r.qty > 7).length;
    expect(text).toMatch(new RegExp(`^Sort: .*rows in ${n}, rows out ${n}`, 'm'));
    expect(text).toMatch(new RegExp(`TableScan: .*rows out ${n}`));
    expect(text).toMatch(new RegExp(`^${n} rows in `, 'm'));
    expect(db.stats().snapshots).toBe(0);
  });

  it('comparing a field with the wrong type is VALIDATION before any work', async () => {
    const bad = [
      () => orders.query().where('amount', '=', 'x'),
      () => orders.query().where('qty', '>', '3'),
      () => orders.query().where('ts', '>=', Date.now()),
      () => orders.query().where('ts', '>=', '2024-01-01'),
      () => orders.query().where('ts', '=', new Date(Number.NaN)),
      () => orders.query().where('category', '=', 5),
      () => orders.query().where('category', 'in', 'cat01'),
      () => orders.query().where('category', 'in', ['cat01', 2]),
      () => orders.query().where('qty', 'is', 0),
      () => orders.query().where('qty', 'startsWith', '1'),
      () => orders.query().where('meta.score', '<', '5'),
      () => orders.query().where((eb) => eb.or([eb('qty', '=', 1), eb.not(eb('note', '=', 7))])),
      () => orders.query().join(Customers, 'userId', 'id', { as: 'customer' }).where('customer.country', '=', 33),
      () => orders.query().join(Customers, 'category', 'id', { as: 'customer' }),
    ];
    // What one real run touches, for scale: every leaf of the collection.
    const s0 = db.stats().cache;
    await orders.query().where('qty', '=', 1).toArray();
    const s1 = db.stats().cache;
    const scanPages = s1.hits + s1.misses - s0.hits - s0.misses;
    expect(scanPages).toBeGreaterThan(20);
    for (const make of bad) {
      const before = db.stats();
      expectCodeSync(() => make().explain(), 'VALIDATION');
      await expectCode(() => make().toArray(), 'VALIDATION');
      await expectCode(() => make().count(), 'VALIDATION');
      const after = db.stats();
      // No scan started (three attempts touched only catalog pages), no snapshot is left pinned.
      expect(after.cache.hits + after.cache.misses - before.cache.hits - before.cache.misses).toBeLessThan(Math.min(16, scanPages / 2));
      expect(after.snapshots).toBe(0);
    }
    const err = await expectCode(() => orders.query().where('meta.score', '<', '5').toArray(), 'VALIDATION');
    expect(err.details.path).toBe('meta.score');
    // Iterating lazily fails at the first pull, not later.
    const it = orders.query().where('amount', '>', 'x')[Symbol.asyncIterator]();
    await expectCode(() => it.next(), 'VALIDATION');
  });

  it('unknown fields, operators and directions are VALIDATION naming the path', async () => {
    const cases: [() => unknown, string][] = [
      [() => orders.query().where('nope', '=', 1).explain(), 'nope'],
      [() => orders.query().where('meta.nope', '=', 1).explain(), 'meta.nope'],
      [() => orders.query().where('qty.inner', '=', 1).explain(), 'qty.inner'],
      [() => orders.query().orderBy('nope').explain(), 'nope'],
      [() => orders.query().select('nope' as never).explain(), 'nope'],
      [() => orders.query().groupBy('nope').aggregate({ n: count() }).explain(), 'nope'],
      [() => orders.query().aggregate({ s: sum('nope') }).explain(), 'nope'],
      [() => orders.query().join(Customers, 'userId', 'nope', { as: 'customer' }).explain(), 'customer.nope'],
      [() => orders.query().join(Customers, 'userId', 'id', { as: 'customer' }).where('customer.nope', '=', 1).explain(), 'customer.nope'],
    ];
    for (const [fn, path] of cases) {
      const err = expectCodeSync(fn, 'VALIDATION');
      expect(err.details.path, err.message).toBe(path);
    }
    await expectCode(() => orders.query().where('nope', '=', 1).toArray(), 'VALIDATION');
    // Builder-level checks throw at the call.
    expectCodeSync(() => orders.query().where('qty', '~' as never, 1), 'VALIDATION');
    expectCodeSync(() => orders.query().where('bad path!', '=', 1), 'VALIDATION');
    expectCodeSync(() => orders.query().orderBy('qty', 'up' as never), 'VALIDATION');
    expectCodeSync(() => orders.query().limit(-1), 'VALIDATION');
    expectCodeSync(() => orders.query().offset(1.5), 'VALIDATION');
    expectCodeSync(() => orders.query().select(), 'VALIDATION');
    expectCodeSync(() => orders.query().options({ memoryLimit: 0 }), 'VALIDATION');
  });

  it('builders are immutable: every call returns a new query', async () => {
    const base = orders.query().where('qty', '>', 5);
    const limited = base.limit(3);
    const ordered = base.orderBy('amount');
    expect(limited).not.toBe(base);
    expect(await base.count()).toBe(rows.filter((r) => r.qty > 5).length);
    expect(await limited.count()).toBe(3);
    expect(ordered.explain()).toMatch(/Sort/);
    expect(base.explain()).not.toMatch(/Sort|Limit/);
  });
});
