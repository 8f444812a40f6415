// The write path and point reads through the public API, side by side with better-sqlite3 and
// lmdb-js in the same run, each case in its own process (so peak RSS is that case's).
//
//   insert  bulk insert of N orders in one transaction, file-backed, fresh file per repetition:
//           (insert-indexed: the same with a secondary index on (category, ts) in both engines)
//           ModelVault `insertMany(sync generator)` vs better-sqlite3 (one prepared INSERT
//           inside db.transaction(), WAL, synchronous=FULL). Both commits are durable.
//   get     GETS random point lookups by primary key on an N-row file: ModelVault
//           `await coll.get(id)` vs better-sqlite3 prepared `.get(id)` vs lmdb-js `get(id)`
//           (msgpack values). One untimed warm-up pass; every engine looks up the same ids.
//   big     (BIG=1 or --big) insertMany of BIG_N rows from an async generator, peak RSS
//           against cacheSize + 150 MiB.
//
//   npx tsx bench/write-path.ts                 N=1000000 GETS=100000, REPS=3 (insert) / 5 (get)
//   N=200000 npx tsx bench/write-path.ts        a quicker run
//   BIG=1 BIG_N=20000000 npx tsx bench/write-path.ts     adds the 20M-row case (many minutes)
//   CASES=get npx tsx bench/write-path.ts       only the point lookups
//   CASES=get CACHE_MIB=256 npx tsx bench/write-path.ts   lookups with caches that hold the whole file
//   PAGE_SIZE=16384 npx tsx bench/write-path.ts   ModelVault files made with 16 KiB pages (every bench script takes it)
//
// Rows are orders-data.ts's seeded orders; every engine gets the same rows. Caches: 64 MiB for
// ModelVault's buffer pool and SQLite's page cache; lmdb-js maps the file (its pages count in
// RSS as they are touched). SQLite returns ts as an integer (ms), the others as a Date.
import fs from 'node:fs';
import path from 'node:path';
import { Database } from '../src/index.js';
import type { Collection } from '../src/index.js';
import { MODELVAULT, benchDir, benchMain, manifest, reps, timeReps, wanted, type CaseDef, type Measured } from './compare.js';
import { MiB, si } from './harness.js';
import {
  IndexedOrders, Orders, createOptions, loadSqlite, makeOrder, mvBuild, orderRows, orderRowsAsync, randomIds, rmDb, sqliteLoad, sqliteOpen, type Order, type OrdersModel,
} from './orders-data.js';

const N = Number(process.env.N ?? 1_000_000);
const GETS = Number(process.env.GETS ?? 100_000);
const BIG_N = Number(process.env.BIG_N ?? 20_000_000);
/** ModelVault's buffer pool and SQLite's page cache (CACHE_MIB, default 64 MiB). */
const CACHE_BYTES = Number(process.env.CACHE_MIB ?? 64) * MiB;
const SQLITE = 'better-sqlite3';
const LMDB = 'lmdb-js';

interface Prepared { files: { mv?: string; sqlite?: string; lmdb?: string } }

