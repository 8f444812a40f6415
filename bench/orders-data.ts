// The seeded `orders` / `customers` data set of the comparison benchmarks (write-path,
// query-engines, spill-operators), and how each engine is set up and loaded with it.
// Every value is a pure function of (id, SEED), so every engine and every process gets the
// same rows without holding them in memory. Nothing here is timed except where a caller
// times it (the bulk-insert case times `mvLoad`/`sqliteLoad` themselves).
//
//   orders    { id, userId, category, amount, qty, ts, note }   id 0..N-1 (primary key)
//     userId    uniform in [0, 100,000)         → joins every customer
//     category  one of 20 strings (uniform)     → GROUP BY over 20 values
//     amount    uniform cents in [0, 500.00)    → `amount < 50` keeps 10% of rows
//     qty       uniform in 1..10
//     ts        uniform ms over 2025 (whole seconds), a Date in ModelVault / lmdb / DuckDB, ms integer in SQLite
//     note      ~40 characters, unique per row (a 30-char pooled prefix + ' #id')
//   customers { id, name, country }   id 0..99,999, country one of 8 (id % 8)
import fs from 'node:fs';
import { Database, model, t } from '../src/index.js';
import type { Collection } from '../src/index.js';
import { MiB, rng, stringPool } from './harness.js';

export const SEED = 20250101;
export const CUSTOMERS = 100_000;
export const CATEGORIES = ['books', 'games', 'garden', 'music', 'tools', 'toys', 'food', 'sports', 'beauty', 'auto',
  'baby', 'office', 'pets', 'shoes', 'home', 'health', 'movies', 'phones', 'tv', 'watches'] as const;
export const COUNTRIES = ['FR', 'DE', 'US', 'JP', 'BR', 'IN', 'GB', 'ES'] as const;
export const T0 = Date.UTC(2025, 0, 1);
export const YEAR_MS = 365 * 86_400_000;
/** `amount < AMOUNT_CUT` keeps 10% of the rows. */
export const AMOUNT_CUT = 50;

export interface Order { id: number; userId: number; category: string; amount: number; qty: number; ts: Date; note: string }
export interface Customer { id: number; name: string; country: string }

const notes = stringPool(SEED, 4096).map((s) => s.slice(0, 30));

