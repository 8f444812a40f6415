// The keys of a result row: select() keeps only what it names, on joined queries too (a join's
// `as` name selects the joined row, a dotted path one value under that path), as the narrowed
// row type says; SQL's AS renames result keys (plain columns, group columns and aggregates), ORDER
// BY may name an alias, and an aggregate query returns its SELECT items in their order. Checked
// against a plain-JS reference on both stores.
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { count, max, type Collection, type Database } from '../../src/index.js';
import {
  Customers, MODES, Orders, compareRows, expectCodeSync, makeCustomers, makeOrders, openOrdersAndCustomers, refJoin, type Customer, type Order,
} from './helpers.js';

const ROWS = 1500;

describe.each(MODES)('result shapes (%s)', (mode) => {
  let db: Database;
  let orders: Collection<typeof Orders>;
  let rows: Order[];
  let customers: Customer[];
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    // users 100..119 have no customer
    ({ db, orders, rows, customers, cleanup } = await openOrdersAndCustomers(mode, [...makeOrders({ count: ROWS, seed: 41, users: 120 })], [...makeCustomers({ count: 100, seed: 42 })]));
  });
  afterAll(async () => cleanup?.());

  const byIdAsc = compareRows([{ path: 'id', desc: false }]);
  const leftJoined = () => (refJoin(rows, customers, 'userId', 'id', 'customer', 'left') as unknown as (Order & { customer: Customer | null })[]).sort(byIdAsc);

  it('select() on a joined query keeps only the selected keys; the join name selects the joined row', async () => {
    const joined = () => orders.query().join(Customers, 'userId', 'id', { as: 'customer', type: 'left' }).orderBy('id');
    const ref = leftJoined();

    const idOnly = await joined().select('id').toArray();
    expectTypeOf(idOnly[0]).toEqualTypeOf<{ id: number }>();
    expect(idOnly).toEqual(ref.map((r) => ({ id: r.id })));

    const withCustomer = await joined().select('id', 'customer').toArray();
    expect(withCustomer).toEqual(ref.map((r) => ({ id: r.id, customer: r.customer })));
    expect(withCustomer.some((r) => r.customer === null)).toBe(true);

    // A dotted path: its value under that key, left out where it is absent (no customer).
    const country = await joined().select('id', 'customer.country' as never).toArray() as Record<string, unknown>[];
    expect(country).toEqual(ref.map((r) => (r.customer ? { id: r.id, 'customer.country': r.customer.country } : { id: r.id })));

    // A join after select(): the row type gains the joined row, and so does the selection.
    const selectedFirst = await orders.query().select('id', 'amount').join(Customers, 'userId', 'id', { as: 'customer', type: 'left' }).orderBy('id').toArray();
    expectTypeOf(selectedFirst[0]).toEqualTypeOf<{ id: number; amount: number } & { customer: Customer | null }>();
    expect(selectedFirst).toEqual(ref.map((r) => ({ id: r.id, amount: r.amount, customer: r.customer })));

    // No select(): every field of the queried collection, then the joined row.
    const all = await joined().limit(50).toArray();
    expect(all).toEqual(ref.slice(0, 50));
  });

  it('SQL: AS renames result keys and ORDER BY may name an alias', async () => {
    const named = await db.sql(
      'SELECT id AS orderId, amount AS total, c.country AS country, c.name FROM orders o JOIN customers c ON o.userId = c.id WHERE qty >= ? ORDER BY total DESC, orderId LIMIT 40',
      [5],
    ).toArray();
    const ref = (refJoin(rows, customers, 'userId', 'id', 'c', 'inner') as unknown as (Order & { c: Customer })[])
      .filter((r) => r.qty >= 5)
      .sort(compareRows([{ path: 'amount', desc: true }, { path: 'id', desc: false }]))
      .slice(0, 40);
    expect(named).toEqual(ref.map((r) => ({ orderId: r.id, total: r.amount, country: r.c.country, 'c.name': r.c.name })));
    expect(Object.keys(named[0])).toEqual(['orderId', 'total', 'country', 'c.name']);

    // The joined row by its alias, null where a left join found none.
    const withRow = await db.sql('SELECT id, c FROM orders LEFT JOIN customers c ON orders.userId = c.id ORDER BY id').toArray();
    expect(withRow).toEqual(leftJoined().map((r) => ({ id: r.id, c: r.customer })));

    expectCodeSync(() => db.sql('SELECT id AS __proto__ FROM orders'), 'VALIDATION');
    expectCodeSync(() => db.sql('SELECT COUNT(*) AS __proto__ FROM orders'), 'VALIDATION');
  });

  it('SQL GROUP BY: the SELECT items in their order under their aliases; group paths not selected are left out', async () => {
    const want = new Map<string, { n: number; top: number }>();
    for (const r of rows) {
      if (r.qty <= 3) continue;
      const g = want.get(r.category) ?? { n: 0, top: -Infinity };
      g.n++;
      g.top = Math.max(g.top, r.amount);
      want.set(r.category, g);
    }
    const cats = [...want.keys()].sort();

    const grouped = await db.sql('SELECT COUNT(*) AS n, category AS cat, MAX(amount) AS top FROM orders WHERE qty > ? GROUP BY category ORDER BY cat', [3]).toArray();
    expect(grouped).toEqual(cats.map((cat) => ({ n: want.get(cat)!.n, cat, top: want.get(cat)!.top })));
    expect(Object.keys(grouped[0])).toEqual(['n', 'cat', 'top']);

    const countsOnly = await db.sql('SELECT COUNT(*) AS n FROM orders WHERE qty > ? GROUP BY category ORDER BY category', [3]).toArray();
    expect(countsOnly).toEqual(cats.map((cat) => ({ n: want.get(cat)!.n })));

    // The builder: select() after aggregate() picks among the group paths and aggregates.
    const picked = await orders.query().where('qty', '>', 3).groupBy('category').aggregate({ n: count(), top: max('amount') }).orderBy('category').select('top').toArray();
    expect(picked).toEqual(cats.map((cat) => ({ top: want.get(cat)!.top })));
    expectCodeSync(() => orders.query().groupBy('category').aggregate({ n: count() }).select('amount' as never).explain(), 'VALIDATION');
  });
});
