// The fast scan paths: selection-vector predicates (compileSelector) against the row-test
// predicates, table scans that gather several leaves into one batch, index scans that fetch a
// chunk of keys in one key-ordered sweep (alternating direction, stay-on-leaf, read-ahead),
// strings read straight from pages (variable, fixed-width, overflow), columns added after
// leaves were written, and the for-await row iterator (order under concurrent next(), return()).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { model, t, type Collection, type Database } from '../../src/index.js';
import type { Batch, Vector } from '../../operators/batch.js';
import { compilePredicate, compileSelector, type CmpOp, type Expr } from '../../operators/expr.js';
import { dictOf } from '../../operators/dict-vector.js';
import { ColumnBuilder, readColumn, type ScanColumn } from '../../operators/scan-op.js';
import { AppendLeaf, LeafView, PackedRowBuilder } from '../../storage/btree-node.js';
import { encodeKey } from '../../storage/keys.js';
import type { Pager } from '../../storage/pager.js';
import { MODES, Orders, TS0, makeOrders, openDb, openOrders, prng, pick, type Order } from './helpers.js';

const byId = (a: { id: number }, b: { id: number }) => a.id - b.id;

describe('dictionary columns reach the batch as codes', () => {
  /** A leaf of one string column holding `cells` (undefined: absent), as its page decodes. */
  function leafOf(cells: (string | undefined)[]): LeafView {
    const leaf = new AppendLeaf(1);
    const b = new PackedRowBuilder();
    cells.forEach((x, i) => {
      b.begin(1);
      if (x === undefined) b.absent(); else b.utf8(x);
      leaf.append(encodeKey([i]), Buffer.from(b.current()));
    });
    const page = Buffer.alloc(1 << 16);
    return new LeafView(page.subarray(0, leaf.encodeInto(page)), 0);
  }
  const col: ScanColumn = { path: 's', column: 0, decoder: { kind: 'utf8' } };
  const pager = null as unknown as Pager; // page views need no pager
  const rowsOf = (n: number) => Uint32Array.from({ length: n }, (_, i) => i);

  it('rows from dictionary leaves carry codes into one dictionary per batch; a plain leaf drops them', async () => {
    const a = Array.from({ length: 300 }, (_, i) => (i % 7 === 0 ? undefined : ['red', 'green', 'blue'][i % 3]));
    const b = Array.from({ length: 200 }, (_, i) => ['blue', 'magenta'][i % 2]);
    const [leafA, leafB] = [leafOf(a), leafOf(b)];
    expect(leafA.column(0).kind).toBe('dict');
    expect(leafB.column(0).kind).toBe('dict');
    const out = new ColumnBuilder(col, 500);
    expect(readColumn(pager, leafA, rowsOf(300), 300, out, 0)).toBeNull();
    expect(readColumn(pager, leafB, rowsOf(200), 200, out, 300)).toBeNull();
    const v = out.vector(500);
    const d = dictOf(v);
    expect(d).not.toBeNull();
    const all = [...a, ...b];
    expect(v.values).toEqual(all);
    for (let i = 0; i < 500; i++) expect(d!.dict[d!.codes[i]]).toBe(all[i]);
    expect(new Set(d!.dict.filter((x) => x !== undefined)).size).toBe(4); // red, green, blue, magenta: one code each
    // Unique strings are stored with offsets, not a dictionary: the batch then has no codes.
    const unique = leafOf(Array.from({ length: 50 }, (_, i) => `value number ${i}`));
    expect(unique.column(0).kind).toBe('variable');
    const mixed = new ColumnBuilder(col, 350);
    readColumn(pager, leafA, rowsOf(300), 300, mixed, 0);
    readColumn(pager, unique, rowsOf(50), 50, mixed, 300);
    expect(dictOf(mixed.vector(350))).toBeNull();
    expect(mixed.vector(350).values).toEqual([...a, ...Array.from({ length: 50 }, (_, i) => `value number ${i}`)]);
  });
});

