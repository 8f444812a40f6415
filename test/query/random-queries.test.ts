// Randomised queries: seeded predicates over every operator of API.md (nested with
// and/or/not, dotted paths), multi-key orderBy, offset, limit and select, each compared
// with a plain-JS reference over the same rows, on both storage modes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { filter, map } from 'ix/asynciterable/operators';
import { AsyncIterableX, toArray as ixToArray } from 'ix/asynciterable';
import type { Collection, Condition, ConditionBuilder, Database, Query } from '../../src/index.js';
import {
  CATEGORIES, MODES, Orders, SOURCES, TS0, byId, collect, compareRows, evalPred, intIn, keyTuples, makeOrders, openOrders, pick, prng, project,
  type Op, type Order, type OrderKey, type Pred,
} from './helpers.js';

const ROWS = 2000;
// Larger runs: RANDOM_QUERIES=2000 QUERY_SEED=7 npx vitest run test/query/random-queries.test.ts
const QUERIES = Number(process.env.RANDOM_QUERIES ?? 100);
const SEED = Number(process.env.QUERY_SEED ?? 0);

type Kind = 'int' | 'float' | 'string' | 'ts';
interface FieldGen { path: string; kind: Kind; value(rnd: () => number): unknown }

/** Every filterable path with a value generator biased towards values present in the data. */
function fieldGens(rows: readonly Order[]): FieldGen[] {
  const some = <T>(f: (r: Order) => T | undefined) => (rnd: () => number): T | undefined => {
    for (let tries = 0; tries < 20; tries++) { const v = f(pick(rnd, rows)); if (v !== undefined) return v; }
    return undefined;
  };
  const amount = some((r) => r.amount), score = some((r) => r.meta?.score), ts = some((r) => r.ts), note = some((r) => r.note);
  return [
    { path: 'id', kind: 'int', value: (rnd) => intIn(rnd, -5, ROWS + 5) },
    { path: 'userId', kind: 'int', value: (rnd) => intIn(rnd, 0, 60) },
    { path: 'qty', kind: 'int', value: (rnd) => intIn(rnd, -1, 10) },
    { path: 'amount', kind: 'float', value: (rnd) => (rnd() < 0.7 ? amount(rnd) : Math.floor(rnd() * 4000) / 100) },
    { path: 'meta.score', kind: 'float', value: (rnd) => (rnd() < 0.7 ? score(rnd) ?? 1.5 : rnd() * 10) },
    { path: 'category', kind: 'string', value: (rnd) => (rnd() < 0.9 ? pick(rnd, CATEGORIES) : 'zzz') },
    { path: 'note', kind: 'string', value: (rnd) => (rnd() < 0.7 ? note(rnd) ?? 'al-1' : `beta-${intIn(rnd, 0, 99)}`) },
    { path: 'meta.source', kind: 'string', value: (rnd) => (rnd() < 0.9 ? pick(rnd, SOURCES) : 'mail') },
    { path: 'ts', kind: 'ts', value: (rnd) => (rnd() < 0.6 ? ts(rnd) ?? new Date(TS0) : new Date(TS0 + Math.floor(rnd() * 100_000) * 60_000)) },
  ];
}

const CMP_OPS: Op[] = ['=', '!=', '<', '<=', '>', '>=', 'in', 'not in', 'is', 'is not'];
const PREFIXES: Record<string, string[]> = {
  category: ['cat0', 'cat1', 'cat', 'cat07', 'x', ''],
  note: ['al', 'be', 'alpha', 'gamma-1', 'delta-', 'z'],
  'meta.source': ['w', 'ap', 'pos', 'q'],
};

function genCmp(rnd: () => number, gens: readonly FieldGen[]): Pred {
  const g = pick(rnd, gens);
  const ops = g.kind === 'string' ? [...CMP_OPS, 'startsWith' as Op, 'startsWith' as Op] : CMP_OPS;
  const op = pick(rnd, ops);
  let value: unknown;
  if (op === 'is' || op === 'is not') value = null;
  else if (op === 'in' || op === 'not in') value = Array.from({ length: intIn(rnd, 0, 4) }, () => g.value(rnd));
  else if (op === 'startsWith') value = pick(rnd, PREFIXES[g.path]);
  else value = g.value(rnd);
  return { kind: 'cmp', path: g.path, op, value };
}

