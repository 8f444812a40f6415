// The buffering operators (sort, hash aggregate, hash join) through the public API, with and
// without a memory limit, side by side with better-sqlite3 and DuckDB in the same run, on the
// same seeded orders and customers, each case in its own process (so peak RSS is that case's).
//
//   sort        ORDER BY amount over N orders, every column, all rows streamed to JS one by one
//   sort-64     the same with a 64 MiB limit: ModelVault `options({ memoryLimit })`; DuckDB
//               `memory_limit='64MB'` + a temp_directory; SQLite cache_size 64 MiB + temp_store=FILE
//   sort-10m    (BIG=1 or --big) the same over BIG_N (10M) orders with 64 MiB
//   group(-64)  GROUP BY category (20 values) with count / sum(amount) / avg(qty)
//   join(-64)   N orders ⋈ 100k customers on userId = id, grouped by customer country
//   topk        ORDER BY amount DESC, id LIMIT 1000 over N orders, every column (rows/s = input orders)
//
// "Unlimited" is ModelVault memoryLimit 64 GiB, SQLite cache_size 1 GiB + temp_store=MEMORY,
// DuckDB's default memory_limit (80% of RAM). Peak RSS is set against cacheSize + memoryLimit +
// 100 MiB where there is a limit (the same figure is shown for the peers, whose knobs differ).
// ModelVault's cacheSize is 64 MiB throughout. rows/s = input orders per second.
//
//   npx tsx bench/spill-operators.ts              N=1000000 REPS=3
//   N=200000 CASES=group,join npx tsx bench/spill-operators.ts
//   BIG=1 BIG_N=10000000 npx tsx bench/spill-operators.ts     adds sort-10m (builds 10M-row files: slow)
//   DUCKDB_THREADS=1 ...                           DuckDB on one thread (default: its own choice)
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Database, avg, count, sum } from '../src/index.js';
import type { Collection } from '../src/index.js';
import { MODELVAULT, benchDir, big, benchMain, manifest, reps, timeReps, wanted, type CaseDef, type Measured } from './compare.js';
import { GiB, MiB, peakRssKiB, si } from './harness.js';
import { Customers, Orders, duckLoad, loadDuck, loadSqlite, mvBuild, sqliteLoad, sqliteLoadCustomers, sqliteOpen, type DuckApi } from './orders-data.js';

const N = Number(process.env.N ?? 1_000_000);
const BIG_N = Number(process.env.BIG_N ?? 10_000_000);
const CACHE_BYTES = 64 * MiB;
const LIMIT = 64 * MiB;
const UNLIMITED = 64 * GiB;
const SQLITE = 'better-sqlite3';
const DUCKDB = 'duckdb';
const TOP_K = 1000;

type Size = 'n' | 'big';
interface DataFiles { mv?: string; sqlite?: string; duck?: string }
interface Prepared { n: DataFiles; big: DataFiles }
const files = (size: Size) => manifest<Prepared>()[size];
const rowsOf = (size: Size) => (size === 'big' ? BIG_N : N);

async function build(size: Size, prefix: string): Promise<DataFiles> {
  const dir = benchDir(), rows = rowsOf(size), out: DataFiles = {};
  const timed = async (label: string, file: string, fn: () => Promise<void> | void) => {
    const t0 = performance.now();
    await fn();
    console.log(`${label}: ${si(rows)} orders + 100 k customers in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${(fs.statSync(file).size / MiB).toFixed(0)} MiB`);
  };
  // The groups whose cases read this size's files (sort-64 included: CASES=sort-64 alone built nothing).
  const groups = size === 'n' ? ['sort', 'sort-64', 'group', 'group-64', 'join', 'join-64', 'topk'] : [prefix];
  const needs = (engine: string) => groups.some((g) => wanted(`${g}/${engine}`));
  if (needs(MODELVAULT)) {
    out.mv = path.join(dir, `${size}.modelvault`);
    await timed('ModelVault', out.mv, () => mvBuild(out.mv!, rows, { indexed: false, customers: true }));
  }
  const S = await loadSqlite();
  if (S && needs(SQLITE)) {
    out.sqlite = path.join(dir, `${size}.sqlite`);
    await timed('better-sqlite3', out.sqlite, () => {
      const db = sqliteOpen(S, out.sqlite!, CACHE_BYTES);
      sqliteLoad(db, rows);
      sqliteLoadCustomers(db);
      db.exec('ANALYZE');
      db.close();
    });
  }
  const api = await loadDuck();
  if (api && needs(DUCKDB)) {
    out.duck = path.join(dir, `${size}.duckdb`);
    await timed('DuckDB', out.duck, async () => {
      const inst = await api.DuckDBInstance.create(out.duck!);
      const conn = await inst.connect();
      await duckLoad(api, conn, rows, true);
      conn.closeSync();
      inst.closeSync();
    });
  }
  return out;
}

