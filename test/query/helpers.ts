// Shared helpers for the query-engine tests: a database per storage mode with automatic
// cleanup, the orders/customers models, a seeded data generator, and plain-JS reference
// semantics (predicates, ordering, aggregates, joins) to compare the engine against.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, onTestFinished } from 'vitest';
import { Database, ModelVaultError, model, t, type Collection, type ErrorCode, type OpenOptions } from '../../src/index.js';

export const MODES = ['memory', 'file'] as const;
export type Mode = (typeof MODES)[number];

export const CATEGORIES = Array.from({ length: 20 }, (_, i) => `cat${String(i).padStart(2, '0')}`);
export const SOURCES = ['web', 'app', 'api', 'pos'] as const;
export const COUNTRIES = ['FR', 'DE', 'US', 'JP', 'BR'] as const;

export const Orders = model('orders', {
  id: t.int(),
  userId: t.int(),
  category: t.string(),
  amount: t.float(),
  qty: t.int(),
  ts: t.timestamp(),
  note: t.string().optional(),
  meta: t.object({ source: t.string(), score: t.float().optional() }).optional(),
  pad: t.string().optional(),
}, {
  primaryKey: 'id',
  indexes: [
    { name: 'byUser', fields: ['userId'] },
    { name: 'byCategoryTs', fields: ['category', 'ts'] },
  ],
});

export const Customers = model('customers', {
  id: t.int(),
  country: t.string(),
  name: t.string(),
}, { primaryKey: 'id' });

export interface Order {
  id: number;
  userId: number;
  category: string;
  amount: number;
  qty: number;
  ts: Date;
  note?: string;
  meta?: { source: string; score?: number };
  pad?: string;
}

export interface Customer { id: number; country: string; name: string }

