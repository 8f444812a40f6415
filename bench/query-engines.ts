// Query execution through the public API, side by side with better-sqlite3 and DuckDB
// (@duckdb/node-api) in the same run, on the same N seeded orders, each case in its own process.
//
//   scan      full scan with a 10%-selective filter (amount < 50), every column, rows delivered
//             one at a time to JS: ModelVault `for await` vs better-sqlite3 `.iterate()` vs a
//             DuckDB streaming result (`conn.stream` + `yieldRowObjectJs`, then row by row).
//   indexed   QUERIES queries `category = ? AND ts BETWEEN ? AND ?` (30-day windows, ~0.4% of
//             the rows each): ModelVault with an index on (category, ts) vs SQLite with the same
//             index. Rows delivered one at a time.
//   batches   the same two ModelVault queries read through `q.batches()` instead of `for await`
//             (primary: batches(); ratio > 1 = batches() faster than per-row for await).
//   covered   the indexed queries selecting only id and ts, which the index keys hold: ModelVault
//             IndexOnlyScan vs SQLite's covering index.
//   small     2,000 one-day indexed queries with LIMIT 5: what a query costs beyond its rows
//             (ModelVault's builder and planner vs a prepared SQLite statement).
//   count     the indexed queries' count(): ModelVault count() (index entries only) vs SQLite
//             SELECT count(*) with the same index.
//   large     full scan of every row of the collection with cacheSize = its size / 4, peak RSS
//             against cacheSize + 100 MiB; SQLite with the same cache_size as a peer.
//
//   npx tsx bench/query-engines.ts              N=1000000 QUERIES=100 REPS=5 (large: 3)
//   N=200000 CASES=scan,batches npx tsx bench/query-engines.ts
//   DUCKDB_THREADS=1 npx tsx bench/query-engines.ts      DuckDB on one thread (default: its own choice)
//   CACHE_MIB=256 npx tsx bench/query-engines.ts         caches that hold the whole data set
//
// ModelVault and SQLite caches are CACHE_MIB (default 64 MiB; not `large`). At N=1M the
// ModelVault collection is ~120 MiB, so with the default neither scan nor index fetches fit:
// every pass re-reads pages from the OS page cache into the pool (I/O, checksum, page
// admission), and the index case, whose ~4,000 rows a query hit ~88% of the leaves, is bound
// by that. CACHE_MIB=256 gives the warm-cache CPU figures. ModelVault and DuckDB deliver ts as
// a Date, SQLite as an integer.
import fs from 'node:fs';
import path from 'node:path';
import { Database } from '../src/index.js';
import type { Collection } from '../src/index.js';
import { MODELVAULT, benchDir, benchMain, manifest, reps, timeReps, wanted, type CaseDef, type Measured } from './compare.js';
import { GiB, MiB, median, rng, si } from './harness.js';
import {
  AMOUNT_CUT, CATEGORIES, IndexedOrders, T0, YEAR_MS, duckLoad, loadDuck, loadSqlite, mvBuild, sqliteOpen, sqliteLoad, type DuckApi, type SqliteDb,
} from './orders-data.js';

const N = Number(process.env.N ?? 1_000_000);
const QUERIES = Number(process.env.QUERIES ?? 100);
const CACHE_BYTES = Number(process.env.CACHE_MIB ?? 64) * MiB;
const WINDOW_MS = 30 * 86_400_000;
const SQLITE = 'better-sqlite3';
const DUCKDB = 'duckdb';

interface Prepared {
  files: { mv?: string; sqlite?: string; duck?: string };
  /** Bytes a full scan of the orders collection reads (its leaf pages). */
  collectionBytes?: number;
}
const prepared = () => manifest<Prepared>();

