// Randomised spilling queries: generated sorts (multi-key, desc, top-k, offsets), group-bys
// (one or two keys, every aggregate, filtered input) and joins (inner and left, skewed and
// duplicate keys, then grouped or ordered), each under a memory limit drawn from 128 to 640 KiB
// (8 to 40 pages of 16 KiB) over data many times larger, compared with a plain-JS reference on
// both stores. Every query must also give back its spill pages and stay within its limit
// (explain({ analyze: true })).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { avg, count, countDistinct, max, min, sum, type Collection, type Database } from '../../src/index.js';
import {
  MODES, Orders, Tags, canonAggRows, compareRows, intIn, makeOrders, openShared, pick, prng, project, refAggregate, refJoin,
  type Order, type OrderKey, type RefAggs, type Tag,
} from './helpers.js';

// Larger runs: RANDOM_SPILL_QUERIES=200 QUERY_SEED=7 SPILL_LIMITS_KIB=128,192 npx vitest run test/query/random-spill.test.ts
const QUERIES = Number(process.env.RANDOM_SPILL_QUERIES ?? 24);
const SEED = Number(process.env.QUERY_SEED ?? 0);
const ROWS = 8000;
const KiB = 1024;
const LIMITS = (process.env.SPILL_LIMITS_KIB ?? '128,192,320,640').split(',').map((k) => Number(k) * KiB);

const SORT_PATHS = ['amount', 'qty', 'category', 'note', 'ts', 'meta.score', 'meta.source', 'userId', 'pad'];
const GROUP_PATHS = ['category', 'userId', 'qty', 'note', 'meta.source', 'meta.score'];

type Spec =
  | { kind: 'sort'; keys: OrderKey[]; minQty: number | null; offset: number; limit: number | null; select: string[] | null }
  | { kind: 'group'; groups: string[]; minQty: number | null }
  | { kind: 'join'; type: 'inner' | 'left'; then: 'rows' | 'group' | 'order'; minQty: number | null };

const AGGS = { n: count(), total: sum('amount'), avgQty: avg('qty'), first: min('ts'), top: max('amount'), users: countDistinct('userId') };
const REF_AGGS: RefAggs = {
  n: { fn: 'count' }, total: { fn: 'sum', path: 'amount' }, avgQty: { fn: 'avg', path: 'qty' },
  first: { fn: 'min', path: 'ts' }, top: { fn: 'max', path: 'amount' }, users: { fn: 'countDistinct', path: 'userId' },
};

function genSpec(rnd: () => number): Spec {
  const minQty = rnd() < 0.3 ? intIn(rnd, 1, 8) : null;
  const r = rnd();
  if (r < 0.45) {
    const keys: OrderKey[] = [];
    for (let n = intIn(rnd, 1, 3); keys.length < n;) {
      const path = pick(rnd, SORT_PATHS);
      if (!keys.some((k) => k.path === path)) keys.push({ path, desc: rnd() < 0.4 });
    }
    const limit = rnd() < 0.5 ? null : pick(rnd, [1, 7, 100, 2500, ROWS]);
    const offset = rnd() < 0.7 ? 0 : intIn(rnd, 1, 3000);
    const select = rnd() < 0.5 ? null : ['id', ...keys.map((k) => k.path.split('.')[0]).filter((p) => p !== 'id')];
    return { kind: 'sort', keys, minQty, offset, limit, select: select ? [...new Set(select)] : null };
  }
  if (r < 0.75) {
    const groups = [pick(rnd, GROUP_PATHS)];
    if (rnd() < 0.4) {
      const second = pick(rnd, GROUP_PATHS);
      if (second !== groups[0]) groups.push(second);
    }
    return { kind: 'group', groups, minQty };
  }
  return { kind: 'join', type: rnd() < 0.5 ? 'inner' : 'left', then: pick(rnd, ['rows', 'group', 'order'] as const), minQty };
}

