// Answers from an index alone, when its bounds decide every condition (equality on leading
// fields, a range on the next one):
// - count() counts the index entries in bounds and reads no row (a range with no lower bound only
//   on a required field, since absent values sit below every value in the index; -0 = 0);
// - min()/max() without groups, of the field after the equality prefix, read the first (past the
//   absent values) or last entry in bounds;
// - rows whose every column is a part of the index keys (index fields, then the primary key) are
//   decoded from the index entries, without fetches.
// Anything else (another condition, an upper bound alone on an optional field, a float's min)
// still fetches or scans. Against a plain-JS reference on both stores; "reads no row" through the
// pool's counters.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { count, max, min, model, t, type Collection, type Database } from '../../src/index.js';
import { MODES, openShared } from './helpers.js';

const Events = model('events', {
  id: t.int(),
  kind: t.string(),
  at: t.int(),
  score: t.float().optional(),
  rank: t.int().optional(),
  seq: t.bigint(),
  body: t.string(),
}, {
  primaryKey: 'id',
  indexes: [{ name: 'byKindAt', fields: ['kind', 'at'] }, { name: 'byScore', fields: ['score'] }, { name: 'byKindRank', fields: ['kind', 'rank'] }, { name: 'bySeq', fields: ['seq'] }],
});
type Event = { id: number; kind: string; at: number; score?: number; rank?: number; seq: bigint; body: string };

const ROWS = 6000;
const KINDS = ['click', 'view', 'buy', 'share', 'ghost']; // ghost events have no rank

function makeEvents(): Event[] {
  let s = 7;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  return Array.from({ length: ROWS }, (_, id) => {
    const e: Event = { id, kind: KINDS[Math.floor(rnd() * KINDS.length)], at: Math.floor(rnd() * 1000), seq: BigInt(id) * 3n - 7000n, body: 'x'.repeat(200) };
    const r = rnd();
    if (r < 0.8) e.score = r < 0.05 ? -0 : r < 0.1 ? 0 : Math.round(rnd() * 100) / 10 - 2;
    if (e.kind !== 'ghost' && rnd() < 0.7) e.rank = Math.floor(rnd() * 2000) - 1000;
    return e;
  });
}