async function prepare(): Promise<Prepared> {
  const dir = benchDir();
  const out: Prepared = { files: {} };
  const timed = async (label: string, file: string, build: () => Promise<void> | void) => {
    const t0 = performance.now();
    await build();
    console.log(`${label}: ${si(N)} orders in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${(sizeOf(file) / MiB).toFixed(0)} MiB`);
  };
  if (wanted('scan/modelvault') || wanted('indexed/modelvault') || wanted('count/modelvault') || wanted('small/modelvault') || wanted('covered/modelvault') || wanted('batches') || wanted('large')) {
    out.files.mv = path.join(dir, 'orders.modelvault');
    // Built with a 1 GiB dirty-page budget: with the default one, inserting 1M rows into a
    // collection with a secondary index takes many minutes (see mvBuild).
    await timed('ModelVault (with index byCategoryTs; built with a 1 GiB dirty-page budget)', out.files.mv,
      () => mvBuild(out.files.mv!, N, { indexed: true, customers: false, dirtyBudgetBytes: GiB }));
    // How big the collection is: the bytes a cold full scan reads through the buffer pool.
    const db = await Database.open(out.files.mv, { cacheSize: 4 * 1024 * MiB });
    try {
      const orders = await db.register(IndexedOrders);
      let rows = 0;
      for await (const b of orders.query().batches()) rows += b.length;
      out.collectionBytes = db.stats().cache.bytesRead;
      console.log(`a full scan of ${si(rows)} rows reads ${(out.collectionBytes / MiB).toFixed(1)} MiB (the collection's size for the large-scan case)`);
    } finally {
      await db.close();
    }
  }
  if (wanted(`scan/${SQLITE}`) || wanted(`indexed/${SQLITE}`) || wanted(`count/${SQLITE}`) || wanted(`small/${SQLITE}`) || wanted(`covered/${SQLITE}`) || wanted(`large/${SQLITE}`)) {
    const S = await loadSqlite();
    if (S) {
      out.files.sqlite = path.join(dir, 'orders.sqlite');
      await timed('better-sqlite3 (with index on (category, ts))', out.files.sqlite, () => {
        const db = sqliteOpen(S, out.files.sqlite!, CACHE_BYTES);
        sqliteLoad(db, N);
        db.exec('CREATE INDEX byCategoryTs ON orders (category, ts); ANALYZE;');
        db.close();
      });
    }
  }
  if (wanted(`scan/${DUCKDB}`)) {
    const api = await loadDuck();
    if (api) {
      out.files.duck = path.join(dir, 'orders.duckdb');
      await timed('DuckDB', out.files.duck, async () => {
        const inst = await api.DuckDBInstance.create(out.files.duck!);
        const conn = await inst.connect();
        await duckLoad(api, conn, N, false);
        conn.closeSync();
        inst.closeSync();
      });
    }
  }
  return out;
}

function sizeOf(file: string): number {
  let n = 0;
  for (const s of ['', '-wal', '.wal']) if (fs.existsSync(file + s)) n += fs.statSync(file + s).size;
  return n;
}

// ── scan: 10% filter, rows one by one ───────────────────────────────────────────

async function withMv<T>(cacheSize: number, fn: (orders: Collection<typeof IndexedOrders>, db: Database) => Promise<T>): Promise<T> {
  const db = await Database.open(prepared().files.mv!, { cacheSize });
  try {
    return await fn(await db.register(IndexedOrders), db);
  } finally {
    await db.close();
  }
}

async function scanModelVault(batches: boolean): Promise<Measured> {
  return withMv(CACHE_BYTES, async (orders) => {
    const q = orders.query().where('amount', '<', AMOUNT_CUT);
    const plan = q.explain().split('\n').map((l) => l.trim()).join(' <- ');
    const m = await timeReps(reps(5), 1, async () => {
      let n = 0, ids = 0;
      if (batches) {
        for await (const rows of q.batches()) for (const r of rows) { n++; ids += r.id; }
      } else {
        for await (const r of q) { n++; ids += r.id; }
      }
      return { rows: n, check: `${n} rows, id sum ${ids}` };
    });
    return { ...m, notes: [`plan: ${plan}`] };
  });
}