async function prepare(): Promise<Prepared> {
  return { n: await build('n', 'sort'), big: big() ? await build('big', 'sort-10m') : {} };
}

// ── engines, with or without a limit ────────────────────────────────────────────

/** The SQL every peer runs, per workload. */
const SQL = {
  sort: 'SELECT * FROM orders ORDER BY amount',
  group: 'SELECT category, count(*) AS n, sum(amount) AS s, avg(qty) AS a FROM orders GROUP BY category',
  join: 'SELECT c.country AS country, count(*) AS n, sum(o.amount) AS s FROM orders o JOIN customers c ON o.userId = c.id GROUP BY c.country',
  topk: `SELECT * FROM orders ORDER BY amount DESC, id LIMIT ${TOP_K}`,
};
type Workload = keyof typeof SQL;

const digest = (s: string) => createHash('sha1').update(s).digest('hex').slice(0, 10);
/** Group rows → one digest, independent of row order and of float summation order (sums to cents). */
function groupDigest(rows: { key: string; n: number; s: number; a?: number }[]): string {
  const sorted = [...rows].sort((x, y) => (x.key < y.key ? -1 : 1));
  const total = sorted.reduce((t, r) => t + r.n, 0);
  return `${sorted.length} groups, ${total} rows, ${digest(sorted.map((r) => `${r.key}:${r.n}:${r.s.toFixed(2)}:${r.a === undefined ? '' : r.a.toFixed(6)}`).join('|'))}`;
}

/**
 * Tracks a sorted stream: count, id sum, and whether amounts never went down. A short result is
 * an error even when the engine raised none: DuckDB's streaming result of this sort over 10M
 * rows with memory_limit=64MB ended after ~120k rows without an error here (yieldRowObjectJs
 * and fetchChunk alike, @duckdb/node-api 1.5.6-r.1), while a materialized count(*) gave 10M.
 */
function sortTracker(expected: number, desc = false) {
  let n = 0, ids = 0, prev = desc ? Infinity : -Infinity, inOrder = true;
  return {
    add(id: number, amount: number) { n++; ids += id; if (desc ? amount > prev : amount < prev) inOrder = false; prev = amount; },
    result() {
      if (n !== expected) throw new Error(`short result: ${n} of ${expected} rows, and the engine raised no error`);
      if (!inOrder) throw new Error('rows came out of order');
      return { rows: n, check: `${n} rows in order, id sum ${ids}` };
    },
  };
}

interface Limits { limited: boolean }
const budget = (l: Limits) => (l.limited ? { rssBudgetKiB: (CACHE_BYTES + LIMIT + 100 * MiB) / 1024, rssBudgetLabel: 'cacheSize + memoryLimit + 100 MiB' } : {});

