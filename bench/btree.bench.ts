// B+tree workloads on a file-backed engine, side by side with better-sqlite3 in the same run:
// bulk put of N sorted keys in one transaction, batches of random puts and random gets, and
// full forward scans (entries(), and slices() + column views). Seeded data, medians, ratios.
//
//   npx tsx bench/btree.bench.ts            N=200000 BATCH=10000 by default
//   N=50000 npx tsx bench/btree.bench.ts
//
// Both engines get the same rows (harness.ts) and durable commits: ModelVault fsyncs twice a
// commit; SQLite runs WAL with synchronous=FULL. Both caches are 64 MiB and the tables fit in
// them, so gets and scans are warm-cache CPU figures. SQLite's id is its INTEGER PRIMARY KEY
// (the rowid), as ModelVault's id is the B+tree key.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Bench, type Task } from 'tinybench';
import { StorageEngine } from '../storage/engine.js';
import { LeafView } from '../storage/btree.js';
import type { Cell } from '../storage/btree.js';
import {
  COLUMNS, COL_F, COL_I, COL_S, MiB, asBuf, encodeRow, emitResult, fmtRatio, makeRow, peakRssKiB, printTable, ratio, rng, si, stringPool, writeKey, checkRow, keyOf,
} from './harness.js';

type SqliteCtor = typeof import('better-sqlite3');
type SqliteDb = import('better-sqlite3').Database;

const N = Number(process.env.N ?? 200_000);
const BATCH = Number(process.env.BATCH ?? 10_000);
const CACHE_BYTES = 64 * MiB;
const PAGE_SIZE = Number(process.env.PAGE_SIZE ?? 65536);
const STRIDE = 16; // base ids are multiples of 16, so random puts land between them
const TREE = 't';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modelvault-bench-'));
const strings = stringPool(7);
const getKey = Buffer.alloc(8); // get() does not keep its key, so one buffer serves every lookup
let sink = 0; // keeps decoded values alive so no loop is optimised away

const mvOptions = { cacheSize: CACHE_BYTES, pageSize: PAGE_SIZE };
const rm = (f: string) => { for (const s of ['', '.lock', '-wal', '-shm', '-journal']) fs.rmSync(f + s, { force: true }); };

async function mvBulkLoad(engine: StorageEngine, rows: number): Promise<void> {
  await engine.write(async (tx) => {
    const w = await tx.tree(TREE, COLUMNS);
    for (let n = 0; n < rows; n++) {
      const id = n * STRIDE;
      const { key, cells } = encodeRow(makeRow(id, strings));
      await w.put(key, cells);
      await tx.maybeFlush();
    }
  });
}

function sqliteOpen(Sqlite: SqliteCtor, file: string): SqliteDb {
  const db = new Sqlite(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma(`cache_size = -${CACHE_BYTES / 1024}`);
  db.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, f REAL NOT NULL, i INTEGER NOT NULL, s TEXT NOT NULL)');
  return db;
}

function sqliteBulkLoad(db: SqliteDb, rows: number): void {
  const insert = db.prepare('INSERT INTO t (id, f, i, s) VALUES (?, ?, ?, ?)');
  db.transaction(() => {
    for (let n = 0; n < rows; n++) {
      const r = makeRow(n * STRIDE, strings);
      insert.run(r.id, r.f, r.i, r.s);
    }
  })();
}

const decodeRow = (cells: Cell[]): number => {
  const f = asBuf(cells[COL_F]!).readDoubleLE(0);
  const i = asBuf(cells[COL_I]!).readUInt32LE(0);
  const s = asBuf(cells[COL_S]!).toString('utf8');
  return f + i + s.length;
};

interface Workload { name: string; rowsPerIteration: number; mv: Task | null; sqlite: Task | null }

function medians(task: Task | null, rows: number): { ms: number; itersPerSec: number; rowsPerSec: number; samples: number } | null {
  const r = task?.result;
  if (!r || !('latency' in r)) return null;
  return { ms: r.latency.p50, itersPerSec: r.throughput.p50, rowsPerSec: rows / (r.latency.p50 / 1000), samples: r.latency.samplesCount };
}