/** The prepared SQLite file opened with a `cacheSize` page cache, closed after `run`. */
async function withSqlite<T>(cacheSize: number, run: (db: SqliteDb) => T | Promise<T>): Promise<T> {
  const S = await loadSqlite();
  if (!S || !prepared().files.sqlite) throw new Error('better-sqlite3 unavailable');
  const db = sqliteOpen(S, prepared().files.sqlite!, cacheSize);
  try {
    return await run(db);
  } finally {
    db.close();
  }
}

/** SQLite's plan for `sql`, with a window's parameters. */
function windowPlan(db: SqliteDb, sql: string, w: { category: string; from: number; to: number }): string {
  return (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(w.category, w.from, w.to) as { detail: string }[]).map((r) => r.detail).join('; ');
}

async function scanSqlite(): Promise<Measured> {
  return withSqlite(CACHE_BYTES, (db) => {
    const stmt = db.prepare('SELECT * FROM orders WHERE amount < ?');
    return timeReps(reps(5), 1, () => {
      let n = 0, ids = 0;
      for (const r of stmt.iterate(AMOUNT_CUT) as IterableIterator<{ id: number }>) { n++; ids += r.id; }
      return { rows: n, check: `${n} rows, id sum ${ids}` };
    });
  });
}

async function duckOpen(api: DuckApi, file: string, config: Record<string, string> = {}) {
  const threads = process.env.DUCKDB_THREADS;
  const inst = await api.DuckDBInstance.create(file, { ...(threads ? { threads } : {}), ...config });
  const conn = await inst.connect();
  const setting = async (name: string) => String((await conn.runAndReadAll(`SELECT current_setting('${name}') AS v`)).getRowObjectsJS()[0].v);
  return { inst, conn, threads: await setting('threads'), memoryLimit: await setting('memory_limit') };
}

async function scanDuck(): Promise<Measured> {
  const api = await loadDuck();
  if (!api || !prepared().files.duck) throw new Error('@duckdb/node-api unavailable');
  const { inst, conn, threads } = await duckOpen(api, prepared().files.duck!);
  try {
    const m = await timeReps(reps(5), 1, async () => {
      const result = await conn.stream('SELECT * FROM orders WHERE amount < $1', [AMOUNT_CUT]);
      let n = 0, ids = 0;
      for await (const rows of result.yieldRowObjectJs()) for (const r of rows) { n++; ids += r.id as number; }
      return { rows: n, check: `${n} rows, id sum ${ids}` };
    });
    return { ...m, notes: [`threads=${threads}; streaming result, chunks of up to 2,048 rows converted to JS objects, then row by row`] };
  } finally {
    conn.closeSync();
    inst.closeSync();
  }
}

// ── indexed: category = ? AND ts BETWEEN ? AND ? ────────────────────────────────

/** QUERIES (category, from, to) triples, the same for every engine. */
function windows(): { category: string; from: number; to: number }[] {
  const r = rng(77);
  return Array.from({ length: QUERIES }, (_, k) => {
    const from = T0 + Math.floor(r() * (YEAR_MS - WINDOW_MS) / 1000) * 1000;
    return { category: CATEGORIES[k % CATEGORIES.length], from, to: from + WINDOW_MS };
  });
}