const files = () => manifest<Prepared>().files;
const checkOrder = (id: number, got: { qty: number; note?: string | null; amount: number } | undefined) => {
  const want = makeOrder(id);
  if (!got || got.qty !== want.qty || got.note !== want.note || got.amount !== want.amount) throw new Error(`row ${id}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
};

async function prepare(): Promise<Prepared> {
  const dir = benchDir();
  const out: Prepared = { files: {} };
  if (wanted('get/modelvault')) {
    const t0 = performance.now();
    out.files.mv = path.join(dir, 'get.modelvault');
    await mvBuild(out.files.mv, N, { indexed: false, customers: false });
    console.log(`ModelVault: ${si(N)} orders in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${(fs.statSync(out.files.mv).size / MiB).toFixed(0)} MiB`);
  }
  if (wanted(`get/${SQLITE}`)) {
    const S = await loadSqlite();
    if (S) {
      const t0 = performance.now();
      out.files.sqlite = path.join(dir, 'get.sqlite');
      const db = sqliteOpen(S, out.files.sqlite, CACHE_BYTES);
      sqliteLoad(db, N);
      db.close();
      console.log(`better-sqlite3: ${si(N)} orders in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${(fs.statSync(out.files.sqlite).size / MiB).toFixed(0)} MiB`);
    }
  }
  if (wanted(`get/${LMDB}`)) {
    try {
      const { open } = await import('lmdb');
      const t0 = performance.now();
      out.files.lmdb = path.join(dir, 'get.lmdb');
      const db = open<Order, number>({ path: out.files.lmdb, encoding: 'msgpack', compression: false });
      const STEP = 100_000;
      for (let from = 0; from < N; from += STEP) {
        db.transactionSync(() => { for (const o of orderRows(Math.min(STEP, N - from), from)) db.put(o.id, o); });
      }
      await db.close();
      console.log(`lmdb-js: ${si(N)} orders in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${(fs.statSync(out.files.lmdb).size / MiB).toFixed(0)} MiB`);
    } catch (err) {
      console.log(`lmdb-js unavailable, skipped: ${(err as Error).message}`);
    }
  }
  return out;
}

// ── insert ──────────────────────────────────────────────────────────────────────

/** `indexed`: with a secondary index on (category, ts), built within the same insertMany. */
async function insertModelVault(indexed = false): Promise<Measured> {
  const file = path.join(benchDir(), `insert-${process.pid}.modelvault`);
  let fileBytes = 0;
  const m = await timeReps(reps(3), 0, async () => {
    rmDb(file);
    const db = await Database.open(file, { cacheSize: CACHE_BYTES, ...createOptions() });
    const orders = (await db.register(indexed ? IndexedOrders : Orders)) as Collection<OrdersModel>;
    const t0 = performance.now();
    const n = await orders.insertMany(orderRows(N));
    const ms = performance.now() - t0;
    await db.close();
    fileBytes = fs.statSync(file).size;
    rmDb(file);
    if (n !== N) throw new Error(`insertMany stored ${n} rows, expected ${N}`);
    return { rows: N, check: String(n), ms };
  });
  return { ...m, notes: [`file ${(fileBytes / MiB).toFixed(0)} MiB; timed: insertMany (validation, encoding, one durable commit); open/register/close untimed`] };
}

async function insertSqlite(indexed = false): Promise<Measured> {
  const S = await loadSqlite();
  if (!S) throw new Error('better-sqlite3 unavailable');
  const file = path.join(benchDir(), `insert-${process.pid}.sqlite`);
  let fileBytes = 0;
  const m = await timeReps(reps(3), 0, () => {
    rmDb(file);
    const db = sqliteOpen(S, file, CACHE_BYTES);
    if (indexed) db.exec('CREATE INDEX byCategoryTs ON orders (category, ts)');
    sqliteLoad(db, N);
    const n = (db.prepare('SELECT count(*) AS n FROM orders').get() as { n: number }).n;
    db.close();
    fileBytes = fs.statSync(file).size;
    rmDb(file);
    return { rows: N, check: String(n) };
  });
  return { ...m, notes: [`file ${(fileBytes / MiB).toFixed(0)} MiB (after the WAL checkpoint on close); timed: the transaction and a count(*)`] };
}

// ── get ─────────────────────────────────────────────────────────────────────────

// The warm-up pass looks up other ids than the timed ones; every timed pass and engine the same.
const getIds = (rep: number) => randomIds(GETS, N, rep < 0 ? 999 : 1000);

async function getModelVault(): Promise<Measured> {
  // Not readOnly: register() of an unchanged model still opens a write transaction, which a
  // read-only database refuses with READ_ONLY.
  const db = await Database.open(files().mv!, { cacheSize: CACHE_BYTES });
  try {
    const orders = await db.register(Orders);
    for (let id = 0; id < N; id += Math.ceil(N / 1000)) checkOrder(id, await orders.get(id));
    const m = await timeReps(reps(5), 1, async (rep) => {
      const ids = getIds(rep);
      let qty = 0;
      for (let k = 0; k < ids.length; k++) qty += (await orders.get(ids[k]))!.qty;
      return { rows: ids.length, check: rep < 0 ? undefined : `qty sum ${qty}` };
    });
    const s = db.stats().cache;
    return { ...m, notes: [`cache ${si(s.hits)} hits / ${si(s.misses)} misses`] };
  } finally {
    await db.close();
  }
}

/** `oneTxn`: all gets of a pass inside one read transaction (what btree.bench.ts measures). */
async function getSqlite(oneTxn: boolean): Promise<Measured> {
  const S = await loadSqlite();
  if (!S) throw new Error('better-sqlite3 unavailable');
  const db = sqliteOpen(S, files().sqlite!, CACHE_BYTES);
  try {
    const get = db.prepare('SELECT * FROM orders WHERE id = ?');
    for (let id = 0; id < N; id += Math.ceil(N / 1000)) checkOrder(id, get.get(id) as Order);
    const pass = (ids: Int32Array) => {
      let qty = 0;
      for (let k = 0; k < ids.length; k++) qty += (get.get(ids[k]) as { qty: number }).qty;
      return qty;
    };
    const inTxn = db.transaction(pass);
    const m = await timeReps(reps(5), 1, (rep) => {
      const ids = getIds(rep);
      const qty = oneTxn ? inTxn(ids) : pass(ids);
      return { rows: ids.length, check: rep < 0 ? undefined : `qty sum ${qty}` };
    });
    return { ...m, notes: [oneTxn ? 'all gets of a pass in one transaction' : 'each get() is its own implicit read transaction (WAL: a read lock per statement); ts comes back as an integer'] };
  } finally {
    db.close();
  }
}

async function getLmdb(): Promise<Measured> {
  const file = files().lmdb;
  if (!file) throw new Error('lmdb-js unavailable');
  const { open } = await import('lmdb');
  const db = open<Order, number>({ path: file, encoding: 'msgpack', compression: false, readOnly: true });
  try {
    for (let id = 0; id < N; id += Math.ceil(N / 1000)) checkOrder(id, db.get(id));
    const m = await timeReps(reps(5), 1, (rep) => {
      const ids = getIds(rep);
      let qty = 0;
      for (let k = 0; k < ids.length; k++) qty += db.get(ids[k])!.qty;
      return { rows: ids.length, check: rep < 0 ? undefined : `qty sum ${qty}` };
    });
    return { ...m, notes: ['synchronous get() on a memory-mapped file (a read txn renewed per call); mapped pages count in RSS'] };
  } finally {
    await db.close();
  }
}

// ── big ─────────────────────────────────────────────────────────────────────────

async function bigModelVault(): Promise<Measured> {
  const file = path.join(benchDir(), `big-${process.pid}.modelvault`);
  rmDb(file);
  const db = await Database.open(file, { cacheSize: CACHE_BYTES, ...createOptions() });
  const rssSamples: { rows: number; rssMiB: number; heapMiB: number; s: number }[] = [];
  let fileBytes = 0;
  try {
    const orders = (await db.register(Orders)) as Collection<OrdersModel>;
    const t0 = performance.now();
    const every = 1_000_000;
    async function* rows(): AsyncGenerator<Order> {
      let n = 0;
      for await (const o of orderRowsAsync(BIG_N)) {
        yield o;
        if (++n % every === 0) {
          const mem = process.memoryUsage();
          const sample = { rows: n, rssMiB: Math.round(mem.rss / MiB), heapMiB: Math.round(mem.heapUsed / MiB), s: Math.round((performance.now() - t0) / 1000) };
          rssSamples.push(sample);
          console.log(`${si(n)} rows after ${sample.s} s: RSS ${sample.rssMiB} MiB, heap ${sample.heapMiB} MiB, peak RSS so far ${Math.round(process.resourceUsage().maxRSS / 1024)} MiB`);
        }
      }
    }
    const n = await orders.insertMany(rows());
    const ms = performance.now() - t0;
    if (n !== BIG_N) throw new Error(`insertMany stored ${n} rows, expected ${BIG_N}`);
    fileBytes = fs.statSync(file).size;
    return {
      rows: BIG_N, samplesMs: [ms], check: String(n),
      rssBudgetKiB: (CACHE_BYTES + 150 * MiB) / 1024, rssBudgetLabel: 'cacheSize + 150 MiB',
      notes: [`file ${(fileBytes / MiB).toFixed(0)} MiB; one repetition; RSS every ${si(every)} rows: ${rssSamples.map((x) => x.rssMiB).join(' ')} MiB`],
      extra: { rssSamples, fileBytes },
    };
  } finally {
    await db.close();
    rmDb(file);
  }
}

const cases: CaseDef[] = [
  { id: 'insert/modelvault', group: 'insert', engine: MODELVAULT, run: () => insertModelVault() },
  { id: `insert/${SQLITE}`, group: 'insert', engine: SQLITE, run: () => insertSqlite() },
  { id: 'insert-indexed/modelvault', group: 'insert-indexed', engine: MODELVAULT, run: () => insertModelVault(true) },
  { id: `insert-indexed/${SQLITE}`, group: 'insert-indexed', engine: SQLITE, run: () => insertSqlite(true) },
  { id: 'get/modelvault', group: 'get', engine: MODELVAULT, run: getModelVault },
  { id: `get/${SQLITE}`, group: 'get', engine: SQLITE, run: () => getSqlite(false) },
  { id: `get/${SQLITE}-txn`, group: 'get', engine: `${SQLITE} (1 txn/pass)`, run: () => getSqlite(true) },
  { id: `get/${LMDB}`, group: 'get', engine: LMDB, run: getLmdb },
  { id: 'big/modelvault', group: 'big', engine: MODELVAULT, run: bigModelVault, big: true },
];

await benchMain({
  name: 'write-path',
  title: 'write path and point reads',
  params: { N, GETS, BIG_N, cacheSizeBytes: CACHE_BYTES },
  groups: [
    { id: 'insert', title: `bulk insert of ${si(N)} orders, one transaction, file-backed (rows/s = rows inserted per second)` },
    { id: 'insert-indexed', title: `the same with a secondary index on (category, ts) maintained in the same transaction` },
    { id: 'get', title: `${si(GETS)} random point gets by primary key on ${si(N)} orders (rows/s = gets per second)` },
    { id: 'big', title: `insertMany of ${si(BIG_N)} orders from an async generator, cacheSize ${CACHE_BYTES / MiB} MiB` },
  ],
  cases,
  prepare: async () => ({ ...(await prepare()) }),
}, new URL(import.meta.url));