function genPred(rnd: () => number, gens: readonly FieldGen[], depth: number): Pred {
  const r = rnd();
  if (depth <= 0 || r < 0.45) return genCmp(rnd, gens);
  if (r < 0.7) return { kind: 'and', items: Array.from({ length: intIn(rnd, 1, 3) }, () => genPred(rnd, gens, depth - 1)) };
  if (r < 0.9) return { kind: 'or', items: Array.from({ length: intIn(rnd, 1, 3) }, () => genPred(rnd, gens, depth - 1)) };
  return { kind: 'not', item: genPred(rnd, gens, depth - 1) };
}

function toCondition(eb: ConditionBuilder, p: Pred): Condition {
  switch (p.kind) {
    case 'cmp': return eb(p.path, p.op, p.value);
    case 'and': return eb.and(p.items.map((x) => toCondition(eb, x)));
    case 'or': return eb.or(p.items.map((x) => toCondition(eb, x)));
    case 'not': return eb.not(toCondition(eb, p.item));
  }
}

const show = (p: Pred): string => {
  switch (p.kind) {
    case 'cmp': return `${p.path} ${p.op} ${JSON.stringify(p.value)}`;
    case 'and': return `(${p.items.map(show).join(' AND ')})`;
    case 'or': return `(${p.items.map(show).join(' OR ')})`;
    case 'not': return `NOT ${show(p.item)}`;
  }
};

const ORDER_PATHS = ['id', 'userId', 'category', 'amount', 'qty', 'ts', 'note', 'meta.score', 'meta.source'];
const SELECT_FIELDS = ['id', 'userId', 'category', 'amount', 'qty', 'ts', 'note', 'meta'] as const;

interface Spec {
  where: Pred[];
  /** Which where() items use the (path, op, value) form instead of a callback. */
  direct: boolean[];
  order: OrderKey[];
  /** True when 'id' closes the order, making it total. */
  total: boolean;
  offset: number;
  limit: number;
  select: (typeof SELECT_FIELDS)[number][] | null;
}

function genSpec(rnd: () => number, gens: readonly FieldGen[]): Spec {
  const where = Array.from({ length: intIn(rnd, 0, 3) }, () => genPred(rnd, gens, 3));
  const direct = where.map((p) => p.kind === 'cmp' && rnd() < 0.6);
  const order: OrderKey[] = [];
  const nKeys = rnd() < 0.25 ? 0 : intIn(rnd, 1, 3);
  while (order.length < nKeys) {
    const path = pick(rnd, ORDER_PATHS);
    if (!order.some((o) => o.path === path)) order.push({ path, desc: rnd() < 0.5 });
  }
  const total = order.length > 0 && !order.some((o) => o.path === 'id') && rnd() < 0.5;
  if (total) order.push({ path: 'id', desc: rnd() < 0.5 });
  const offset = rnd() < 0.3 ? intIn(rnd, 0, 50) : 0;
  const limit = rnd() < 0.4 ? intIn(rnd, 0, 40) : Infinity;
  const select = rnd() < 0.3 ? SELECT_FIELDS.filter(() => rnd() < 0.5) : null;
  return { where, direct, order, total: total || order.some((o) => o.path === 'id'), offset, limit, select: select && select.length ? select : null };
}

function build(orders: Collection<typeof Orders>, s: Spec): Query<any> {
  let q: Query<any> = orders.query();
  s.where.forEach((p, i) => {
    q = s.direct[i] && p.kind === 'cmp' ? q.where(p.path, p.op, p.value) : q.where((eb) => toCondition(eb, p));
  });
  for (const o of s.order) q = q.orderBy(o.path, o.desc ? 'desc' : 'asc');
  if (s.offset) q = q.offset(s.offset);
  if (Number.isFinite(s.limit)) q = q.limit(s.limit);
  if (s.select) q = q.select(...s.select);
  return q;
}