async function indexedModelVault(batches: boolean): Promise<Measured> {
  return withMv(CACHE_BYTES, async (orders, db) => {
    const ws = windows();
    const query = (w: (typeof ws)[number]) => orders.query().where('category', '=', w.category).where('ts', '>=', new Date(w.from)).where('ts', '<=', new Date(w.to));
    const plan = query(ws[0]).explain().split('\n').map((l) => l.trim()).join(' <- ');
    if (!/byCategoryTs/.test(plan)) console.log(`!! the plan does not name the index byCategoryTs: ${plan}`);
    const m = await timeReps(reps(5), 1, async () => {
      let n = 0, ids = 0;
      for (const w of ws) {
        const q = query(w);
        if (batches) {
          for await (const rows of q.batches()) for (const r of rows) { n++; ids += r.id; }
        } else {
          for await (const r of q) { n++; ids += r.id; }
        }
      }
      return { rows: n, check: `${n} rows, id sum ${ids}` };
    });
    const c = db.stats().cache, pageReads = c.hits + c.misses;
    return { ...m, notes: [
      `${QUERIES} queries a pass, ${(m.rows / QUERIES).toFixed(0)} rows a query, ${si(QUERIES / (median(m.samplesMs) / 1000))} queries/s; plan: ${plan}`,
      `pages over all passes: ${si(c.hits)} pool hits / ${si(c.misses)} misses (${((100 * c.misses) / Math.max(1, pageReads)).toFixed(0)}% read from the file)`,
    ] };
  });
}

/** `sql` (category = ? AND ts BETWEEN ? AND ?) over the QUERIES windows, rows one by one. */
async function windowsSqlite(sql: string): Promise<Measured> {
  return withSqlite(CACHE_BYTES, async (db) => {
    const stmt = db.prepare(sql);
    const ws = windows();
    const plan = windowPlan(db, sql, ws[0]);
    const m = await timeReps(reps(5), 1, () => {
      let n = 0, ids = 0;
      for (const w of ws) for (const r of stmt.iterate(w.category, w.from, w.to) as IterableIterator<{ id: number }>) { n++; ids += r.id; }
      return { rows: n, check: `${n} rows, id sum ${ids}` };
    });
    return { ...m, notes: [`${si(QUERIES / (median(m.samplesMs) / 1000))} queries/s; plan: ${plan}`] };
  });
}

// ── count: the indexed queries' count() ─────────────────────────────────────────

async function countModelVault(): Promise<Measured> {
  return withMv(CACHE_BYTES, async (orders) => {
    const ws = windows();
    const m = await timeReps(reps(5), 1, async () => {
      let n = 0;
      for (const w of ws) n += await orders.query().where('category', '=', w.category).where('ts', '>=', new Date(w.from)).where('ts', '<=', new Date(w.to)).count();
      return { rows: n, check: `${n} rows counted` };
    });
    return { ...m, notes: [`${QUERIES} count() a pass, ${si(QUERIES / (median(m.samplesMs) / 1000))} counts/s; the index's bounds decide both conditions, so only index entries are counted`] };
  });
}

async function countSqlite(): Promise<Measured> {
  return withSqlite(CACHE_BYTES, async (db) => {
    const sql = 'SELECT count(*) AS n FROM orders WHERE category = ? AND ts BETWEEN ? AND ?';
    const stmt = db.prepare(sql);
    const ws = windows();
    const m = await timeReps(reps(5), 1, () => {
      let n = 0;
      for (const w of ws) n += (stmt.get(w.category, w.from, w.to) as { n: number }).n;
      return { rows: n, check: `${n} rows counted` };
    });
    return { ...m, notes: [`plan: ${windowPlan(db, sql, ws[0])}`] };
  });
}

// ── small: many short indexed queries (per-query overhead) ──────────────────────

const SMALL_QUERIES = 2000;
/** One-day windows: a handful of rows each, of which the query takes the first 5. */
function smallWindows(): { category: string; from: number; to: number }[] {
  const r = rng(78);
  return Array.from({ length: SMALL_QUERIES }, (_, k) => {
    const from = T0 + Math.floor(r() * (YEAR_MS - 86_400_000) / 1000) * 1000;
    return { category: CATEGORIES[k % CATEGORIES.length], from, to: from + 86_400_000 };
  });
}

