// having() / SQL HAVING filter an aggregate's result rows (on aggregate names, group paths,
// aliases, and in SQL aggregate calls that need not be selected); SQL ORDER BY may name an
// aggregate call; SELECT DISTINCT returns each distinct combination once; LIKE 'prefix%' is a
// prefix match, LIKE without wildcards an equality, and other patterns are refused. Each against a
// plain-JS reference on both stores, also with the aggregate spilling under a small memoryLimit.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { count, max, sum, type Collection, type Database } from '../../src/index.js';
import { MODES, Orders, expectCodeSync, makeCustomers, makeOrders, openOrdersAndCustomers, type Customer, type Order } from './helpers.js';

const ROWS = 3000;

describe.each(MODES)('HAVING, DISTINCT and LIKE (%s)', (mode) => {
  let db: Database;
  let orders: Collection<typeof Orders>;
  let rows: Order[];
  let customers: Customer[];
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    // users 250..299 have no customer
    ({ db, orders, rows, customers, cleanup } = await openOrdersAndCustomers(mode, [...makeOrders({ count: ROWS, seed: 51, users: 300 })], [...makeCustomers({ count: 250, seed: 52 })]));
  });
  afterAll(async () => cleanup?.());

  /** Per userId: order count, quantity sum and largest amount, over orders with qty > minQty. */
  function perUser(minQty: number) {
    const groups = new Map<number, { n: number; qty: number; top: number }>();
    for (const r of rows) {
      if (r.qty <= minQty) continue;
      const g = groups.get(r.userId) ?? { n: 0, qty: 0, top: -Infinity };
      g.n++;
      g.qty += r.qty;
      g.top = Math.max(g.top, r.amount);
      groups.set(r.userId, g);
    }
    return groups;
  }
  const byNumber = (a: number, b: number) => a - b;

  it('having() keeps the groups whose aggregates and group paths match, spilling or not', async () => {
    const groups = perUser(2);
    const counts = [...groups.values()].map((g) => g.n).sort(byNumber);
    const cut = counts[Math.floor(counts.length / 2)]; // about half the groups pass
    const want = [...groups].filter(([u, g]) => g.n >= cut && g.qty < 120 && u % 3 !== 0).map(([u, g]) => ({ userId: u, n: g.n, qtySum: g.qty, top: g.top })).sort((a, b) => a.userId - b.userId);
    expect(want.length).toBeGreaterThan(10);
    expect(want.length).toBeLessThan(groups.size / 2);

    const q = orders.query().where('qty', '>', 2).groupBy('userId').aggregate({ n: count(), qtySum: sum('qty'), top: max('amount') })
      .having('n', '>=', cut)
      .having((eb) => eb.and([eb('qtySum', '<', 120), eb.not(eb('userId', 'in', [...groups.keys()].filter((u) => u % 3 === 0)))]))
      .orderBy('userId');
    expect(await q.toArray()).toEqual(want);
    // Many groups under 64 KiB: the aggregate spills its partitions, the filter is the same.
    const spilled = q.options({ memoryLimit: 64 * 1024 });
    expect(await spilled.toArray()).toEqual(want);
    expect(await spilled.explain({ analyze: true })).toMatch(/HashAggregate: .*spilled/);
    expect(await q.count()).toBe(want.length);
    expect(q.explain()).toMatch(/Filter: .*n >= .*\n\s+HashAggregate/);
  });

  it('SQL HAVING: aggregate calls (selected or not), aliases and group columns; ORDER BY an aggregate call', async () => {
    const groups = perUser(-1); // every order (qty is never negative)
    const want = [...groups].filter(([, g]) => g.n > 9 && g.top < 990).sort(([ua, a], [ub, b]) => b.qty - a.qty || ua - ub);
    const got = await db.sql(
      'SELECT userId AS user, COUNT(*) AS n FROM orders GROUP BY userId HAVING COUNT(*) > ? AND MAX(amount) < ? ORDER BY SUM(qty) DESC, user',
      [9, 990],
    ).toArray();
    expect(got).toEqual(want.map(([u, g]) => ({ user: u, n: g.n })));
    // The same through the alias, and the group column under its alias.
    expect(await db.sql('SELECT userId AS user, COUNT(*) AS n FROM orders GROUP BY userId HAVING n > ? AND user < ? ORDER BY user', [9, 100]).toArray())
      .toEqual([...groups].filter(([u, g]) => g.n > 9 && u < 100).sort(([a], [b]) => a - b).map(([u, g]) => ({ user: u, n: g.n })));
    // Without GROUP BY: the one aggregate row, or none.
    expect(await db.sql('SELECT COUNT(*) AS n FROM orders HAVING n > ?', [ROWS - 1]).toArray()).toEqual([{ n: ROWS }]);
    expect(await db.sql('SELECT COUNT(*) AS n FROM orders HAVING n > ?', [ROWS]).toArray()).toEqual([]);

    expectCodeSync(() => db.sql('SELECT id FROM orders HAVING id > ?', [1]), 'VALIDATION');
    expectCodeSync(() => orders.query().having('id', '>', 1), 'VALIDATION');
    expectCodeSync(() => orders.query().groupBy('userId').aggregate({ n: count() }).having('qty', '>', 1).explain(), 'VALIDATION');
    expectCodeSync(() => orders.query().groupBy('userId').aggregate({ n: count() }).having('n', '>', 'many').explain(), 'VALIDATION');
  });

  it('SELECT DISTINCT returns each combination once, through a join too', async () => {
    const pairs = new Set(rows.filter((r) => r.qty >= 5).map((r) => `${r.category}|${r.qty}`));
    const want = [...pairs].map((k) => k.split('|')).map(([category, qty]) => ({ category, qty: Number(qty) }))
      .sort((a, b) => (a.category < b.category ? -1 : a.category > b.category ? 1 : b.qty - a.qty));
    expect(await db.sql('SELECT DISTINCT category, qty FROM orders WHERE qty >= ? ORDER BY category, qty DESC', [5]).toArray()).toEqual(want);

    const countryOf = new Map(customers.map((c) => [c.id, c.country]));
    const countries = [...new Set(rows.filter((r) => countryOf.has(r.userId)).map((r) => countryOf.get(r.userId)!))].sort();
    expect(await db.sql('SELECT DISTINCT c.country AS country FROM orders o JOIN customers c ON o.userId = c.id ORDER BY country').toArray())
      .toEqual(countries.map((country) => ({ country })));
    expectCodeSync(() => db.sql('SELECT DISTINCT category, COUNT(*) FROM orders GROUP BY category'), 'VALIDATION');
  });

  it("LIKE 'prefix%' is a prefix match, LIKE without wildcards equality; other patterns are refused", async () => {
    const withNote = rows.filter((r) => r.note !== undefined);
    const prefix = withNote[7].note!.slice(0, 3);
    const ids = (rs: readonly Record<string, unknown>[]) => rs.map((r) => r.id);
    expect(ids(await db.sql('SELECT id FROM orders WHERE note LIKE ? ORDER BY id', [`${prefix}%`]).toArray()))
      .toEqual(withNote.filter((r) => r.note!.startsWith(prefix)).map((r) => r.id));
    // NOT LIKE: rows without a note compare as unknown, so they are not returned either.
    expect(ids(await db.sql('SELECT id FROM orders WHERE note NOT LIKE ? ORDER BY id', [`${prefix}%`]).toArray()))
      .toEqual(ids(await orders.query().where((eb) => eb.not(eb('note', 'startsWith', prefix))).orderBy('id').toArray()));
    expect(ids(await db.sql('SELECT id FROM orders WHERE note LIKE ? ORDER BY id', [withNote[3].note!]).toArray()))
      .toEqual(withNote.filter((r) => r.note === withNote[3].note).map((r) => r.id));
    for (const bad of ['a_c%', '%abc', 'a%c', 42]) expectCodeSync(() => db.sql('SELECT id FROM orders WHERE note LIKE ?', [bad]), 'VALIDATION');
  });
});