describe('compileSelector agrees with compilePredicate', () => {
  const OPS: CmpOp[] = ['<', '<=', '>', '>=', '=', '!=', 'in', 'not in', 'is', 'is not'];
  it('on random predicates over number vectors with and without absent values, and plain vectors', () => {
    const rnd = prng(7);
    for (let round = 0; round < 300; round++) {
      const n = 1 + Math.floor(rnd() * 300);
      const withAbsent = rnd() < 0.5;
      const xs = new Float64Array(n);
      const abs = withAbsent ? new Uint8Array(n) : null;
      const strs: unknown[] = [];
      for (let i = 0; i < n; i++) {
        xs[i] = Math.floor(rnd() * 10);
        if (abs && rnd() < 0.2) abs[i] = 1;
        strs.push(rnd() < 0.2 ? undefined : pick(rnd, ['a', 'b', 'c']));
      }
      const vectors = new Map<string, Vector>([
        ['x', { kind: 'f64', values: xs, absent: abs }],
        ['s', { kind: 'any', values: strs }],
      ]);
      const batch: Batch = { length: n, vectors };
      const leaf = (): Expr => {
        const op = pick(rnd, OPS);
        if (rnd() < 0.3) {
          const sop = pick(rnd, ['=', '!=', '<', '>=', 'is not'] as CmpOp[]);
          return { kind: 'cmp', path: 's', op: sop, value: sop === 'is not' ? null : pick(rnd, ['a', 'b', 'c']) };
        }
        const value = op === 'in' || op === 'not in' ? [1, 3, 5] : op === 'is' || op === 'is not' ? null : Math.floor(rnd() * 10);
        return { kind: 'cmp', path: 'x', op, value };
      };
      const expr = (depth: number): Expr => {
        const r = rnd();
        if (depth > 2 || r < 0.4) return leaf();
        if (r < 0.75) return { kind: 'and', items: [expr(depth + 1), expr(depth + 1), ...(rnd() < 0.3 ? [expr(depth + 1)] : [])] };
        if (r < 0.9) return { kind: 'or', items: [expr(depth + 1), expr(depth + 1)] };
        return { kind: 'not', item: expr(depth + 1) };
      };
      const e = expr(0);
      const test = compilePredicate(e)(batch);
      const want: number[] = [];
      for (let i = 0; i < n; i++) if (test(i)) want.push(i);
      const sel = new Uint32Array(n);
      const count = compileSelector(e)(batch, sel, -1);
      expect([...sel.subarray(0, count)]).toEqual(want);
      // Refining an existing selection (every other row) keeps only the rows of it that pass.
      const half = new Uint32Array(n);
      let h = 0;
      for (let i = 0; i < n; i += 2) half[h++] = i;
      const kept = compileSelector(e)(batch, half, h);
      expect([...half.subarray(0, kept)]).toEqual(want.filter((i) => i % 2 === 0));
    }
  });

  it('on dictionary-coded vectors exactly as on the same values without codes', () => {
    const rnd = prng(11);
    const words = ['apple', 'banana', 'cherry', 'date', 'elder', 'fig', 'grape'];
    const STRING_OPS: CmpOp[] = ['=', '!=', '<', '<=', '>', '>=', 'in', 'not in', 'is', 'is not', 'startsWith'];
    for (let round = 0; round < 200; round++) {
      const n = 1 + Math.floor(rnd() * 200);
      const dict: unknown[] = words.filter(() => rnd() < 0.7);
      dict.push(undefined); // absent rows, then the trailing entry every DictVector has
      const codes = new Int32Array(n);
      for (let i = 0; i < n; i++) codes[i] = Math.floor(rnd() * dict.length);
      const values = Array.from(codes, (c) => dict[c]);
      const coded = { length: n, vectors: new Map<string, Vector>([['s', { kind: 'any', values, codes, dict } as Vector]]) };
      const plain = { length: n, vectors: new Map<string, Vector>([['s', { kind: 'any', values: [...values] }]]) };
      const op = pick(rnd, STRING_OPS);
      const value = op === 'in' || op === 'not in' ? [pick(rnd, words), pick(rnd, words)] : op === 'is' || op === 'is not' ? null
        : op === 'startsWith' ? pick(rnd, words).slice(0, 2) : pick(rnd, words);
      const e: Expr = { kind: 'cmp', path: 's', op, value };
      const onCoded = compilePredicate(e)(coded), onPlain = compilePredicate(e)(plain);
      for (let i = 0; i < n; i++) expect(onCoded(i), `${op} ${JSON.stringify(value)} row ${i}`).toBe(onPlain(i));
    }
  });

  it('an AND of nothing selects every row', () => {
    const batch: Batch = { length: 3, vectors: new Map() };
    const sel = new Uint32Array(3);
    expect(compileSelector({ kind: 'and', items: [] })(batch, sel, -1)).toBe(3);
    expect([...sel]).toEqual([0, 1, 2]);
  });
});