describe.each(MODES)('randomised spilling queries against a reference (%s)', (mode) => {
  let db: Database;
  let orders: Collection<typeof Orders>;
  let rows: Order[];
  let tagRows: Tag[];
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    const rnd = prng(31 + SEED);
    const hot = intIn(rnd, 0, 300);
    // A third of the orders share one user (a skewed join and group key); rows carry padding so
    // whole rows are far larger than the limits.
    rows = [...makeOrders({ count: ROWS, seed: 17 + SEED, users: 400, padBytes: 120, userId: (i, r) => (r() < 1 / 3 ? hot : intIn(r, 0, 399)) })];
    // Tags: several per user, the hot user with 60 of them (160k joined rows), some users with none.
    tagRows = Array.from({ length: 3000 }, (_, k) => ({ id: k, userId: k < 60 ? hot : intIn(rnd, 0, 499), label: `t${k % 37}:`.padEnd(40 + (k % 50), 'l') }));
    ({ db, cleanup } = await openShared(mode, { pageSize: 16384, cacheSize: 64 * 2 ** 20 }));
    orders = await db.register(Orders);
    await orders.insertMany(rows);
    await (await db.register(Tags)).insertMany(tagRows);
  }, 120_000);
  afterAll(async () => cleanup?.());

  const filtered = (minQty: number | null) => (minQty === null ? rows : rows.filter((r) => r.qty >= minQty));
  const base = (minQty: number | null) => (minQty === null ? orders.query() : orders.query().where('qty', '>=', minQty));

  /** Runs a spec under `limit`: the rows it gives and what the reference says they must be, in a comparable form. */
  async function runSpec(s: Spec, limit: number): Promise<{ got: unknown; want: unknown; text: string }> {
    const opts = { memoryLimit: limit };
    if (s.kind === 'sort') {
      let q = base(s.minQty);
      for (const k of s.keys) q = q.orderBy(k.path as never, k.desc ? 'desc' : 'asc');
      q = q.orderBy('id'); // ties in id order: the expected rows are then exactly one sequence
      if (s.offset) q = q.offset(s.offset);
      if (s.limit !== null) q = q.limit(s.limit);
      const selected = s.select ? q.select(...(s.select as ['id'])) : q;
      const ordered = [...filtered(s.minQty)].sort(compareRows([...s.keys, { path: 'id', desc: false }]));
      const want = ordered.slice(s.offset, s.limit === null ? undefined : s.offset + s.limit).map((r) => project(r, s.select ?? undefined));
      const got = await selected.options(opts).toArray();
      return { got, want, text: await selected.options(opts).explain({ analyze: true }) };
    }
    if (s.kind === 'group') {
      const q = base(s.minQty).groupBy(...(s.groups as ['category'])).aggregate(AGGS).options(opts);
      const got = canonAggRows(await q.toArray(), s.groups);
      return { got, want: canonAggRows(refAggregate(filtered(s.minQty), s.groups, REF_AGGS), s.groups), text: await q.explain({ analyze: true }) };
    }
    const joined = base(s.minQty).select('id', 'userId', 'amount', 'pad').join(Tags, 'userId', 'userId', { as: 'tag', type: s.type });
    const ref = refJoin(filtered(s.minQty).map((r) => project(r, ['id', 'userId', 'amount', 'pad'])), tagRows, 'userId', 'userId', 'tag', s.type);
    if (s.then === 'group') {
      const q = joined.groupBy('tag.label').aggregate({ n: count(), total: sum('amount'), users: countDistinct('userId') }).options(opts);
      const want = refAggregate(ref, ['tag.label'], { n: { fn: 'count' }, total: { fn: 'sum', path: 'amount' }, users: { fn: 'countDistinct', path: 'userId' } });
      return { got: canonAggRows(await q.toArray(), ['tag.label']), want: canonAggRows(want, ['tag.label']), text: await q.explain({ analyze: true }) };
    }
    if (s.then === 'order') {
      const keys: OrderKey[] = [{ path: 'tag.label', desc: true }, { path: 'amount', desc: false }, { path: 'id', desc: false }, { path: 'tag.id', desc: false }];
      const q = joined.orderBy('tag.label', 'desc').orderBy('amount').orderBy('id').orderBy('tag.id').limit(500).options(opts);
      const pairsOf = (xs: readonly Record<string, any>[]) => xs.map((r) => `${r.id}:${r.tag === null ? 'null' : r.tag.id}`);
      return { got: pairsOf(await q.toArray()), want: pairsOf([...ref].sort(compareRows(keys)).slice(0, 500)), text: await q.explain({ analyze: true }) };
    }
    const q = joined.options(opts);
    const pairs = (xs: readonly Record<string, any>[]) => xs.map((r) => `${r.id}:${r.tag === null ? 'null' : r.tag.id}:${r.pad?.length}`).sort();
    return { got: pairs(await q.toArray()), want: pairs(ref), text: await q.explain({ analyze: true }) };
  }

  it('a join emits batches of at most 1,024 rows however many build rows a key matches', async () => {
    // The hot user's orders (a third of them) each match 60 tags: one probe batch makes ~60k pairs.
    const q = orders.query().select('id', 'userId').join(Tags, 'userId', 'userId', { as: 'tag', type: 'left' });
    let rowsOut = 0, largest = 0;
    for await (const b of q.batches()) { rowsOut += b.length; largest = Math.max(largest, b.length); }
    expect(rowsOut).toBe(refJoin(rows, tagRows, 'userId', 'userId', 'tag', 'left').length);
    expect(largest).toBe(1024);
  });

  it('a join under a group-by spills both within the limit (the group-by keeps its partition buffers)', async () => {
    for (const kib of [128, 192, 640]) {
      for (const type of ['left', 'inner'] as const) {
        const { got, want, text } = await runSpec({ kind: 'join', type, then: 'group', minQty: null }, kib * KiB);
        expect(got, `${type} join under ${kib} KiB`).toEqual(want);
        expect(text, `${type} join under ${kib} KiB`).toMatch(/HashAggregate: .*spilled/);
        expect(text, `${type} join under ${kib} KiB`).toMatch(/HashJoin: .*spilled/);
      }
    }
    expect(db.stats().spill.pagesInUse).toBe(0);
  });

  it('a top-k whose rows do not fit merges its runs as it goes: the right rows, and little written', async () => {
    // 3,000 joined rows of about 300 bytes against 1 MiB, beside the join's build side: the top-k
    // spills at every compaction; its runs are merged into one of the best 3,000 once they reach
    // the merge fan-in. Without those merges it wrote 160 MiB here, with them 12.
    const keys: OrderKey[] = [{ path: 'tag.label', desc: false }, { path: 'id', desc: false }, { path: 'tag.id', desc: false }];
    const ref = refJoin(rows.map((r) => project(r, ['id', 'userId', 'amount', 'pad'])), tagRows, 'userId', 'userId', 'tag', 'left');
    const want = [...ref].sort(compareRows(keys)).slice(0, 3000).map((r: Record<string, any>) => `${r.id}:${r.tag === null ? 'null' : r.tag.id}`);
    const q = orders.query().select('id', 'userId', 'amount', 'pad').join(Tags, 'userId', 'userId', { as: 'tag', type: 'left' })
      .orderBy('tag.label').orderBy('id').orderBy('tag.id').limit(3000).options({ memoryLimit: 1024 * KiB });
    const got = (await q.toArray()).map((r: Record<string, any>) => `${r.id}:${r.tag === null ? 'null' : r.tag.id}`);
    expect(got).toEqual(want);
    const text = await q.explain({ analyze: true });
    const [, amount, unit] = /TopK: .*spilled ([\d.]+) (KiB|MiB) in/.exec(text)!;
    expect(Number(amount) * (unit === 'MiB' ? 1024 : 1)).toBeLessThan(64 * 1024);
    expect(db.stats().spill.pagesInUse).toBe(0);
  });

  it(`${QUERIES} generated sorts, group-bys and joins under small limits give the reference rows, within the limit`, async () => {
    const rnd = prng((mode === 'memory' ? 301 : 302) + SEED);
    const spilledBefore = db.stats().spill.runsWritten;
    const kinds = new Set<string>();
    for (let n = 0; n < QUERIES; n++) {
      const s = genSpec(rnd);
      const limit = pick(rnd, LIMITS);
      const label = `query ${n} under ${limit / KiB} KiB: ${JSON.stringify(s)}`;
      const runsBefore = db.stats().spill.runsWritten;
      let result;
      try {
        result = await runSpec(s, limit);
      } catch (err) {
        throw new Error(`${label}: ${(err as Error).message}`, { cause: err });
      }
      expect(result.got, label).toEqual(result.want);
      // The query (both of its runs) gave back every spill page and snapshot.
      const stats = db.stats();
      expect(stats.spill.pagesInUse, label).toBe(0);
      expect(stats.snapshots, label).toBe(0);
      const [, peak, of] = /peak memory (\d+) bytes of (\d+)/.exec(result.text)!.map(Number);
      expect(of, label).toBe(limit);
      expect(peak, label).toBeLessThanOrEqual(limit);
      if (stats.spill.runsWritten > runsBefore) kinds.add(s.kind);
    }
    // The limits are small enough that every kind of query spilled at least once.
    expect(db.stats().spill.runsWritten).toBeGreaterThan(spilledBefore);
    if (QUERIES >= 24) expect([...kinds].sort()).toEqual(['group', 'join', 'sort']);
  }, 60_000 + QUERIES * 4000);
});