async function main(): Promise<void> {
  let Sqlite: SqliteCtor | null = null;
  try {
    Sqlite = (await import('better-sqlite3')).default;
    new Sqlite(':memory:').close();
  } catch (err) {
    console.log(`better-sqlite3 unavailable, SQLite columns skipped: ${(err as Error).message}`);
    Sqlite = null;
  }
  console.log(`btree bench: N=${si(N)} rows, batches of ${si(BATCH)}, ${PAGE_SIZE / 1024} KiB pages, cacheSize ${CACHE_BYTES / MiB} MiB, files in ${dir}`);
  const workloads: Workload[] = [];

  // ── 1. bulk put of N sorted keys, one transaction, fresh file each iteration ──
  {
    const bench = new Bench({ name: 'bulk put', iterations: 5, time: 0, warmupIterations: 1, warmupTime: 0 });
    let engine: StorageEngine | null = null, db: SqliteDb | null = null, run = 0;
    const mvFile = () => path.join(dir, `bulk-${run}.modelvault`), sqlFile = () => path.join(dir, `bulk-${run}.sqlite`);
    bench.add('ModelVault bulk put', async () => { await mvBulkLoad(engine!, N); }, {
      beforeEach: async () => { run++; rm(mvFile()); engine = await StorageEngine.open(mvFile(), mvOptions); },
      afterEach: async () => { await engine!.close(); rm(mvFile()); },
    });
    if (Sqlite) {
      const S = Sqlite;
      bench.add('better-sqlite3 bulk insert', () => { sqliteBulkLoad(db!, N); }, {
        beforeEach: () => { run++; rm(sqlFile()); db = sqliteOpen(S, sqlFile()); },
        afterEach: () => { db!.close(); rm(sqlFile()); },
      });
    }
    await bench.run();
    workloads.push({ name: `bulk put, ${si(N)} sorted keys, 1 txn`, rowsPerIteration: N, mv: bench.tasks[0], sqlite: bench.tasks[1] ?? null });
  }

  // The shared base data set for the other workloads.
  const mvPath = path.join(dir, 'base.modelvault'), sqlPath = path.join(dir, 'base.sqlite');
  rm(mvPath); rm(sqlPath);
  const engine = await StorageEngine.open(mvPath, mvOptions);
  await mvBulkLoad(engine, N);
  const db = Sqlite ? sqliteOpen(Sqlite, sqlPath) : null;
  if (db) sqliteBulkLoad(db, N);
  {
    // Not timed: both engines hold the rows they were given.
    using snap = engine.snapshot();
    const r = rng(5), check = db?.prepare('SELECT f, i, s FROM t WHERE id = ?').raw(true);
    for (let k = 0; k < 1000; k++) {
      const id = Math.floor(r() * N) * STRIDE;
      checkRow(id, await snap.get(TREE, keyOf(id)), strings);
      const row = check?.get(id) as [number, number, string] | undefined, want = makeRow(id, strings);
      if (check && (!row || row[0] !== want.f || row[1] !== want.i || row[2] !== want.s)) throw new Error(`SQLite row ${id} differs`);
    }
  }

  // ── 2. random gets, BATCH per iteration, one snapshot / read transaction each ──
  {
    const bench = new Bench({ name: 'random get', iterations: 20, time: 0, warmupIterations: 3, warmupTime: 0 });
    const mvRand = rng(11);
    bench.add('ModelVault random get', async () => {
      const snap = engine.snapshot();
      try {
        for (let k = 0; k < BATCH; k++) {
          writeKey(getKey, 0, Math.floor(mvRand() * N) * STRIDE);
          const row = await snap.get(TREE, getKey);
          sink += decodeRow(row!);
        }
      } finally {
        snap.release();
      }
    });
    if (db) {
      const select = db.prepare('SELECT f, i, s FROM t WHERE id = ?').raw(true);
      const sqlRand = rng(11);
      const batch = db.transaction(() => {
        for (let k = 0; k < BATCH; k++) {
          const [f, i, s] = select.get(Math.floor(sqlRand() * N) * STRIDE) as [number, number, string];
          sink += f + i + s.length;
        }
      });
      bench.add('better-sqlite3 random get', () => { batch(); });
    }
    await bench.run();
    workloads.push({ name: `random get, ${si(BATCH)} per snapshot`, rowsPerIteration: BATCH, mv: bench.tasks[0], sqlite: bench.tasks[1] ?? null });
  }

  // ── 3. forward range scans over all N rows, reading f and i ──
  {
    const bench = new Bench({ name: 'range scan', iterations: 10, time: 0, warmupIterations: 2, warmupTime: 0 });
    bench.add('ModelVault scan entries()', async () => {
      const snap = engine.snapshot();
      let rows = 0;
      try {
        for await (const [, cells] of snap.entries(TREE)) {
          sink += asBuf(cells[COL_F]!).readDoubleLE(0) + asBuf(cells[COL_I]!).readUInt32LE(0);
          rows++;
        }
      } finally {
        snap.release();
      }
      if (rows !== N) throw new Error(`entries() scan saw ${rows} rows, expected ${N}`);
    });
    bench.add('ModelVault scan slices()+columns', async () => {
      const snap = engine.snapshot();
      let rows = 0;
      try {
        for await (const { leaf, start, end } of snap.slices(TREE)) {
          sink += sumColumns(leaf, start, end);
          rows += end - start;
        }
      } finally {
        snap.release();
      }
      if (rows !== N) throw new Error(`slices() scan saw ${rows} rows, expected ${N}`);
    });
    if (db) {
      const scan = db.prepare('SELECT f, i FROM t ORDER BY id').raw(true);
      bench.add('better-sqlite3 scan iterate()', () => {
        let rows = 0;
        for (const row of scan.iterate()) {
          const [f, i] = row as [number, number];
          sink += f + i;
          rows++;
        }
        if (rows !== N) throw new Error(`SQLite scan saw ${rows} rows, expected ${N}`);
      });
    }
    await bench.run();
    const sqlScan = bench.tasks[2] ?? null;
    workloads.push({ name: 'range scan, entries()', rowsPerIteration: N, mv: bench.tasks[0], sqlite: sqlScan });
    workloads.push({ name: 'range scan, slices()+column views', rowsPerIteration: N, mv: bench.tasks[1], sqlite: sqlScan });
  }

  // ── 4. random puts (upserts), BATCH per transaction, into the base tree ──
  {
    const bench = new Bench({ name: 'random put', iterations: 10, time: 0, warmupIterations: 2, warmupTime: 0 });
    const mvRand = rng(23);
    bench.add('ModelVault random put', async () => {
      await engine.write(async (tx) => {
        const w = await tx.tree(TREE, COLUMNS);
        for (let k = 0; k < BATCH; k++) {
          const id = Math.floor(mvRand() * N * STRIDE);
          const { key, cells } = encodeRow(makeRow(id, strings));
      await w.put(key, cells);
          await tx.maybeFlush();
        }
      });
    });
    if (db) {
      const upsert = db.prepare('INSERT OR REPLACE INTO t (id, f, i, s) VALUES (?, ?, ?, ?)');
      const sqlRand = rng(23);
      const batch = db.transaction(() => {
        for (let k = 0; k < BATCH; k++) {
          const r = makeRow(Math.floor(sqlRand() * N * STRIDE), strings);
          upsert.run(r.id, r.f, r.i, r.s);
        }
      });
      bench.add('better-sqlite3 random put', () => { batch(); });
    }
    await bench.run();
    workloads.push({ name: `random put, ${si(BATCH)} per txn`, rowsPerIteration: BATCH, mv: bench.tasks[0], sqlite: bench.tasks[1] ?? null });
  }

  const stats = engine.stats();
  await engine.close();
  db?.close();
  const fileBytes = { modelvault: fs.statSync(mvPath).size, sqlite: Sqlite ? fs.statSync(sqlPath).size : 0 };
  fs.rmSync(dir, { recursive: true, force: true });

  // ── report ──
  const table: string[][] = [['workload', 'engine', 'median ms/iter', 'iter/s', 'rows/s (median)', 'samples']];
  const results = workloads.map((w) => {
    const mv = medians(w.mv, w.rowsPerIteration), sq = medians(w.sqlite, w.rowsPerIteration);
    for (const [label, m] of [['ModelVault', mv], ['better-sqlite3', sq]] as const) {
      if (m) table.push([w.name, label, m.ms.toFixed(2), m.itersPerSec.toFixed(1), si(m.rowsPerSec), String(m.samples)]);
    }
    return { workload: w.name, mvRowsPerSec: mv?.rowsPerSec ?? NaN, sqliteRowsPerSec: sq?.rowsPerSec ?? NaN, ratio: ratio(mv?.rowsPerSec ?? NaN, sq?.rowsPerSec ?? NaN) };
  });
  console.log();
  printTable(table);
  console.log('(rows/s = puts or gets per second for those workloads; iter/s = transactions, snapshots or full scans per second)');
  console.log('\nModelVault / better-sqlite3 (rows/s ratio of medians, same run; >1 = ModelVault faster;');
  console.log(' SQLite has no columnar read, so both scans are set against its iterate() scan):');
  printTable([['workload', 'ModelVault rows/s', 'better-sqlite3 rows/s', 'ratio'],
    ...results.map((r) => [r.workload, si(r.mvRowsPerSec), si(r.sqliteRowsPerSec), fmtRatio(r.ratio)])]);
  console.log(`\nbase files after the run: ModelVault ${(fileBytes.modelvault / MiB).toFixed(1)} MiB, SQLite ${(fileBytes.sqlite / MiB).toFixed(1)} MiB; ` +
    `ModelVault cache hits ${si(stats.cache.hits)} misses ${si(stats.cache.misses)}; peak RSS ${(peakRssKiB() / 1024).toFixed(0)} MiB (both engines in one process)`);
  emitResult({ n: N, batch: BATCH, sqlite: Sqlite !== null, results, fileBytes, peakRssKiB: peakRssKiB(), sink: sink > 0 });
}

/** Sums f and the low 32 bits of i for entries [start, end) through typed views of the page. */
function sumColumns(leaf: unknown, start: number, end: number): number {
  if (!(leaf instanceof LeafView)) throw new Error('slices() of a snapshot should yield page views');
  const fc = leaf.column(COL_F), ic = leaf.column(COL_I);
  if (fc.kind !== 'fixed' || fc.width !== 8 || ic.kind !== 'fixed' || ic.width !== 8 || fc.absent || ic.absent) {
    throw new Error('expected fixed-width 8-byte columns with no absent cells');
  }
  const f = new Float64Array(fc.data.buffer, fc.data.byteOffset, leaf.count);
  const i = new Int32Array(ic.data.buffer, ic.data.byteOffset, leaf.count * 2); // little-endian: low word first
  let s = 0;
  for (let k = start; k < end; k++) s += f[k] + i[2 * k];
  return s;
}

await main();