/** A fresh directory under the OS temp directory, removed when the test finishes. */
export function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modelvault-query-'));
  onTestFinished(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface TestDb {
  readonly db: Database;
  /** The database file, or null in memory mode. */
  readonly file: string | null;
}

/**
 * A database in memory or on a new temporary file; closed (and the file removed) when the
 * test finishes. Registered after tempDir so that close runs before the directory goes.
 */
export async function openDb(mode: Mode, opts: OpenOptions = {}): Promise<TestDb> {
  const file = mode === 'file' ? path.join(tempDir(), 'query.modelvault') : null;
  const db = file ? await Database.open(file, opts) : await Database.openInMemory(opts);
  onTestFinished(() => db.close());
  return { db, file };
}

/**
 * A database for a whole describe block (beforeAll/afterAll): `cleanup` closes it and
 * removes its directory.
 */
export async function openShared(mode: Mode, opts: OpenOptions = {}): Promise<TestDb & { cleanup(): Promise<void> }> {
  const dir = mode === 'file' ? fs.mkdtempSync(path.join(os.tmpdir(), 'modelvault-query-')) : null;
  const file = dir ? path.join(dir, 'query.modelvault') : null;
  const db = file ? await Database.open(file, opts) : await Database.openInMemory(opts);
  return {
    db,
    file,
    async cleanup() {
      await db.close();
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A shared database (openShared, pageSize 16 KiB) with `Orders` registered and `rows` inserted. */
export async function openOrders(mode: Mode, rows: Order[]): Promise<{ db: Database; orders: Collection<typeof Orders>; rows: Order[]; cleanup(): Promise<void> }> {
  const { db, cleanup } = await openShared(mode, { pageSize: 16384 });
  const orders = await db.register(Orders);
  await orders.insertMany(rows);
  return { db, orders, rows, cleanup };
}

/** openOrders, plus a `Customers` collection holding `customers`. */
export async function openOrdersAndCustomers(mode: Mode, rows: Order[], customers: Customer[]): Promise<Awaited<ReturnType<typeof openOrders>> & { customers: Customer[] }> {
  const opened = await openOrders(mode, rows);
  await (await opened.db.register(Customers)).insertMany(customers);
  return { ...opened, customers };
}

/** Deterministic PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

export const pick = <T>(rnd: () => number, xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
export const intIn = (rnd: () => number, lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1));

export const TS0 = Date.UTC(2024, 0, 1);

export interface OrderGenOptions {
  count: number;
  seed: number;
  /** First id (default 1). */
  firstId?: number;
  /** userId range is [0, users) (default 500). */
  users?: number;
  /** Length of a padding string on every row (default 0: no padding). */
  padBytes?: number;
  /** Category of each row (default: seeded pick of CATEGORIES). */
  category?: (i: number, rnd: () => number) => string;
  /** userId of each row (default: seeded, uniform in [0, users)). */
  userId?: (i: number, rnd: () => number) => number;
}

/**
 * Seeded orders: amounts drawn from a small set of cents values so ties are common, `note`
 * absent in about a third of the rows, `meta` absent in about a quarter, `meta.score`
 * absent in about a third of the rest.
 */
export function* makeOrders(o: OrderGenOptions): Generator<Order> {
  const rnd = prng(o.seed);
  const users = o.users ?? 500;
  const first = o.firstId ?? 1;
  const padBase = o.padBytes ? 'x'.repeat(o.padBytes) : '';
  for (let i = 0; i < o.count; i++) {
    const id = first + i;
    const row: Order = {
      id,
      userId: o.userId ? o.userId(i, rnd) : Math.floor(rnd() * users),
      category: o.category ? o.category(i, rnd) : pick(rnd, CATEGORIES),
      amount: Math.floor(rnd() * 4000) / 100, // 4000 distinct values: many ties
      qty: intIn(rnd, 0, 9),
      ts: new Date(TS0 + Math.floor(rnd() * 100_000) * 60_000),
    };
    if (rnd() >= 1 / 3) row.note = `${pick(rnd, ['alpha', 'beta', 'gamma', 'delta', 'al', 'be'])}-${intIn(rnd, 0, 99)}`;
    if (rnd() >= 0.25) {
      const meta: { source: string; score?: number } = { source: pick(rnd, SOURCES) };
      if (rnd() >= 1 / 3) meta.score = Math.floor(rnd() * 100) / 10;
      row.meta = meta;
    }
    if (padBase) row.pad = `${id}:${padBase}`.slice(0, o.padBytes);
    yield row;
  }
}

/** Seeded customers; `nameBytes` pads the name (to make a join's build side large). */
export function* makeCustomers(o: { count: number; seed: number; firstId?: number; nameBytes?: number }): Generator<Customer> {
  const rnd = prng(o.seed);
  const first = o.firstId ?? 0;
  const pad = o.nameBytes ? 'n'.repeat(o.nameBytes) : '';
  for (let i = 0; i < o.count; i++) yield { id: first + i, country: pick(rnd, COUNTRIES), name: pad ? `c${first + i}:${pad}`.slice(0, o.nameBytes) : `c${first + i}` };
}

/** Tags: several per user (a join with duplicate keys on the right side). */
export const Tags = model('tags', {
  id: t.int(),
  userId: t.int(),
  label: t.string(),
}, { primaryKey: 'id' });

export interface Tag { id: number; userId: number; label: string }

/** Asserts that `fn` (sync or async) fails with a ModelVaultError of this code; returns it. */
export async function expectCode(fn: () => unknown, code: ErrorCode): Promise<ModelVaultError> {
  let caught: unknown;
  try {
    await fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ModelVaultError ${code}`).toBeInstanceOf(ModelVaultError);
  expect((caught as ModelVaultError).code, (caught as Error).message).toBe(code);
  return caught as ModelVaultError;
}

/** Synchronous variant: the throw must happen at the call, before any promise. */
export function expectCodeSync(fn: () => unknown, code: ErrorCode): ModelVaultError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ModelVaultError ${code}`).toBeInstanceOf(ModelVaultError);
  expect((caught as ModelVaultError).code, (caught as Error).message).toBe(code);
  return caught as ModelVaultError;
}

// ── reference semantics ─────────────────────────────────────────────────────

export type Op = '=' | '!=' | '<' | '<=' | '>' | '>=' | 'in' | 'not in' | 'startsWith' | 'is' | 'is not';

export type Pred =
  | { kind: 'cmp'; path: string; op: Op; value: unknown }
  | { kind: 'and'; items: Pred[] }
  | { kind: 'or'; items: Pred[] }
  | { kind: 'not'; item: Pred };

/** The value at a dotted path, or undefined when any step is absent. Dates as epoch ms. */
export function valueAtPath(row: unknown, p: string): unknown {
  let cur: unknown = row;
  for (const part of p.split('.')) {
    if (cur === null || cur === undefined || typeof cur !== 'object') return undefined;
    cur = Object.prototype.hasOwnProperty.call(cur, part) ? (cur as Record<string, unknown>)[part] : undefined;
  }
  return cur instanceof Date ? cur.getTime() : cur === null ? undefined : cur;
}

const norm = (v: unknown): unknown => (v instanceof Date ? v.getTime() : v);

/** Reference predicate: absent values make every comparison false; `is null` is true for them. */
export function evalPred(p: Pred, row: unknown): boolean {
  switch (p.kind) {
    case 'and': return p.items.every((x) => evalPred(x, row));
    case 'or': return p.items.some((x) => evalPred(x, row));
    case 'not': return !evalPred(p.item, row);
    case 'cmp': {
      const v = valueAtPath(row, p.path);
      if (p.op === 'is') return v === undefined;
      if (p.op === 'is not') return v !== undefined;
      if (v === undefined) return false;
      const x = norm(p.value) as never;
      const y = v as never;
      switch (p.op) {
        case '=': return y === x;
        case '!=': return y !== x;
        case '<': return refCompare(y, x) < 0;
        case '<=': return refCompare(y, x) <= 0;
        case '>': return refCompare(y, x) > 0;
        case '>=': return refCompare(y, x) >= 0;
        case 'in': return (p.value as unknown[]).map(norm).includes(y);
        case 'not in': return !(p.value as unknown[]).map(norm).includes(y);
        case 'startsWith': return typeof v === 'string' && v.startsWith(p.value as string);
      }
    }
  }
  return false;
}

export interface OrderKey { path: string; desc: boolean }

/** Reference order of two values: strings by their UTF-8 bytes (code point order), the rest by `<`. */
export function refCompare(x: unknown, y: unknown): number {
  if (typeof x === 'string' && typeof y === 'string') return Buffer.compare(Buffer.from(x, 'utf8'), Buffer.from(y, 'utf8'));
  return (x as never) < (y as never) ? -1 : (x as never) > (y as never) ? 1 : 0;
}

/** Reference comparator: absent first ascending (so last descending). */
export function compareRows(keys: readonly OrderKey[]): (a: unknown, b: unknown) => number {
  return (a, b) => {
    for (const k of keys) {
      const x = valueAtPath(a, k.path), y = valueAtPath(b, k.path);
      let c: number;
      if (x === undefined) c = y === undefined ? 0 : -1;
      else if (y === undefined) c = 1;
      else c = refCompare(x, y);
      if (c !== 0) return k.desc ? -c : c;
    }
    return 0;
  };
}

/** The order-key values of each row (for comparing ordered output where ties may differ). */
export function keyTuples(rows: readonly unknown[], keys: readonly OrderKey[]): unknown[][] {
  return rows.map((r) => keys.map((k) => valueAtPath(r, k.path) ?? null));
}

/** Rows sorted by id, for order-insensitive comparison. */
export function byId<T extends { id: number }>(rows: readonly T[]): T[] {
  return [...rows].sort((a, b) => a.id - b.id);
}

/** A row object as the engine returns it: only present fields, optionally only `select`ed ones. */
export function project<T extends object>(row: T, fields?: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    if (v === undefined) continue;
    if (fields && !fields.includes(k)) continue;
    out[k] = v;
  }
  return out;
}

export interface RefAggs {
  [name: string]: { fn: 'count' | 'sum' | 'avg' | 'min' | 'max' | 'countDistinct'; path?: string };
}

/** Reference group-by aggregate; groups keyed by the group paths' values (absent → null). */
export function refAggregate(rows: readonly unknown[], groupPaths: readonly string[], aggs: RefAggs): Record<string, unknown>[] {
  const groups = new Map<string, { key: unknown[]; rows: unknown[] }>();
  for (const r of rows) {
    const key = groupPaths.map((g) => valueAtPath(r, g) ?? null);
    const k = JSON.stringify(key);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { key, rows: [] }));
    g.rows.push(r);
  }
  if (groupPaths.length === 0 && groups.size === 0) groups.set('[]', { key: [], rows: [] });
  const out: Record<string, unknown>[] = [];
  for (const g of groups.values()) {
    const o: Record<string, unknown> = {};
    groupPaths.forEach((p, i) => { o[p] = g.key[i]; });
    for (const [name, a] of Object.entries(aggs)) {
      const vals = a.path ? g.rows.map((r) => valueAtPath(r, a.path!)).filter((v) => v !== undefined) as number[] : [];
      switch (a.fn) {
        case 'count': o[name] = g.rows.length; break;
        case 'sum': o[name] = vals.reduce((s, v) => s + v, 0); break;
        case 'avg': o[name] = vals.length ? vals.reduce((s, v) => s + v, 0) / vals.length : null; break;
        case 'min': o[name] = vals.length ? vals.reduce((m, v) => (refCompare(v, m) < 0 ? v : m)) : null; break;
        case 'max': o[name] = vals.length ? vals.reduce((m, v) => (refCompare(v, m) > 0 ? v : m)) : null; break;
        case 'countDistinct': o[name] = new Set(vals).size; break;
      }
    }
    out.push(o);
  }
  return out;
}