async function mvCase(w: Workload, size: Size, l: Limits): Promise<Measured> {
  const file = files(size).mv;
  if (!file) throw new Error('no ModelVault file');
  const memoryLimit = l.limited ? LIMIT : UNLIMITED;
  const db = await Database.open(file, { cacheSize: CACHE_BYTES, memoryLimit });
  try {
    const orders = (await db.register(Orders)) as Collection<typeof Orders>;
    await db.register(Customers);
    const rows = rowsOf(size);
    const query = w === 'sort' ? orders.query().orderBy('amount')
      : w === 'topk' ? orders.query().orderBy('amount', 'desc').orderBy('id').limit(TOP_K)
      : w === 'group' ? orders.query().groupBy('category').aggregate({ n: count(), s: sum('amount'), a: avg('qty') })
        : orders.query().join(Customers, 'userId', 'id', { as: 'customer' }).groupBy('customer.country').aggregate({ n: count(), s: sum('amount') });
    const spill0 = db.stats().spill;
    const m = await timeReps(reps(size === 'big' ? 1 : 3), size === 'big' ? 0 : 1, async () => {
      if (w === 'sort' || w === 'topk') {
        const t = sortTracker(w === 'sort' ? rows : TOP_K, w === 'topk');
        for await (const r of (query as ReturnType<typeof orders.query>).options({ memoryLimit })) t.add(r.id, r.amount);
        return w === 'sort' ? t.result() : { ...t.result(), rows };
      }
      const out: { key: string; n: number; s: number; a?: number }[] = [];
      for await (const r of query.options({ memoryLimit }) as AsyncIterable<Record<string, unknown>>) {
        out.push({ key: String(r.category ?? r['customer.country']), n: Number(r.n), s: Number(r.s), a: r.a === undefined ? undefined : Number(r.a) });
      }
      return { rows, check: groupDigest(out) };
    });
    const spill = db.stats().spill;
    const spilled = spill.bytesWritten - spill0.bytesWritten;
    // The explain pass below runs the query once more; the peers run theirs no extra time.
    const peakOfReps = peakRssKiB();
    const analyze = l.limited && size === 'n' ? (await query.options({ memoryLimit }).explain({ analyze: true })).split('\n').map((x) => x.trim()).join(' <- ') : null;
    return {
      ...m, rows: w === 'sort' ? m.rows : rows, ...budget(l), peakRssKiB: peakOfReps,
      notes: [`memoryLimit ${l.limited ? `${LIMIT / MiB} MiB` : `${UNLIMITED / GiB} GiB`}, cacheSize ${CACHE_BYTES / MiB} MiB; spilled ${(spilled / MiB).toFixed(0)} MiB in ${spill.runsWritten - spill0.runsWritten} runs over all passes${analyze ? `; explain analyze: ${analyze}` : ''}`],
    };
  } finally {
    await db.close();
  }
}