describe.each(MODES)('count(), min() and max() from an index alone (%s)', (mode) => {
  let db: Database;
  let events: Collection<typeof Events>;
  let rows: Event[];
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    ({ db, cleanup } = await openShared(mode, { pageSize: 16384 }));
    events = await db.register(Events);
    rows = makeEvents();
    await events.insertMany(rows);
  });
  afterAll(async () => cleanup?.());

  /** Pool page accesses (hits + misses) of `run`. */
  async function pagesTouched(run: () => Promise<unknown>): Promise<number> {
    const before = db.stats().cache;
    await run();
    const after = db.stats().cache;
    return after.hits + after.misses - before.hits - before.misses;
  }

  type Cond = [path: 'kind' | 'at' | 'score' | 'id' | 'rank', op: '=' | '!=' | '<' | '<=' | '>' | '>=', value: number | string];
  const test = (e: Event, [path, op, v]: Cond): boolean => {
    const x = e[path];
    if (x === undefined) return false;
    switch (op) {
      case '=': return x === v;
      case '!=': return x !== v;
      case '<': return x < v;
      case '<=': return x <= v;
      case '>': return x > v;
      default: return x >= v;
    }
  };
  const cases: { conds: Cond[]; indexOnly: boolean }[] = [
    { conds: [['kind', '=', 'buy']], indexOnly: true },
    { conds: [['kind', '=', 'buy'], ['at', '>=', 300]], indexOnly: true },
    { conds: [['kind', '=', 'view'], ['at', '<', 200]], indexOnly: true }, // at is required: no absent entries below
    { conds: [['kind', '=', 'view'], ['at', '>', 100], ['at', '<=', 400]], indexOnly: true },
    { conds: [['score', '=', 0]], indexOnly: true }, // -0 and 0 are one key, and -0 === 0
    { conds: [['score', '>', 1.5]], indexOnly: true },
    { conds: [['score', '>=', -1], ['score', '<', 3]], indexOnly: true },
    { conds: [['score', '<', 1]], indexOnly: false }, // would count the absent scores
    { conds: [['kind', '=', 'buy'], ['id', '<', 3000]], indexOnly: false }, // id is not in the bounds
    { conds: [['at', '>', 500]], indexOnly: false }, // at is not a leading field
  ];

  it('gives the reference count, reading only index pages when the bounds decide every condition', async () => {
    for (const { conds, indexOnly } of cases) {
      const label = conds.map((c) => c.join(' ')).join(' AND ');
      let q = events.query();
      for (const [path, op, v] of conds) q = q.where(path, op, v);
      const want = rows.filter((e) => conds.every((c) => test(e, c))).length;
      expect(want, label).toBeGreaterThan(0);
      let got = -1;
      const pages = await pagesTouched(async () => { got = await q.count(); });
      expect(got, label).toBe(want);
      // Rows through the index: bounds that decide every condition leave no residual filter.
      expect(await q.toArray().then((r) => r.length), label).toBe(want);
      if (q.explain().includes('IndexScan')) expect(q.explain().includes('residual filter'), label).toBe(!indexOnly);
      // The rows tree of 6,000 rows with 200-byte bodies spans ~90 leaves, which a count that
      // fetches or scans touches (94–99 page accesses here); an index-only count touches the
      // catalog and the index pages in bounds, planning included (6–12).
      if (indexOnly) expect(pages, label).toBeLessThan(30);
      else expect(pages, label).toBeGreaterThan(60);
      // limit and offset apply to what the index counts.
      expect(await q.offset(3).limit(5).count(), label).toBe(Math.max(0, Math.min(5, want - 3)));
    }
  });

  it('min()/max() of the field after an equality prefix read the index edges, skipping absent values', async () => {
    type Path = 'id' | 'kind' | 'at' | 'rank' | 'score' | 'seq';
    const edge = (xs: readonly (number | string | bigint | undefined)[], fn: 'min' | 'max') => {
      const present = xs.filter((x) => x !== undefined) as (number | string | bigint)[];
      if (present.length === 0) return null;
      return present.reduce((a, b) => ((fn === 'min' ? b < a : b > a) ? b : a));
    };
    const cases: { conds: Cond[]; path: Path; edges: boolean }[] = [
      { conds: [], path: 'id', edges: true }, // the primary key
      { conds: [], path: 'kind', edges: true },
      { conds: [['kind', '=', 'buy']], path: 'at', edges: true },
      { conds: [['kind', '=', 'view'], ['at', '>', 100], ['at', '<', 600]], path: 'at', edges: true },
      { conds: [['kind', '=', 'share']], path: 'rank', edges: true }, // min skips the absent ranks
      { conds: [['kind', '=', 'click'], ['rank', '<', 0]], path: 'rank', edges: true },
      { conds: [['kind', '=', 'ghost']], path: 'rank', edges: true }, // every rank absent: null
      { conds: [['kind', '=', 'nobody']], path: 'at', edges: true }, // no entries: null
      { conds: [], path: 'score', edges: false }, // a float: -0 and 0 share a key
      { conds: [], path: 'seq', edges: false }, // a bigint: its key part decodes as a number
      { conds: [['kind', '=', 'buy'], ['id', '<', 3000]], path: 'at', edges: false }, // id is not in the bounds
      { conds: [], path: 'at', edges: false }, // at follows no equality prefix
    ];
    for (const { conds, path, edges } of cases) {
      const label = `${path} where ${conds.map((c) => c.join(' ')).join(' AND ') || 'true'}`;
      const matching = rows.filter((e) => conds.every((c) => test(e, c)));
      const want = { lo: edge(matching.map((e) => e[path]), 'min'), hi: edge(matching.map((e) => e[path]), 'max') };
      let q = events.query();
      for (const [p, op, v] of conds) q = q.where(p, op, v);
      const agg = q.aggregate({ lo: min(path), hi: max(path) });
      expect(agg.explain(), label).toMatch(edges ? /^IndexMinMax: / : /HashAggregate/);
      let got: unknown;
      const pages = await pagesTouched(async () => { got = await agg.toArray(); });
      expect(got, label).toEqual([want]);
      if (edges) expect(pages, label).toBeLessThan(30);
      else expect(pages, label).toBeGreaterThan(60);
    }
    // Aggregates other than min/max, and having() on the edges' row.
    expect(await events.query().where('kind', '=', 'buy').aggregate({ hi: max('at'), n: count() }).toArray())
      .toEqual([{ hi: Math.max(...rows.filter((e) => e.kind === 'buy').map((e) => e.at)), n: rows.filter((e) => e.kind === 'buy').length }]);
    expect(await events.query().aggregate({ hi: max('id') }).having('hi', '>', ROWS).toArray()).toEqual([]);
    expect(await events.query().aggregate({ hi: max('id') }).having('hi', '=', ROWS - 1).toArray()).toEqual([{ hi: ROWS - 1 }]);
  });

  it('rows whose every column is in the index keys come from the index alone (IndexOnlyScan)', async () => {
    type Sel = 'id' | 'kind' | 'at' | 'rank' | 'body';
    const cases: { conds: Cond[]; select: Sel[]; order?: ['at', 'asc' | 'desc']; limit?: number; only: boolean }[] = [
      { conds: [['kind', '=', 'view'], ['at', '<', 300]], select: ['id', 'at'], only: true },
      { conds: [['kind', '=', 'view'], ['at', '<', 300]], select: ['id'], order: ['at', 'desc'], limit: 25, only: true },
      { conds: [['kind', '=', 'buy'], ['at', '>=', 900]], select: ['kind', 'at', 'id'], order: ['at', 'asc'], only: true },
      // A condition the bounds do not decide, on a column in the keys: filtered after decoding.
      { conds: [['kind', '=', 'buy'], ['at', '>=', 500], ['at', '!=', 700]], select: ['id', 'at'], only: true },
      // rank is optional: the absent ones fail rank < 0 (not decided by an upper bound alone).
      { conds: [['kind', '=', 'click'], ['rank', '<', 0]], select: ['id', 'rank'], only: true },
      { conds: [['kind', '=', 'view'], ['at', '<', 300]], select: ['id', 'body'], only: false }, // body is not in the keys
    ];
    for (const { conds, select, order, limit, only } of cases) {
      const label = `${select.join(',')} where ${conds.map((c) => c.join(' ')).join(' AND ')}${order ? ` order by ${order.join(' ')}` : ''}${limit ? ` limit ${limit}` : ''}`;
      let ref = rows.filter((e) => conds.every((c) => test(e, c)));
      if (order) ref = [...ref].sort((a, b) => (order[1] === 'asc' ? a.at - b.at : b.at - a.at) || (order[1] === 'asc' ? a.id - b.id : b.id - a.id));
      if (limit) ref = ref.slice(0, limit);
      let q = events.query();
      for (const [p, op, v] of conds) q = q.where(p, op, v);
      if (order) q = q.orderBy(order[0], order[1]);
      if (limit) q = q.limit(limit);
      const sq = q.select(...select);
      expect(sq.explain(), label).toMatch(only ? /IndexOnlyScan: .*from the index keys/ : /IndexScan: /);
      let got: Record<string, unknown>[] = [];
      const pages = await pagesTouched(async () => { got = await sq.toArray(); });
      const want = ref.map((e) => Object.fromEntries(select.filter((f) => e[f] !== undefined).map((f) => [f, e[f]])));
      // Without an order the index gives its own (category then time); compare as sets by id.
      if (order) expect(got, label).toEqual(want);
      else expect([...got].sort((a, b) => (a.id as number) - (b.id as number)), label).toEqual(want);
      if (only) expect(pages, label).toBeLessThan(30);
    }
  });

  it('stays exact through writes in a transaction and after deletes', async () => {
    const q = () => events.query().where('kind', '=', 'share').where('at', '>=', 500);
    const before = rows.filter((e) => e.kind === 'share' && e.at >= 500).length;
    await db.transaction(async (tx) => {
      const ev = tx.collection(Events);
      await ev.insert({ id: ROWS, kind: 'share', at: 999, seq: 0n, body: '' });
      await ev.delete(rows.find((e) => e.kind === 'share' && e.at >= 500)!.id);
      await ev.insert({ id: ROWS + 1, kind: 'share', at: 10, seq: 1n, body: '' });
      expect(await ev.query().where('kind', '=', 'share').where('at', '>=', 500).count()).toBe(before);
    });
    expect(await q().count()).toBe(before);
    expect(await q().toArray().then((r) => r.length)).toBe(before);
  });
});