/**
 * Canonical form of aggregate rows for comparison: Dates as ms, floats rounded (sums differ
 * in the last bits with summation order), sorted by the group key.
 */
export function canonAggRows(rows: readonly Record<string, unknown>[], groupPaths: readonly string[]): Record<string, unknown>[] {
  const round = (v: unknown) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(9)) : v instanceof Date ? v.getTime() : v);
  const canon = rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, round(v)])));
  return canon.sort((a, b) => {
    for (const g of groupPaths) {
      const x = a[g] as never, y = b[g] as never;
      if (x === y) continue;
      if (x === null) return -1;
      if (y === null) return 1;
      return x < y ? -1 : 1;
    }
    return 0;
  });
}

/** Reference hash join: each left row with its partner under `as` (left join: null when none). */
export function refJoin<L extends object, R extends object>(
  left: readonly L[], right: readonly R[], leftPath: string, rightPath: string, as: string, type: 'inner' | 'left',
): Record<string, unknown>[] {
  const byKey = new Map<unknown, R[]>();
  for (const r of right) {
    const k = valueAtPath(r, rightPath);
    if (k === undefined) continue;
    let xs = byKey.get(k);
    if (!xs) byKey.set(k, (xs = []));
    xs.push(r);
  }
  const out: Record<string, unknown>[] = [];
  for (const l of left) {
    const k = valueAtPath(l, leftPath);
    const matches = k === undefined ? undefined : byKey.get(k);
    if (matches && matches.length) for (const r of matches) out.push({ ...project(l), [as]: project(r) });
    else if (type === 'left') out.push({ ...project(l), [as]: null });
  }
  return out;
}

/** Collects an async iterable. */
export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