async function smallModelVault(): Promise<Measured> {
  return withMv(CACHE_BYTES, async (orders) => {
    const ws = smallWindows();
    const m = await timeReps(reps(5), 1, async () => {
      let n = 0, ids = 0;
      for (const w of ws) {
        const rows = await orders.query().where('category', '=', w.category).where('ts', '>=', new Date(w.from)).where('ts', '<=', new Date(w.to)).limit(5).toArray();
        for (const r of rows) { n++; ids += r.id; }
      }
      return { rows: n, check: `${n} rows, id sum ${ids}` };
    });
    return { ...m, notes: [`${SMALL_QUERIES} queries a pass, ${(1e3 * median(m.samplesMs) / SMALL_QUERIES).toFixed(1)} µs a query (build, plan, run, rows to JS)`] };
  });
}

async function smallSqlite(): Promise<Measured> {
  return withSqlite(CACHE_BYTES, async (db) => {
    const stmt = db.prepare('SELECT * FROM orders WHERE category = ? AND ts BETWEEN ? AND ? LIMIT 5');
    const ws = smallWindows();
    const m = await timeReps(reps(5), 1, () => {
      let n = 0, ids = 0;
      for (const w of ws) for (const r of stmt.all(w.category, w.from, w.to) as { id: number }[]) { n++; ids += r.id; }
      return { rows: n, check: `${n} rows, id sum ${ids}` };
    });
    return { ...m, notes: [`one prepared statement, .all() per query: ${(1e3 * median(m.samplesMs) / SMALL_QUERIES).toFixed(1)} µs a query`] };
  });
}

// ── covered: the indexed queries selecting only (id, ts), which the index keys hold ─

async function coveredModelVault(): Promise<Measured> {
  return withMv(CACHE_BYTES, async (orders) => {
    const ws = windows();
    const query = (w: (typeof ws)[number]) => orders.query().where('category', '=', w.category).where('ts', '>=', new Date(w.from)).where('ts', '<=', new Date(w.to)).select('id', 'ts');
    const plan = query(ws[0]).explain().split('\n').map((l) => l.trim()).join(' <- ');
    const m = await timeReps(reps(5), 1, async () => {
      let n = 0, ids = 0;
      for (const w of ws) for await (const r of query(w)) { n++; ids += r.id; }
      return { rows: n, check: `${n} rows, id sum ${ids}` };
    });
    return { ...m, notes: [`plan: ${plan}`] };
  });
}


// ── large: a collection 4x the cache ────────────────────────────────────────────

const largeCache = () => Math.max(MiB, Math.floor(prepared().collectionBytes! / 4 / MiB) * MiB);

async function largeModelVault(): Promise<Measured> {
  const cacheSize = largeCache();
  return withMv(cacheSize, async (orders, db) => {
    const m = await timeReps(reps(3), 0, async () => {
      let n = 0, ids = 0;
      for await (const r of orders.query()) { n++; ids += r.id; }
      return { rows: n, check: `${n} rows, id sum ${ids}` };
    });
    const s = db.stats().cache;
    return {
      ...m, rssBudgetKiB: (cacheSize + 100 * MiB) / 1024, rssBudgetLabel: 'cacheSize + 100 MiB',
      notes: [`cacheSize ${(cacheSize / MiB).toFixed(0)} MiB for a ${(prepared().collectionBytes! / MiB).toFixed(0)} MiB collection; ` +
        `${(s.bytesRead / MiB).toFixed(0)} MiB read into the pool over ${m.samplesMs.length} passes; file in the OS page cache (warm)`],
    };
  });
}

async function largeSqlite(): Promise<Measured> {
  const cacheSize = largeCache();
  return withSqlite(cacheSize, async (db) => {
    const stmt = db.prepare('SELECT * FROM orders');
    const m = await timeReps(reps(3), 0, () => {
      let n = 0, ids = 0;
      for (const r of stmt.iterate() as IterableIterator<{ id: number }>) { n++; ids += r.id; }
      return { rows: n, check: `${n} rows, id sum ${ids}` };
    });
    return { ...m, rssBudgetKiB: (cacheSize + 100 * MiB) / 1024, rssBudgetLabel: 'cache_size + 100 MiB', notes: [`cache_size ${(cacheSize / MiB).toFixed(0)} MiB`] };
  });
}