describe.each(MODES)('scan and index paths (%s)', (mode) => {
  const COUNT = 6000;
  let db: Database;
  let orders: Collection<typeof Orders>;
  let rows: Order[];
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    // One category of ~900 rows: an index range fetched as one chunk of keys.
    ({ db, orders, rows, cleanup } = await openOrders(mode, [...makeOrders({ count: COUNT, seed: 5, category: (i, rnd) => (rnd() < 0.15 ? 'big' : `c${i % 7}`) })]));
  });
  afterAll(async () => cleanup?.());

  it('a filtered scan gathers several leaves into a batch and returns exactly the matching rows', async () => {
    const q = orders.query().where('amount', '<', 4);
    const batches: number[] = [];
    const got: Order[] = [];
    for await (const b of q.batches()) { batches.push(b.length); got.push(...(b as Order[])); }
    const want = rows.filter((r) => r.amount < 4);
    expect(got.sort(byId)).toEqual(want);
    // ~10% of each leaf survives: batches hold several leaves' rows.
    expect(Math.max(...batches)).toBeGreaterThan(30);
    expect(q.explain()).toMatch(/TableScan/);
  });

  it('absent optionals stay absent keys and timestamps are Dates, on the scan and the index path', async () => {
    for (const q of [orders.query().where('qty', '>=', 0), orders.query().where('category', '=', 'big')]) {
      const got = await q.toArray();
      // for await builds rows one at a time: the same rows, the same keys.
      const iterated: Order[] = [];
      for await (const r of q) iterated.push(r);
      expect(iterated).toEqual(got);
      for (let k = 0; k < got.length; k += 97) expect(Object.keys(iterated[k])).toEqual(Object.keys(got[k]));
      for (const r of got.slice(0, 500)) {
        const ref = rows[r.id - 1];
        expect(Object.keys(r).sort()).toEqual(Object.keys(ref).sort());
        expect(r.ts).toBeInstanceOf(Date);
        expect(r).toEqual(ref);
      }
    }
  });

  it('index ranges over thousands of keys (several chunks, alternating sweeps) equal the reference, in index order when ordered', async () => {
    expect(orders.query().where('category', '=', 'big').explain()).toMatch(/IndexScan/);
    const big = rows.filter((r) => r.category === 'big');
    for (let pass = 0; pass < 3; pass++) {
      const got = await orders.query().where('category', '=', 'big').toArray();
      expect(got.slice().sort(byId)).toEqual(big);
    }
    const from = new Date(TS0 + 20_000 * 60_000), to = new Date(TS0 + 70_000 * 60_000);
    const ordered = await orders.query().where('category', '=', 'big').where('ts', '>=', from).where('ts', '<', to).orderBy('ts').toArray();
    const want = big.filter((r) => r.ts >= from && r.ts < to).sort((a, b) => a.ts.getTime() - b.ts.getTime() || a.id - b.id);
    expect(ordered).toEqual(want);
    // A rare residual under a limit on an index that gives the order: a small first chunk, then
    // growing ones (several sweeps, alternating direction), rows still in index order.
    const q = orders.query().where('qty', '=', 3).orderBy('userId', 'desc').limit(400);
    expect(q.explain()).toMatch(/IndexScan.*byUser/);
    const wantLimited = rows.filter((r) => r.qty === 3).sort((a, b) => b.userId - a.userId || b.id - a.id).slice(0, 400);
    expect(await q.toArray()).toEqual(wantLimited);
    // Projection through the index path.
    const picked = await orders.query().where('userId', '=', 17).select('id', 'note').toArray();
    expect(picked.sort(byId)).toEqual(rows.filter((r) => r.userId === 17).map((r) => (r.note === undefined ? { id: r.id } : { id: r.id, note: r.note })));
  });

  it('for await hands out rows in order; concurrent next() calls resolve in order; return() closes the query', async () => {
    const q = orders.query().where('amount', '<', 10).orderBy('id');
    const want = rows.filter((r) => r.amount < 10);
    const it = q[Symbol.asyncIterator]();
    const results = await Promise.all(Array.from({ length: want.length + 3 }, () => it.next()));
    expect(results.filter((r) => !r.done).map((r) => (r.value as Order).id)).toEqual(want.map((r) => r.id));
    expect(results.slice(want.length).every((r) => r.done)).toBe(true);

    const it2 = q[Symbol.asyncIterator]();
    expect(((await it2.next()).value as Order).id).toBe(want[0].id);
    expect(db.stats().snapshots).toBe(1);
    await it2.return!(undefined);
    expect(db.stats().snapshots).toBe(0);
    expect((await it2.next()).done).toBe(true);
  });
});

