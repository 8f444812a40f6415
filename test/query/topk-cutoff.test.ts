// Top-k over a table scan: the top-k keeps a cutoff (the k-th best row so far) and the scan
// skips the rows past it before decoding their other columns. Rows that tie with the cutoff come
// later in input order, so they are rightly skipped; everything else must still arrive. Checked
// against a plain-JS reference over 20,000 orders with ties, absent values, NaN and -0 in the
// keys, on both stores, and through explain: the top-k receives a small share of the rows.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Collection, Database } from '../../src/index.js';
import { MODES, Orders, makeOrders, openShared, valueAtPath, type Order, type OrderKey } from './helpers.js';

const ROWS = 20_000;

/** Reference order: absent first ascending, NaN after every number, strings by UTF-8 bytes, -0 = 0. */
function compareKeys(keys: readonly OrderKey[]) {
  const cmp = (x: unknown, y: unknown): number => {
    if (x === undefined || x === null) return y === undefined || y === null ? 0 : -1;
    if (y === undefined || y === null) return 1;
    if (typeof x === 'number' && typeof y === 'number' && (Number.isNaN(x) || Number.isNaN(y))) return Number.isNaN(x) ? (Number.isNaN(y) ? 0 : 1) : -1;
    if (typeof x === 'string' && typeof y === 'string') return Buffer.compare(Buffer.from(x), Buffer.from(y));
    return (x as never) < (y as never) ? -1 : (x as never) > (y as never) ? 1 : 0;
  };
  return (a: Order, b: Order) => {
    for (const k of keys) {
      const c = cmp(valueAtPath(a, k.path), valueAtPath(b, k.path));
      if (c !== 0) return k.desc ? -c : c;
    }
    return 0;
  };
}

const ORDERS: { keys: OrderKey[]; minQty?: number }[] = [
  { keys: [{ path: 'amount', desc: true }] },
  { keys: [{ path: 'amount', desc: false }] },
  { keys: [{ path: 'qty', desc: true }, { path: 'amount', desc: false }] },
  { keys: [{ path: 'note', desc: false }] },
  { keys: [{ path: 'note', desc: true }, { path: 'ts', desc: false }] },
  { keys: [{ path: 'category', desc: false }, { path: 'amount', desc: true }], minQty: 3 },
  { keys: [{ path: 'ts', desc: true }] },
];

describe.each(MODES)('top-k cutoff pushed into the scan (%s)', (mode) => {
  let db: Database;
  let orders: Collection<typeof Orders>;
  let rows: Order[];
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    rows = [...makeOrders({ count: ROWS, seed: 71 })];
    // NaN and -0 among the amounts (a tenth of the rows each way), ahead of and behind ordinary values.
    rows.forEach((r, i) => { if (i % 97 === 5) r.amount = NaN; else if (i % 89 === 7) r.amount = -0; });
    ({ db, cleanup } = await openShared(mode, { pageSize: 16384 }));
    orders = await db.register(Orders);
    await orders.insertMany(rows);
  }, 120_000);
  afterAll(async () => cleanup?.());

  it('gives the reference rows for every order, limit and offset', async () => {
    for (const { keys, minQty } of ORDERS) {
      // id last: a total order, so the expected rows are exactly one sequence.
      const total: OrderKey[] = [...keys, { path: 'id', desc: keys.length % 2 === 1 }];
      const source = minQty === undefined ? rows : rows.filter((r) => r.qty >= minQty);
      const sorted = [...source].sort(compareKeys(total));
      for (const [limit, offset] of [[1, 0], [10, 0], [100, 37], [1000, 0], [3000, 500]]) {
        let q = minQty === undefined ? orders.query() : orders.query().where('qty', '>=', minQty);
        for (const k of total) q = q.orderBy(k.path as never, k.desc ? 'desc' : 'asc');
        q = q.offset(offset).limit(limit);
        const got = (await q.toArray()).map((r) => r.id);
        const label = `${total.map((k) => `${k.path} ${k.desc ? 'desc' : 'asc'}`).join(', ')} offset ${offset} limit ${limit}`;
        expect(got, label).toEqual(sorted.slice(offset, offset + limit).map((r) => r.id));
      }
    }
  }, 120_000);

  it('hands the top-k only a small share of the rows, and says so in explain', async () => {
    const q = orders.query().orderBy('amount', 'desc').orderBy('id').limit(100);
    const text = await q.explain({ analyze: true });
    expect(text).toMatch(/TableScan: .*skips rows past the top-k's cutoff/);
    const rowsIn = Number(/TopK: .*\[rows in (\d+)/.exec(text)![1]);
    expect(rowsIn).toBeGreaterThanOrEqual(100);
    expect(rowsIn).toBeLessThan(ROWS / 4);
  });
});