const cases: CaseDef[] = [
  { id: 'scan/modelvault', group: 'scan', engine: MODELVAULT, run: () => scanModelVault(false) },
  { id: `scan/${SQLITE}`, group: 'scan', engine: SQLITE, run: scanSqlite },
  { id: `scan/${DUCKDB}`, group: 'scan', engine: DUCKDB, run: scanDuck },
  { id: 'indexed/modelvault', group: 'indexed', engine: MODELVAULT, run: () => indexedModelVault(false) },
  { id: `indexed/${SQLITE}`, group: 'indexed', engine: SQLITE, run: () => windowsSqlite('SELECT * FROM orders WHERE category = ? AND ts BETWEEN ? AND ?') },
  { id: 'small/modelvault', group: 'small', engine: MODELVAULT, run: smallModelVault },
  { id: `small/${SQLITE}`, group: 'small', engine: SQLITE, run: smallSqlite },
  { id: 'covered/modelvault', group: 'covered', engine: MODELVAULT, run: coveredModelVault },
  { id: `covered/${SQLITE}`, group: 'covered', engine: SQLITE, run: () => windowsSqlite('SELECT id, ts FROM orders WHERE category = ? AND ts BETWEEN ? AND ?') },
  { id: 'count/modelvault', group: 'count', engine: MODELVAULT, run: countModelVault },
  { id: `count/${SQLITE}`, group: 'count', engine: SQLITE, run: countSqlite },
  { id: 'batches/scan', group: 'batches-scan', engine: 'modelvault batches()', run: () => scanModelVault(true) },
  { id: 'batches/indexed', group: 'batches-indexed', engine: 'modelvault batches()', run: () => indexedModelVault(true) },
  { id: 'large/modelvault', group: 'large', engine: MODELVAULT, run: largeModelVault },
  { id: `large/${SQLITE}`, group: 'large', engine: SQLITE, run: largeSqlite },
];

await benchMain({
  name: 'query-engines',
  title: 'query engines: scans, indexed ranges, batches, a scan larger than the cache',
  params: { N, QUERIES, cacheSizeBytes: CACHE_BYTES, windowDays: WINDOW_MS / 86_400_000, amountCut: AMOUNT_CUT, duckdbThreads: process.env.DUCKDB_THREADS ?? 'default' },
  groups: [
    { id: 'scan', title: `full scan of ${si(N)} orders, filter amount < ${AMOUNT_CUT} (10%), all columns, rows one by one (rows/s = rows delivered)` },
    { id: 'indexed', title: `${QUERIES} × category = ? AND ts BETWEEN ? AND ? (30 days), index on (category, ts), rows one by one (rows/s = rows delivered)` },
    { id: 'small', title: `${SMALL_QUERIES} × category = ? AND ts BETWEEN ? AND ? (one day) LIMIT 5, rows to JS: per-query overhead (rows/s = rows delivered)` },
    { id: 'covered', title: `${QUERIES} × SELECT id, ts WHERE category = ? AND ts BETWEEN ? AND ? (30 days): columns the index (category, ts) holds, rows one by one (rows/s = rows delivered)` },
    { id: 'count', title: `${QUERIES} × count() of category = ? AND ts BETWEEN ? AND ? (30 days), index on (category, ts) (rows/s = rows counted)` },
    { id: 'batches-scan', title: 'the 10% scan: batches() vs for await (ratio = batches() rows/s ÷ for-await rows/s)', primary: 'modelvault batches()', include: ['scan/modelvault'] },
    { id: 'batches-indexed', title: 'the indexed queries: batches() vs for await', primary: 'modelvault batches()', include: ['indexed/modelvault'] },
    { id: 'large', title: `full scan of all ${si(N)} orders with the cache at a quarter of the collection, rows one by one (rows/s = rows delivered)` },
  ],
  cases,
  prepare: async () => ({ ...(await prepare()) }),
}, new URL(import.meta.url));