function describeSpec(s: Spec): string {
  return [
    s.where.length ? `WHERE ${s.where.map(show).join(' AND ')}` : '',
    s.order.length ? `ORDER BY ${s.order.map((o) => `${o.path} ${o.desc ? 'desc' : 'asc'}`).join(', ')}` : '',
    s.offset ? `OFFSET ${s.offset}` : '',
    Number.isFinite(s.limit) ? `LIMIT ${s.limit}` : '',
    s.select ? `SELECT ${s.select.join(', ')}` : '',
  ].filter(Boolean).join(' ');
}

/** Runs `fn`, naming the generated query in any error it throws. */
async function withLabel<T>(label: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    (err as Error).message = `${label}\n${(err as Error).message}`;
    throw err;
  }
}

/** Field-by-field equality of a result row and an expected row (Dates by instant). */
function sameRow(a: unknown, b: unknown): boolean {
  if (a instanceof Date || b instanceof Date) return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  if (!a || !b || typeof a !== 'object' || typeof b !== 'object') return Object.is(a, b);
  const ka = Object.keys(a), kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (const k of kb) if (!sameRow((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  return true;
}

/** Cheap comparison; falls back to toEqual only to print a diff. */
function expectRow(got: unknown, want: unknown, label: string): void {
  if (!sameRow(got, want)) expect(got, label).toEqual(want);
}

function expectSame(got: unknown, want: unknown, label: string): void {
  if (JSON.stringify(got) !== JSON.stringify(want)) expect(got, label).toEqual(want);
}

/** JSON with sorted keys, so field order does not matter. */
const stable = (v: unknown): string => JSON.stringify(v, (_k, x) => (x && typeof x === 'object' && !Array.isArray(x) && !(x instanceof Date)
  ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, (x as Record<string, unknown>)[k]]))
  : x));
const canonical = (rows: readonly unknown[]) => rows.map(stable).sort();