function mix(x: number): number {
  let h = Math.imul(x ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The order with this id (a pure function of id and SEED). */
export function makeOrder(id: number): Order {
  const a = mix(id ^ SEED), b = mix(a + id), c = mix(b ^ 0x5bd1e995);
  return {
    id,
    userId: a % CUSTOMERS,
    category: CATEGORIES[(a >>> 17) % CATEGORIES.length],
    amount: (b % 50_000) / 100,
    qty: 1 + ((b >>> 20) % 10),
    ts: new Date(T0 + (c % (YEAR_MS / 1000)) * 1000),
    note: `${notes[c & 4095]} #${id}`,
  };
}

export function makeCustomer(id: number): Customer {
  return { id, name: `customer ${id}`, country: COUNTRIES[id % COUNTRIES.length] };
}

export function* orderRows(n: number, from = 0): Generator<Order> {
  for (let id = from; id < from + n; id++) yield makeOrder(id);
}

export async function* orderRowsAsync(n: number): AsyncGenerator<Order> {
  for (let id = 0; id < n; id++) yield makeOrder(id);
}

export function* customerRows(n = CUSTOMERS): Generator<Customer> {
  for (let id = 0; id < n; id++) yield makeCustomer(id);
}

/** Seeded random ids in [0, n). */
export function randomIds(count: number, n: number, seed = 11): Int32Array {
  const r = rng(seed), out = new Int32Array(count);
  for (let k = 0; k < count; k++) out[k] = Math.floor(r() * n);
  return out;
}

// ── ModelVault ──────────────────────────────────────────────────────────────────

const orderShape = {
  id: t.int(), userId: t.int(), category: t.string(), amount: t.float(), qty: t.int(), ts: t.timestamp(), note: t.string().optional(),
};
export const Orders = model('orders', orderShape, { primaryKey: 'id' });
export const IndexedOrders = model('orders', orderShape, { primaryKey: 'id', indexes: [{ name: 'byCategoryTs', fields: ['category', 'ts'] }] });
export const Customers = model('customers', { id: t.int(), name: t.string(), country: t.string() }, { primaryKey: 'id' });

export type OrdersModel = typeof Orders | typeof IndexedOrders;

export async function mvLoad(coll: Collection<OrdersModel>, n: number): Promise<number> {
  return coll.insertMany(orderRows(n));
}

// ── better-sqlite3 ──────────────────────────────────────────────────────────────

export type SqliteCtor = typeof import('better-sqlite3');
export type SqliteDb = import('better-sqlite3').Database;

/** better-sqlite3, or null (with the reason printed) when it is not installed or will not load. */
export async function loadSqlite(): Promise<SqliteCtor | null> {
  try {
    const S = (await import('better-sqlite3')).default;
    new S(':memory:').close();
    return S;
  } catch (err) {
    console.log(`better-sqlite3 unavailable, skipped: ${(err as Error).message}`);
    return null;
  }
}

/** WAL, synchronous=FULL, a `cacheBytes` page cache (negative cache_size = KiB). */
export function sqliteOpen(S: SqliteCtor, file: string, cacheBytes = 64 * MiB): SqliteDb {
  const db = new S(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma(`cache_size = -${Math.floor(cacheBytes / 1024)}`);
  db.exec(`CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, userId INTEGER NOT NULL, category TEXT NOT NULL,
    amount REAL NOT NULL, qty INTEGER NOT NULL, ts INTEGER NOT NULL, note TEXT)`);
  return db;
}

/** Inserts orders 0..n-1 with one prepared statement inside one transaction. */
export function sqliteLoad(db: SqliteDb, n: number): void {
  const insert = db.prepare('INSERT INTO orders (id, userId, category, amount, qty, ts, note) VALUES (?, ?, ?, ?, ?, ?, ?)');
  db.transaction(() => {
    for (let id = 0; id < n; id++) {
      const o = makeOrder(id);
      insert.run(o.id, o.userId, o.category, o.amount, o.qty, o.ts.getTime(), o.note);
    }
  })();
}

export function sqliteLoadCustomers(db: SqliteDb): void {
  db.exec('CREATE TABLE IF NOT EXISTS customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT NOT NULL)');
  const insert = db.prepare('INSERT INTO customers (id, name, country) VALUES (?, ?, ?)');
  db.transaction(() => { for (const c of customerRows()) insert.run(c.id, c.name, c.country); })();
}

// ── DuckDB (@duckdb/node-api) ───────────────────────────────────────────────────

export type DuckApi = typeof import('@duckdb/node-api');
export type DuckConnection = import('@duckdb/node-api').DuckDBConnection;

export async function loadDuck(): Promise<DuckApi | null> {
  try {
    return await import('@duckdb/node-api');
  } catch (err) {
    console.log(`@duckdb/node-api unavailable, skipped: ${(err as Error).message}`);
    return null;
  }
}

/** Loads orders 0..n-1 (and the customers when asked) through appenders, one data chunk at a time. */
export async function duckLoad(api: DuckApi, conn: DuckConnection, n: number, withCustomers: boolean): Promise<void> {
  await conn.run(`CREATE TABLE orders (id INTEGER PRIMARY KEY, userId INTEGER NOT NULL, category VARCHAR NOT NULL,
    amount DOUBLE NOT NULL, qty INTEGER NOT NULL, ts TIMESTAMP_MS NOT NULL, note VARCHAR)`);
  const app = await conn.createAppender('orders');
  const CHUNK = 2048;
  const types = [api.INTEGER, api.INTEGER, api.VARCHAR, api.DOUBLE, api.INTEGER, api.TIMESTAMP_MS, api.VARCHAR];
  for (let from = 0; from < n; from += CHUNK) {
    const len = Math.min(CHUNK, n - from);
    const cols: import('@duckdb/node-api').DuckDBValue[][] = [[], [], [], [], [], [], []];
    for (let id = from; id < from + len; id++) {
      const o = makeOrder(id);
      cols[0].push(o.id); cols[1].push(o.userId); cols[2].push(o.category); cols[3].push(o.amount);
      cols[4].push(o.qty); cols[5].push(new api.DuckDBTimestampMillisecondsValue(BigInt(o.ts.getTime()))); cols[6].push(o.note);
    }
    const chunk = api.DuckDBDataChunk.create(types, len);
    chunk.setColumns(cols);
    app.appendDataChunk(chunk);
  }
  app.closeSync();
  if (withCustomers) {
    await conn.run('CREATE TABLE customers (id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, country VARCHAR NOT NULL)');
    const ca = await conn.createAppender('customers');
    for (const c of customerRows()) { ca.appendBigInt(BigInt(c.id)); ca.appendVarchar(c.name); ca.appendVarchar(c.country); ca.endRow(); }
    ca.closeSync();
  }
  await conn.run('CHECKPOINT');
}

// ── ModelVault loading for the read benchmarks ──────────────────────────────────

/**
 * A file-backed ModelVault database with `n` orders (and the customers when asked).
 *
 * `dirtyBudgetBytes` passes the pager's internal `maxDirtyBytes` (not a public option). With the
 * default budget (min(8 MiB, cacheSize / 8)) one insertMany into a collection with a secondary
 * index rewrites the randomly touched index leaves at every early flush: 300k indexed orders
 * wrote 3 GB in 244 s here, against 50 MB in 16 s with a 1 GiB budget. The read benchmarks
 * only need the file built, so they build it with a large budget; reads never see the knob.
 */
/** Options for a new ModelVault file: PAGE_SIZE=16384 makes every benchmark create its files with that page size (default: the engine's). */
export const createOptions = (): { pageSize?: number } => (process.env.PAGE_SIZE ? { pageSize: Number(process.env.PAGE_SIZE) } : {});

export async function mvBuild(file: string, n: number, opts: { indexed: boolean; customers: boolean; dirtyBudgetBytes?: number }): Promise<void> {
  rmDb(file);
  const internal = opts.dirtyBudgetBytes ? { maxDirtyBytes: opts.dirtyBudgetBytes } : {};
  const db = await Database.open(file, { cacheSize: 64 * MiB, ...createOptions(), ...internal } as Parameters<typeof Database.open>[1]);
  try {
    const orders = await db.register(opts.indexed ? IndexedOrders : Orders);
    await mvLoad(orders as Collection<OrdersModel>, n);
    if (opts.customers) await (await db.register(Customers)).insertMany(customerRows());
  } finally {
    await db.close();
  }
}

/** Removes a database file with its lock / WAL / journal siblings. */
export function rmDb(file: string): void {
  for (const s of ['', '.lock', '-wal', '-shm', '-journal', '.wal']) fs.rmSync(file + s, { force: true, recursive: true });
}