async function sqliteCase(w: Workload, size: Size, l: Limits): Promise<Measured> {
  const S = await loadSqlite();
  const file = files(size).sqlite;
  if (!S || !file) throw new Error('better-sqlite3 unavailable');
  // SQLite's temp files (sorter runs) go here: it reads SQLITE_TMPDIR when it first needs one.
  const tmp = path.join(benchDir(), `sqlite-tmp-${process.pid}`);
  fs.mkdirSync(tmp, { recursive: true });
  process.env.SQLITE_TMPDIR = tmp;
  const db = sqliteOpen(S, file, l.limited ? LIMIT : GiB);
  try {
    db.pragma(`temp_store = ${l.limited ? 'FILE' : 'MEMORY'}`);
    const stmt = db.prepare(SQL[w]);
    const rows = rowsOf(size);
    const m = await timeReps(reps(size === 'big' ? 1 : 3), size === 'big' ? 0 : 1, () => {
      if (w === 'sort' || w === 'topk') {
        const t = sortTracker(w === 'sort' ? rows : TOP_K, w === 'topk');
        for (const r of stmt.iterate() as IterableIterator<{ id: number; amount: number }>) t.add(r.id, r.amount);
        return w === 'sort' ? t.result() : { ...t.result(), rows };
      }
      const out = (stmt.all() as { category?: string; country?: string; n: number; s: number; a?: number }[])
        .map((r) => ({ key: String(r.category ?? r.country), n: r.n, s: r.s, a: r.a }));
      return { rows, check: groupDigest(out) };
    });
    const plan = (db.prepare(`EXPLAIN QUERY PLAN ${SQL[w]}`).all() as { detail: string }[]).map((r) => r.detail).join('; ');
    return {
      ...m, rows: w === 'sort' ? m.rows : rows, ...budget(l),
      notes: [`cache_size ${l.limited ? `${LIMIT / MiB} MiB, temp_store=FILE` : '1 GiB, temp_store=MEMORY'}; plan: ${plan}`],
    };
  } finally {
    db.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

async function duckCase(w: Workload, size: Size, l: Limits): Promise<Measured> {
  const api: DuckApi | null = await loadDuck();
  const file = files(size).duck;
  if (!api || !file) throw new Error('@duckdb/node-api unavailable');
  const tmp = path.join(benchDir(), `duck-tmp-${process.pid}`);
  const config: Record<string, string> = l.limited ? { memory_limit: `${LIMIT / MiB}MB`, temp_directory: tmp } : {};
  if (process.env.DUCKDB_THREADS) config.threads = process.env.DUCKDB_THREADS;
  const inst = await api.DuckDBInstance.create(file, config);
  const conn = await inst.connect();
  try {
    const setting = async (name: string) => String((await conn.runAndReadAll(`SELECT current_setting('${name}') AS v`)).getRowObjectsJS()[0].v);
    const threads = await setting('threads'), memoryLimit = await setting('memory_limit');
    const rows = rowsOf(size);
    const m = await timeReps(reps(size === 'big' ? 1 : 3), size === 'big' ? 0 : 1, async () => {
      const result = await conn.stream(SQL[w]);
      if (w === 'sort' || w === 'topk') {
        const t = sortTracker(w === 'sort' ? rows : TOP_K, w === 'topk');
        for await (const chunk of result.yieldRowObjectJs()) for (const r of chunk) t.add(r.id as number, r.amount as number);
        return w === 'sort' ? t.result() : { ...t.result(), rows };
      }
      const out: { key: string; n: number; s: number; a?: number }[] = [];
      for await (const chunk of result.yieldRowObjectJs()) {
        for (const r of chunk) out.push({ key: String(r.category ?? r.country), n: Number(r.n), s: Number(r.s), a: r.a === undefined || r.a === null ? undefined : Number(r.a) });
      }
      return { rows, check: groupDigest(out) };
    });
    const spilledBytes = dirBytes(tmp);
    return {
      ...m, rows: w === 'sort' ? m.rows : rows, ...budget(l),
      notes: [`memory_limit ${memoryLimit}, threads ${threads}${l.limited ? `, temp_directory holds ${(spilledBytes / MiB).toFixed(0)} MiB at the end` : ''}; streaming result read row by row`],
    };
  } finally {
    conn.closeSync();
    inst.closeSync();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function dirBytes(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  let n = 0;
  for (const f of fs.readdirSync(dir, { withFileTypes: true })) n += f.isFile() ? fs.statSync(path.join(dir, f.name)).size : 0;
  return n;
}

// ── the cases ───────────────────────────────────────────────────────────────────

const engines = [
  { engine: MODELVAULT, run: mvCase },
  { engine: SQLITE, run: sqliteCase },
  { engine: DUCKDB, run: duckCase },
];
const variants: { group: string; w: Workload; size: Size; limited: boolean; big?: boolean; title: string }[] = [
  { group: 'sort', w: 'sort', size: 'n', limited: false, title: `ORDER BY amount over ${si(N)} orders, all columns streamed to JS, no memory limit` },
  { group: 'sort-64', w: 'sort', size: 'n', limited: true, title: `ORDER BY amount over ${si(N)} orders, all columns streamed to JS, 64 MiB limit` },
  { group: 'sort-10m', w: 'sort', size: 'big', limited: true, big: true, title: `ORDER BY amount over ${si(BIG_N)} orders, all columns streamed to JS, 64 MiB limit` },
  { group: 'group', w: 'group', size: 'n', limited: false, title: `GROUP BY category (20 values), count/sum/avg over ${si(N)} orders, no memory limit (rows/s = input rows)` },
  { group: 'group-64', w: 'group', size: 'n', limited: true, title: `GROUP BY category, count/sum/avg over ${si(N)} orders, 64 MiB limit` },
  { group: 'join', w: 'join', size: 'n', limited: false, title: `${si(N)} orders ⋈ 100 k customers, GROUP BY country, no memory limit (rows/s = input orders)` },
  { group: 'join-64', w: 'join', size: 'n', limited: true, title: `${si(N)} orders ⋈ 100 k customers, GROUP BY country, 64 MiB limit` },
  { group: 'topk', w: 'topk', size: 'n', limited: false, title: `ORDER BY amount DESC, id LIMIT ${TOP_K} over ${si(N)} orders, all columns (rows/s = input orders)` },
];
const cases: CaseDef[] = variants.flatMap((v) => engines.map((e) => ({
  id: `${v.group}/${e.engine}`, group: v.group, engine: e.engine, big: v.big, run: () => e.run(v.w, v.size, { limited: v.limited }),
})));

await benchMain({
  name: 'spill-operators',
  title: 'sort, aggregate and join, with and without a memory limit',
  params: { N, BIG_N, cacheSizeBytes: CACHE_BYTES, memoryLimitBytes: LIMIT, unlimitedBytes: UNLIMITED, duckdbThreads: process.env.DUCKDB_THREADS ?? 'default' },
  groups: variants.map((v) => ({ id: v.group, title: v.title })),
  cases,
  prepare: async () => ({ ...(await prepare()) }),
}, new URL(import.meta.url));
