// db.sql(): SELECT lists, WHERE (AND/OR/NOT/parentheses/IN/BETWEEN/IS NULL), ORDER BY,
// LIMIT/OFFSET, GROUP BY with aggregates and JOIN ... ON compile onto the same plan as the
// builder and return the same rows; bad SQL is VALIDATION naming the position.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { avg, count, countDistinct, max, min, sum, type Collection, type Database, type Query } from '../../src/index.js';
import {
  Customers, MODES, Orders, TS0, byId, canonAggRows, compareRows, evalPred, expectCode, expectCodeSync, keyTuples, makeCustomers, makeOrders,
  openOrdersAndCustomers, project, refAggregate, refJoin, type Customer, type Op, type Order, type Pred,
} from './helpers.js';

const ROWS = 2000;

describe.each(MODES)('db.sql() (%s)', (mode) => {
  let db: Database;
  let orders: Collection<typeof Orders>;
  let rows: Order[];
  let customers: Customer[];
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    // users 100..119 have no customer
    ({ db, orders, rows, customers, cleanup } = await openOrdersAndCustomers(mode, [...makeOrders({ count: ROWS, seed: 31, users: 120 })], [...makeCustomers({ count: 100, seed: 32 })]));
  });
  afterAll(async () => cleanup?.());

  const where = (p: Pred) => rows.filter((r) => evalPred(p, r));
  const ids = (rs: readonly Record<string, unknown>[]) => rs.map((r) => r.id as number).sort((a, b) => a - b);
  const cmp = (path: string, op: Op, value: unknown): Pred => ({ kind: 'cmp', path, op, value });
  /** Both queries return the same rows in the same order, and plan the same. */
  async function same(a: Query<any>, b: Query<any>): Promise<Record<string, unknown>[]> {
    expect(a.explain()).toBe(b.explain());
    const [x, y] = [await a.toArray(), await b.toArray()];
    expect(x).toEqual(y);
    return x;
  }

  it('SELECT list and *, ORDER BY, LIMIT and OFFSET as literals or parameters', async () => {
    const top = await same(
      db.sql('SELECT id, amount, ts FROM orders WHERE category = ? ORDER BY amount DESC, id LIMIT 10', ['cat04']),
      orders.query().where('category', '=', 'cat04').orderBy('amount', 'desc').orderBy('id').limit(10).select('id', 'amount', 'ts'),
    );
    const want = where(cmp('category', '=', 'cat04')).sort(compareRows([{ path: 'amount', desc: true }, { path: 'id', desc: false }]));
    expect(top).toEqual(want.slice(0, 10).map((r) => project(r, ['id', 'amount', 'ts'])));
    expect(Object.keys(top[0]).sort()).toEqual(['amount', 'id', 'ts']);

    const star = await db.sql('SELECT * FROM orders').toArray();
    expect(star.length).toBe(ROWS);
    expect(byId(star as unknown as Order[])).toEqual(rows.map((r) => project(r)));

    const paged = await same(
      db.sql('SELECT id FROM orders ORDER BY ts ASC, id DESC LIMIT ? OFFSET ?', [7, 30]),
      orders.query().orderBy('ts').orderBy('id', 'desc').offset(30).limit(7).select('id'),
    );
    const keys = [{ path: 'ts', desc: false }, { path: 'id', desc: true }];
    expect(paged.map((r) => r.id)).toEqual([...rows].sort(compareRows(keys)).slice(30, 37).map((r) => r.id));
    expect(await db.sql('SELECT id FROM orders ORDER BY id LIMIT 3 OFFSET 5').toArray()).toEqual([{ id: 6 }, { id: 7 }, { id: 8 }]);
    // Keywords are case-insensitive; table-qualified and aliased columns are accepted.
    expect(await db.sql('select o.id from orders o where o.id <= ? order by orders.id desc limit 2', [10]).toArray()).toEqual([{ id: 10 }, { id: 9 }]);
  });

  it('WHERE with AND, OR, NOT, parentheses, IN, NOT IN, BETWEEN, IS [NOT] NULL, <> and dotted paths', async () => {
    const from = new Date(TS0 + 20_000 * 60_000), to = new Date(TS0 + 40_000 * 60_000);
    const cases: [string, unknown[], Pred][] = [
      ['qty > ? AND (category = ? OR category = ?)', [5, 'cat01', 'cat02'],
        { kind: 'and', items: [cmp('qty', '>', 5), { kind: 'or', items: [cmp('category', '=', 'cat01'), cmp('category', '=', 'cat02')] }] }],
      // AND binds tighter than OR.
      ['qty > ? OR category = ? AND amount < ?', [8, 'cat03', 10],
        { kind: 'or', items: [cmp('qty', '>', 8), { kind: 'and', items: [cmp('category', '=', 'cat03'), cmp('amount', '<', 10)] }] }],
      ['NOT (qty >= ? OR note IS NULL)', [3], { kind: 'not', item: { kind: 'or', items: [cmp('qty', '>=', 3), cmp('note', 'is', null)] } }],
      ['NOT qty = ? AND NOT NOT meta.score IS NOT NULL', [2],
        { kind: 'and', items: [{ kind: 'not', item: cmp('qty', '=', 2) }, cmp('meta.score', 'is not', null)] }],
      ['category IN (?, ?, ?) AND userId NOT IN (?, ?)', ['cat05', 'cat06', 'cat07', 1, 2],
        { kind: 'and', items: [cmp('category', 'in', ['cat05', 'cat06', 'cat07']), cmp('userId', 'not in', [1, 2])] }],
      ['ts BETWEEN ? AND ? AND amount <> ?', [from, to, 12.5],
        { kind: 'and', items: [cmp('ts', '>=', from), cmp('ts', '<=', to), cmp('amount', '!=', 12.5)] }],
      ['meta.score > ? AND meta.source != ?', [5, 'web'], { kind: 'and', items: [cmp('meta.score', '>', 5), cmp('meta.source', '!=', 'web')] }],
      ['note IS NULL OR ((amount <= ?))', [1], { kind: 'or', items: [cmp('note', 'is', null), cmp('amount', '<=', 1)] }],
      ['note STARTSWITH ?', ['gam'], cmp('note', 'startsWith', 'gam')],
    ];
    for (const [cond, params, pred] of cases) {
      const got = await db.sql(`SELECT * FROM orders WHERE ${cond}`, params).toArray();
      const want = where(pred);
      expect(want.length, cond).toBeGreaterThan(0);
      expect(ids(got), cond).toEqual(want.map((r) => r.id));
    }
    // The same plan as the builder, index choice included.
    expect(db.sql('SELECT * FROM orders WHERE userId = ? AND qty > ?', [7, 1]).explain())
      .toBe(orders.query().where('userId', '=', 7).where('qty', '>', 1).explain());
  });

  it('GROUP BY with COUNT(*), SUM, AVG, MIN, MAX and COUNT(DISTINCT x) equals the builder and the reference', async () => {
    const got = await same(
      db.sql('SELECT category, COUNT(*) AS n, SUM(amount) AS total, AVG(qty) AS q, MIN(ts) AS first, MAX(amount) AS top, COUNT(DISTINCT userId) AS users FROM orders WHERE qty > ? GROUP BY category ORDER BY total DESC LIMIT 5', [2]),
      orders.query().where('qty', '>', 2).groupBy('category')
        .aggregate({ n: count(), total: sum('amount'), q: avg('qty'), first: min('ts'), top: max('amount'), users: countDistinct('userId') })
        .orderBy('total', 'desc').limit(5),
    );
    const ref = refAggregate(rows.filter((r) => r.qty > 2), ['category'], {
      n: { fn: 'count' }, total: { fn: 'sum', path: 'amount' }, q: { fn: 'avg', path: 'qty' }, first: { fn: 'min', path: 'ts' },
      top: { fn: 'max', path: 'amount' }, users: { fn: 'countDistinct', path: 'userId' },
    }).sort((a, b) => (b.total as number) - (a.total as number)).slice(0, 5);
    expect(canonAggRows(got, ['category'])).toEqual(canonAggRows(ref, ['category']));
    expect(got[0].first).toBeInstanceOf(Date);

    // Without aliases the names are derived; without GROUP BY one row; several group keys.
    const [whole] = await db.sql('SELECT COUNT(*), SUM(qty), MAX(ts), COUNT(DISTINCT category) FROM orders').toArray();
    expect(whole).toEqual({
      count: ROWS,
      sum_qty: rows.reduce((n, r) => n + r.qty, 0),
      max_ts: new Date(Math.max(...rows.map((r) => r.ts.getTime()))),
      countDistinct_category: 20,
    });
    const multi = await db.sql('SELECT category, qty, COUNT(*) AS n FROM orders GROUP BY category, qty').toArray();
    expect(canonAggRows(multi, ['category', 'qty'])).toEqual(canonAggRows(refAggregate(rows, ['category', 'qty'], { n: { fn: 'count' } }), ['category', 'qty']));
  });

  it('JOIN ... ON (inner, LEFT [OUTER], either side first) equals the builder', async () => {
    const inner = await same(
      db.sql('SELECT o.id, o.amount FROM orders o JOIN customers c ON o.userId = c.id WHERE c.country = ? ORDER BY o.id', ['FR']),
      orders.query().join(Customers, 'userId', 'id', { as: 'c' }).where('c.country', '=', 'FR').orderBy('id').select('id', 'amount'),
    );
    const joined = refJoin(rows, customers, 'userId', 'id', 'c', 'inner').filter((r) => (r.c as Customer).country === 'FR');
    // Only the selected fields: the joined row is left out unless its name is selected.
    expect(inner).toEqual(joined.map((r) => ({ id: r.id, amount: r.amount })));

    const reversed = await db.sql('SELECT id FROM orders INNER JOIN customers AS cu ON cu.id = orders.userId WHERE cu.country = ? ORDER BY id', ['FR']).toArray();
    expect(reversed.map((r) => r.id)).toEqual(inner.map((r) => r.id));

    for (const kw of ['LEFT JOIN', 'LEFT OUTER JOIN']) {
      const left = await same(
        db.sql(`SELECT id, c FROM orders ${kw} customers c ON orders.userId = c.id ORDER BY id`),
        orders.query().join(Customers, 'userId', 'id', { as: 'c', type: 'left' }).orderBy('id').select('id', 'c'),
      );
      expect(left.length).toBe(ROWS);
      expect(left.filter((r) => r.c === null).length).toBe(rows.filter((r) => r.userId >= 100).length);
    }

    // Conditions on a left-joined side apply after the join: a missing partner is absent (IS NULL
    // is true, comparisons are false), not a reason to keep the row with null.
    const leftJoined = refJoin(rows, customers, 'userId', 'id', 'c', 'left');
    const unmatched = await same(
      db.sql('SELECT id FROM orders LEFT JOIN customers c ON orders.userId = c.id WHERE c.country IS NULL ORDER BY id'),
      orders.query().join(Customers, 'userId', 'id', { as: 'c', type: 'left' }).where('c.country', 'is', null).orderBy('id').select('id'),
    );
    expect(unmatched.map((r) => r.id)).toEqual(leftJoined.filter((r) => r.c === null).map((r) => r.id));
    const leftFr = await db.sql('SELECT id FROM orders LEFT JOIN customers c ON orders.userId = c.id WHERE c.country = ? OR qty = ? ORDER BY id', ['FR', 0]).toArray();
    expect(leftFr.map((r) => r.id)).toEqual(leftJoined.filter((r) => (r.c as Customer | null)?.country === 'FR' || r.qty === 0).map((r) => r.id));

    const byCountry = await same(
      db.sql('SELECT c.country, COUNT(*) AS n, SUM(o.amount) AS revenue FROM orders o JOIN customers c ON o.userId = c.id GROUP BY c.country ORDER BY c.country'),
      orders.query().join(Customers, 'userId', 'id', { as: 'c' }).groupBy('c.country').aggregate({ n: count(), revenue: sum('amount') }).orderBy('c.country'),
    );
    expect(canonAggRows(byCountry, ['c.country'])).toEqual(canonAggRows(
      refAggregate(refJoin(rows, customers, 'userId', 'id', 'c', 'inner'), ['c.country'], { n: { fn: 'count' }, revenue: { fn: 'sum', path: 'amount' } }),
      ['c.country'],
    ));
  });

  it('the result is a full query: count, first, batches, stream, explain', async () => {
    const q = db.sql('SELECT id, qty FROM orders WHERE qty = ? ORDER BY id', [4]);
    const want = rows.filter((r) => r.qty === 4).map((r) => ({ id: r.id, qty: 4 }));
    expect(await q.count()).toBe(want.length);
    expect(await q.first()).toEqual(want[0]);
    const batches: Record<string, unknown>[] = [];
    for await (const b of q.batches()) batches.push(...b);
    expect(batches).toEqual(want);
    const streamed: unknown[] = [];
    for await (const r of q.stream()) streamed.push(r);
    expect(streamed).toEqual(want);
    expect(keyTuples(await q.limit(3).toArray(), [{ path: 'id', desc: false }])).toEqual(want.slice(0, 3).map((r) => [r.id]));
    expect(q.explain()).toMatch(/TableScan: orders/);
  });

  it('syntax errors are VALIDATION with details.position at the offending token', () => {
    const cases: [string, number][] = [
      ['SELEC id FROM orders', 0],
      ['SELECT id orders', 'SELECT id '.length],
      ['SELECT id FROM orders WHERE', 'SELECT id FROM orders WHERE'.length],
      ['SELECT id FROM orders WHERE amount >', 'SELECT id FROM orders WHERE amount >'.length],
      ['SELECT id FROM orders WHERE amount ? 3', 'SELECT id FROM orders WHERE amount '.length],
      ['SELECT id FROM orders ORDER amount', 'SELECT id FROM orders ORDER '.length],
      ['SELECT id FROM orders WHERE (qty > ?', 'SELECT id FROM orders WHERE (qty > ?'.length],
      ['SELECT id FROM orders LIMIT x', 'SELECT id FROM orders LIMIT '.length],
      ['SELECT id FROM orders WHERE qty = ? #', 'SELECT id FROM orders WHERE qty = ? '.length],
      ['SELECT id FROM orders GARBAGE MORE', 'SELECT id FROM orders GARBAGE '.length],
      ['SELECT id, FROM orders', 'SELECT id, '.length],
      ['SELECT COUNT(* FROM orders', 'SELECT COUNT(* '.length],
      ['SELECT id FROM orders WHERE qty IN ()', 'SELECT id FROM orders WHERE qty IN ('.length],
      ['SELECT id FROM orders WHERE qty BETWEEN ? OR ?', 'SELECT id FROM orders WHERE qty BETWEEN ? '.length],
      ['SELECT id FROM orders JOIN customers c ON userId = id', 'SELECT id FROM orders '.length],
    ];
    for (const [text, position] of cases) {
      const params = Array.from({ length: (text.match(/\?/g) ?? []).length }, () => 1);
      const err = expectCodeSync(() => db.sql(text, params), 'VALIDATION');
      expect(err.details.position, `${text}: ${err.message}`).toBe(position);
      expect(err.message).toContain(`position ${position}`);
    }
    // Non-grouped columns and * with aggregates.
    expect(expectCodeSync(() => db.sql('SELECT category, qty, COUNT(*) FROM orders GROUP BY category'), 'VALIDATION').details.position).toBe('SELECT category, '.length);
    expectCodeSync(() => db.sql('SELECT * FROM orders GROUP BY category'), 'VALIDATION');
  });

  it('values only as parameters: string literals are rejected, parameter counts must match', async () => {
    const quote = expectCodeSync(() => db.sql("SELECT id FROM orders WHERE category = 'cat01'"), 'VALIDATION');
    expect(quote.details.position).toBe('SELECT id FROM orders WHERE category = '.length);
    // "cat01" is a quoted identifier, not a value: a syntax error where a ? belongs.
    expectCodeSync(() => db.sql('SELECT id FROM orders WHERE category = "cat01"'), 'VALIDATION');
    // Too few parameters: the error names the first ? without a value.
    const few = expectCodeSync(() => db.sql('SELECT id FROM orders WHERE qty = ? AND amount > ?', [1]), 'VALIDATION');
    expect(few.details.position).toBe('SELECT id FROM orders WHERE qty = ? AND amount > '.length);
    expectCodeSync(() => db.sql('SELECT id FROM orders WHERE qty = ?', []), 'VALIDATION');
    expectCodeSync(() => db.sql('SELECT id FROM orders WHERE qty = ?', [1, 2]), 'VALIDATION');
    expectCodeSync(() => db.sql('SELECT id FROM orders', [1]), 'VALIDATION');
    expectCodeSync(() => db.sql('SELECT id FROM orders WHERE qty = ?', 1 as never), 'VALIDATION');
    expectCodeSync(() => db.sql(42 as never), 'VALIDATION');
    // A parameter of the wrong type is VALIDATION when the query is planned, before any work.
    await expectCode(() => db.sql('SELECT id FROM orders WHERE qty = ?', ['1']).toArray(), 'VALIDATION');
    await expectCode(() => db.sql('SELECT id FROM orders WHERE ts >= ?', ['2024-01-01']).toArray(), 'VALIDATION');
    expect(expectCodeSync(() => db.sql('SELECT id FROM orders LIMIT ?', ['5']), 'VALIDATION').details.position).toBe('SELECT id FROM orders LIMIT '.length);
    expectCodeSync(() => db.sql('SELECT id FROM orders LIMIT 2 OFFSET ?', [-1]), 'VALIDATION');
    // Unknown columns.
    const col = expectCodeSync(() => db.sql('SELECT id FROM orders WHERE nope = ?', [1]).explain(), 'VALIDATION');
    expect(col.details.path).toBe('nope');
    expectCodeSync(() => db.sql('SELECT nope FROM orders').explain(), 'VALIDATION');
  });

  it('"quoted" identifiers, comments, one trailing semicolon, NOT BETWEEN and ORDER BY a SELECT position', async () => {
    const got = await db.sql('SELECT "id", "amount" AS "Amount Due" FROM "orders" -- every order\n WHERE "category" = ? /* one category */ ORDER BY 2 DESC, 1 LIMIT 5 ;  -- done', ['cat04']).toArray();
    const want = where(cmp('category', '=', 'cat04')).sort(compareRows([{ path: 'amount', desc: true }, { path: 'id', desc: false }])).slice(0, 5);
    expect(got).toEqual(want.map((r) => ({ id: r.id, 'Amount Due': r.amount })));
    // A quoted name is never a keyword: "limit" is a column (there is none).
    expect(expectCodeSync(() => db.sql('SELECT "limit" FROM orders').explain(), 'VALIDATION').details.path).toBe('limit');

    const lo = 10, hi = 30;
    const outside = await db.sql('SELECT id FROM orders WHERE amount NOT BETWEEN ? AND ? AND qty = ?', [lo, hi, 4]).toArray();
    expect(ids(outside)).toEqual(rows.filter((r) => !(r.amount >= lo && r.amount <= hi) && r.qty === 4).map((r) => r.id));

    const grouped = await db.sql('SELECT category, COUNT(*) AS n FROM orders GROUP BY category ORDER BY 2 DESC, 1').toArray();
    const counts = new Map<string, number>();
    for (const r of rows) counts.set(r.category, (counts.get(r.category) ?? 0) + 1);
    expect(grouped).toEqual([...counts].map(([category, n]) => ({ category, n })).sort((a, b) => b.n - a.n || (a.category < b.category ? -1 : 1)));

    const errors: [string, number][] = [
      ['SELECT id FROM orders; SELECT id FROM orders', 'SELECT id FROM orders; '.length],
      ['SELECT id FROM orders;;', 'SELECT id FROM orders;'.length],
      ['SELECT id FROM orders /* open', 'SELECT id FROM orders '.length],
      ['SELECT "id FROM orders', 'SELECT '.length],
      ['SELECT id, amount FROM orders ORDER BY 3', 'SELECT id, amount FROM orders ORDER BY '.length],
      ['SELECT id FROM orders ORDER BY 0', 'SELECT id FROM orders ORDER BY '.length],
      ['SELECT * FROM orders ORDER BY 1', 'SELECT * FROM orders ORDER BY '.length],
    ];
    for (const [text, position] of errors) {
      const err = expectCodeSync(() => db.sql(text), 'VALIDATION');
      expect(err.details.position, `${text}: ${err.message}`).toBe(position);
    }
  });

  it('an unknown collection is UNKNOWN_COLLECTION naming it and its position', () => {
    const err = expectCodeSync(() => db.sql('SELECT * FROM nowhere'), 'UNKNOWN_COLLECTION');
    expect(err.details.collection).toBe('nowhere');
    expect(err.details.position).toBe('SELECT * FROM '.length);
    const join = expectCodeSync(() => db.sql('SELECT id FROM orders JOIN nowhere n ON orders.userId = n.id'), 'UNKNOWN_COLLECTION');
    expect(join.details.position).toBe('SELECT id FROM orders JOIN '.length);
  });
});