describe.each(MODES)('strings read from pages (%s)', (mode) => {
  it('fixed-width, variable, overflow and absent strings, on scans and index fetches', async () => {
    const { db } = await openDb(mode, { pageSize: 16384 });
    const Docs = model('docs', { id: t.int(), code: t.string(), body: t.string().optional(), tag: t.string() }, {
      primaryKey: 'id', indexes: [{ name: 'byTag', fields: ['tag'] }],
    });
    const docs = await db.register(Docs);
    const rnd = prng(3);
    const all = Array.from({ length: 400 }, (_, k) => {
      const id = k + 1;
      const row: { id: number; code: string; body?: string; tag: string } = { id, code: `C${String(id).padStart(5, '0')}é`, tag: `t${id % 10}` };
      const r = rnd();
      if (r < 0.05) row.body = `long ${id} `.repeat(2500); // past a 16 KiB page: an overflow value
      else if (r < 0.7) row.body = `body ${id} ${'ü'.repeat(id % 9)}`;
      return row;
    });
    await docs.insertMany(all);
    const scanned = await docs.query().where('id', '>', 0).toArray();
    expect(scanned.sort(byId)).toEqual(all);
    const viaIndex = await docs.query().where('tag', '=', 't1').toArray();
    expect(viaIndex.sort(byId)).toEqual(all.filter((r) => r.tag === 't1'));
    expect(docs.query().where('tag', '=', 't1').explain()).toMatch(/IndexScan/);
    const filtered = await docs.query().where('code', '>=', 'C00200').toArray();
    expect(filtered.sort(byId)).toEqual(all.filter((r) => r.code >= 'C00200'));
  });

  it('a field added after rows were written reads as absent (or its default) on both paths', async () => {
    const { db } = await openDb(mode, { pageSize: 16384 });
    const V1 = model('items', { id: t.int(), kind: t.string() }, { primaryKey: 'id', indexes: [{ name: 'byKind', fields: ['kind'] }] });
    const items = await db.register(V1);
    await items.insertMany(Array.from({ length: 300 }, (_, k) => ({ id: k + 1, kind: `k${k % 3}` })));
    const V2 = model('items', { id: t.int(), kind: t.string(), extra: t.float().optional(), label: t.string().optional() }, {
      primaryKey: 'id', indexes: [{ name: 'byKind', fields: ['kind'] }],
    });
    const items2 = await db.register(V2);
    await items2.insert({ id: 1000, kind: 'k1', extra: 2.5, label: 'new' });
    const scanned = await items2.query().where('id', '>', 0).toArray();
    const old = scanned.filter((r) => r.id < 1000);
    expect(old).toHaveLength(300);
    for (const r of old) expect('extra' in r || 'label' in r).toBe(false);
    expect(scanned.find((r) => r.id === 1000)).toEqual({ id: 1000, kind: 'k1', extra: 2.5, label: 'new' });
    const viaIndex = await items2.query().where('kind', '=', 'k1').toArray();
    expect(viaIndex).toHaveLength(101);
    expect(viaIndex.find((r) => r.id === 1000)).toEqual({ id: 1000, kind: 'k1', extra: 2.5, label: 'new' });
    expect(await items2.query().where('extra', '>', 1).toArray()).toEqual([{ id: 1000, kind: 'k1', extra: 2.5, label: 'new' }]);
  });
});