describe.each(MODES)('randomised queries against a plain-JS reference (%s)', (mode) => {
  let db: Database;
  let orders: Collection<typeof Orders>;
  let cleanup: () => Promise<void>;
  let rows: Order[];
  let gens: FieldGen[];

  beforeAll(async () => {
    const generated = [...makeOrders({ count: ROWS, seed: 11 + SEED, users: 60 })];
    ({ db, orders, cleanup } = await openOrders(mode, generated));
    // Some deletes and updates so the trees are not just a bulk load.
    const byKey = new Map(generated.map((r) => [r.id, r]));
    const rnd = prng(99 + SEED);
    for (let i = 0; i < 40; i++) {
      const id = intIn(rnd, 1, ROWS);
      if (!byKey.has(id)) continue;
      if (i % 2 === 0) {
        await orders.delete(id);
        byKey.delete(id);
      } else {
        const patch = { qty: intIn(rnd, 0, 9), note: undefined };
        await orders.update(id, patch);
        const r = { ...byKey.get(id)!, qty: patch.qty };
        delete r.note;
        byKey.set(id, r);
      }
    }
    rows = [...byKey.values()].sort((a, b) => a.id - b.id);
    gens = fieldGens(rows);
  });
  afterAll(async () => cleanup?.());

  /** The reference answer for a spec: filtered, ordered (stable by id), sliced, projected. */
  function reference(s: Spec): { full: Order[]; sliced: Order[] } {
    const full = rows.filter((r) => s.where.every((p) => evalPred(p, r)));
    // Sort on precomputed key tuples (rows are in id order, and Array#sort is stable).
    const cmp = compareRows(s.order.map((o, i) => ({ path: String(i), desc: o.desc })));
    const ordered = s.order.length
      ? full.map((r) => ({ k: keyTuples([r], s.order)[0].map((v) => v ?? undefined), r })).sort((a, b) => cmp(a.k, b.k)).map((x) => x.r)
      : full;
    const end = Number.isFinite(s.limit) ? s.offset + s.limit : undefined;
    return { full: ordered, sliced: ordered.slice(s.offset, end) };
  }

  /** Checks one result against the reference, allowing any order among ties. */
  function check(s: Spec, got: Record<string, unknown>[], label: string): void {
    const { full, sliced } = reference(s);
    const out = (r: Order) => project(r, s.select ?? undefined);
    expect(got.length, label).toBe(sliced.length);
    if (!s.select || s.select.includes('id')) {
      // Every row must be a distinct qualifying row, with exactly the expected fields.
      const byKey = new Map(full.map((r) => [r.id, r]));
      const seen = new Set<unknown>();
      for (const r of got) {
        const ref = byKey.get(r.id as number);
        if (!ref || seen.has(r.id)) expect.fail(`${label}: unexpected or repeated row ${JSON.stringify(r)}`);
        seen.add(r.id);
        expectRow(r, out(ref!), label);
      }
      if (s.order.length && s.total) {
        // A total order: the same rows in the same positions.
        expectSame(got.map((r) => r.id), sliced.map((r) => r.id), label);
      } else if (s.order.length) {
        // Ties may come in any order: the order-key values must match position by position.
        expectSame(keyTuples(got.map((r) => byKey.get(r.id as number)!), s.order), keyTuples(sliced, s.order), label);
      }
      // Unordered: with no offset/limit, distinct qualifying rows of the full count are the set;
      // with them, any such rows are right.
    } else {
      // No id to match on (unordered queries only): compare multisets of whole rows.
      const remaining = new Map<string, number>();
      for (const k of canonical(full.map(out))) remaining.set(k, (remaining.get(k) ?? 0) + 1);
      for (const r of got) {
        const k = stable(r);
        expect(remaining.get(k) ?? 0, `${label}: unexpected or repeated row ${k}`).toBeGreaterThan(0);
        remaining.set(k, remaining.get(k)! - 1);
      }
    }
  }

  it(`${QUERIES} generated queries give the reference rows`, async () => {
    const rnd = prng((mode === 'memory' ? 1234 : 5678) + SEED);
    let nonEmpty = 0;
    for (let n = 0; n < QUERIES; n++) {
      let s = genSpec(rnd, gens);
      // Order keys the select drops cannot be checked from the output without id: keep them.
      if (s.select && s.order.length && !s.select.includes('id')) s = { ...s, select: [...s.select, 'id'] };
      const label = `query ${n}: ${describeSpec(s)}`;
      const got = await withLabel(label, () => build(orders, s).toArray());
      check(s, got, label);
      if (got.length) nonEmpty++;
    }
    // The generator must produce selective and non-trivial queries, not only empty results.
    expect(nonEmpty).toBeGreaterThan(QUERIES / 3);
  });

  it('count(), first(), batches() and for-await agree with toArray() and the reference', async () => {
    const rnd = prng((mode === 'memory' ? 42 : 43) + SEED);
    for (let n = 0; n < 25; n++) {
      const s = { ...genSpec(rnd, gens), select: null };
      const label = `query ${n}: ${describeSpec(s)}`;
      const q = build(orders, s);
      const all = await withLabel(label, () => q.toArray());
      check(s, all, label);
      expect(await q.count(), label).toBe(reference(s).sliced.length);
      const batches = await collect(q.batches());
      expect(batches.every((b) => Array.isArray(b) && b.length > 0), label).toBe(true);
      const flat = batches.flat();
      const iterated = await collect(q);
      if (s.order.length && s.total) {
        expectSame(flat, all, label);
        expectSame(iterated, all, label);
        expect(await q.first(), label).toEqual(all[0]);
      } else {
        expectSame(byId(flat as Order[]), byId(all as Order[]), label);
        expectSame(byId(iterated as Order[]), byId(all as Order[]), label);
        const first = await q.first();
        if (all.length === 0) expect(first, label).toBeUndefined();
        else check({ ...s, offset: s.offset, limit: 1 }, [first!], `${label} first()`);
      }
    }
  });

  it('count() of a whole collection, of a filter and after offset/limit', async () => {
    expect(await orders.query().count()).toBe(rows.length);
    expect(await orders.query().where('qty', '>=', 5).count()).toBe(rows.filter((r) => r.qty >= 5).length);
    expect(await orders.query().where('note', 'is', null).count()).toBe(rows.filter((r) => r.note === undefined).length);
    expect(await orders.query().offset(10).count()).toBe(rows.length - 10);
    expect(await orders.query().limit(7).count()).toBe(7);
    expect(await orders.query().offset(rows.length - 3).limit(10).count()).toBe(3);
    expect(await orders.query().where('category', '=', 'nope').first()).toBeUndefined();
  });

  it('the result is an IxJS AsyncIterableX: pipe() with ix operators works on rows', async () => {
    const q = orders.query().where('category', 'in', ['cat01', 'cat02', 'cat03']).orderBy('id');
    // The very class a user imports from ix (the ES build, not its CommonJS twin).
    expect(q).toBeInstanceOf(AsyncIterableX);
    const piped = q.pipe(
      filter((r) => r.qty > 4),
      map((r) => ({ id: r.id, total: r.amount * r.qty })),
    );
    const got = await ixToArray(piped);
    const want = rows
      .filter((r) => ['cat01', 'cat02', 'cat03'].includes(r.category) && r.qty > 4)
      .map((r) => ({ id: r.id, total: r.amount * r.qty }));
    expect(want.length).toBeGreaterThan(10);
    expect(got).toEqual(want);
    // for-await over the piped result too, stopping early.
    const firstThree: number[] = [];
    for await (const r of piped) {
      firstThree.push(r.id);
      if (firstThree.length === 3) break;
    }
    expect(firstThree).toEqual(want.slice(0, 3).map((r) => r.id));
    expect(db.stats().snapshots).toBe(0);
  });

  it('edge cases: empty in-lists, not in, startsWith with an empty prefix, is null on a required field', async () => {
    const ids = (q: Query<any>) => q.toArray().then((rs) => rs.map((r) => r.id as number).sort((a, b) => a - b));
    const all = rows.map((r) => r.id);
    expect(await ids(orders.query().where('category', 'in', []))).toEqual([]);
    // `not in []` is true for every present value.
    expect(await ids(orders.query().where('note', 'not in', []))).toEqual(rows.filter((r) => r.note !== undefined).map((r) => r.id));
    expect(await ids(orders.query().where('category', 'startsWith', ''))).toEqual(all);
    expect(await ids(orders.query().where('note', 'startsWith', ''))).toEqual(rows.filter((r) => r.note !== undefined).map((r) => r.id));
    expect(await ids(orders.query().where('category', 'is', null))).toEqual([]);
    expect(await ids(orders.query().where('category', 'is not', null))).toEqual(all);
    // An absent parent makes the child absent: meta.score is null when meta is absent.
    expect(await ids(orders.query().where('meta.score', 'is', null))).toEqual(rows.filter((r) => r.meta?.score === undefined).map((r) => r.id));
    expect(await ids(orders.query().where('meta', 'is', null))).toEqual(rows.filter((r) => r.meta === undefined).map((r) => r.id));
    // != is false on absent values, and NOT(=) is true on them.
    expect(await ids(orders.query().where('note', '!=', 'alpha-1'))).toEqual(rows.filter((r) => r.note !== undefined && r.note !== 'alpha-1').map((r) => r.id));
    expect(await ids(orders.query().where((eb) => eb.not(eb('note', '=', 'alpha-1'))))).toEqual(rows.filter((r) => r.note !== 'alpha-1').map((r) => r.id));
    // Timestamps compare as instants.
    const t = rows[100].ts;
    expect(await ids(orders.query().where('ts', '=', new Date(t.getTime())))).toEqual(rows.filter((r) => r.ts.getTime() === t.getTime()).map((r) => r.id));
    expect(await ids(orders.query().where('ts', 'in', [t, new Date(0)]))).toEqual(rows.filter((r) => r.ts.getTime() === t.getTime()).map((r) => r.id));
    // offset past the end, limit(0).
    expect(await orders.query().offset(rows.length + 5).toArray()).toEqual([]);
    expect(await orders.query().orderBy('amount').limit(0).toArray()).toEqual([]);
    expect(byId(await orders.query().where('id', '<=', 5).toArray())).toEqual(rows.filter((r) => r.id <= 5).map((r) => project(r)));
  });
});
