// A full scan of a file far larger than the buffer pool: open time, rows/s through slices()
// reading two columns as typed views, and peak RSS against cacheSize + 100 MiB. The file is
// built once (big-file.ts, cached in bench/out/); each measurement runs in a fresh process.
//
//   npx tsx bench/scan-large-file.ts                  SIZE_GB=2 RUNS=3 PASSES=3
//   SIZE_GB=0.5 COLD=1 npx tsx bench/scan-large-file.ts
//   TRANSIENT=0 npx tsx bench/scan-large-file.ts     every leaf through the buffer pool (the pre-transient path)
//
// Baseline, same run and same page-cache state: a plain fs read of the whole file in 1 MiB
// chunks. By default the file is in the OS page cache (warm); COLD=1 evicts it before each
// scan pass and each baseline pass (posix_fadvise(DONTNEED), see harness.dropFileCache).
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { LeafView } from '../storage/btree.js';
import { StorageEngine } from '../storage/engine.js';
import { STRING_SEED, TREE, bigFileSpec, ensureBigFile, type BigFileManifest } from './big-file.js';
import {
  COL_F, COL_I, GiB, MiB, checkRow, dropFileCache, keyOf, rng, stringPool, emitResult, fmtRatio, mibps, median, peakRssKiB, printTable, ratio, runChild, si,
} from './harness.js';

const CACHE_BYTES = 64 * MiB;
const RSS_BUDGET_KIB = (CACHE_BYTES + 100 * MiB) / 1024;
/** The scan reads each slice's columns before pulling the next, so it may read around the pool (TRANSIENT=0: through it). */
const TRANSIENT = process.env.TRANSIENT !== '0';

interface MeasureResult {
  openMs: number;
  passMs: number[];
  rows: number;
  rssBeforeOpenKiB: number;
  peakRssKiB: number;
  peakHeapUsedBytes: number;
  /** Largest `process.memoryUsage().arrayBuffers` seen: page buffers, live or awaiting GC. */
  peakArrayBuffersBytes: number;
  cache: { misses: number; bytesRead: number; bytes: number };
  cold: string | null;
}

/** The child: open, scan PASSES times, report. */
async function measure(m: BigFileManifest, passes: number, cold: boolean): Promise<MeasureResult> {
  const rssBeforeOpenKiB = peakRssKiB();
  let coldHow: string | null = null;
  if (cold) coldHow = dropFileCache(m.file).how;
  const t0 = performance.now();
  const engine = await StorageEngine.open(m.file, { cacheSize: CACHE_BYTES });
  const openMs = performance.now() - t0;
  const passMs: number[] = [];
  let peakHeapUsedBytes = 0, peakArrayBuffersBytes = 0;
  try {
    for (let p = 0; p < passes; p++) {
      if (cold && p > 0) dropFileCache(m.file);
      const snap = engine.snapshot();
      let rows = 0, sum = 0, leaves = 0;
      const start = performance.now();
      try {
        for await (const { leaf, start: from, end } of snap.slices(TREE, {}, { transient: TRANSIENT })) {
          if (!(leaf instanceof LeafView)) throw new Error('slices() of a snapshot should yield page views');
          const fc = leaf.column(COL_F), ic = leaf.column(COL_I);
          if (fc.kind !== 'fixed' || ic.kind !== 'fixed' || fc.width !== 8 || ic.width !== 8) throw new Error('expected 8-byte fixed columns');
          const f = new Float64Array(fc.data.buffer, fc.data.byteOffset, leaf.count);
          const i = new Int32Array(ic.data.buffer, ic.data.byteOffset, leaf.count * 2);
          for (let k = from; k < end; k++) sum += f[k] + i[2 * k];
          rows += end - from;
          if ((++leaves & 127) === 0) {
            const mem = process.memoryUsage();
            peakHeapUsedBytes = Math.max(peakHeapUsedBytes, mem.heapUsed);
            peakArrayBuffersBytes = Math.max(peakArrayBuffersBytes, mem.arrayBuffers);
          }
        }
      } finally {
        snap.release();
      }
      passMs.push(performance.now() - start);
      if (rows !== m.rows) throw new Error(`scan saw ${rows} rows, the file holds ${m.rows}`);
      if (!(sum > 0)) throw new Error('checksum of the scanned columns is not positive');
    }
    const s = engine.stats();
    await spotCheck(engine, m);
    return {
      openMs, passMs, rows: m.rows, rssBeforeOpenKiB, peakRssKiB: peakRssKiB(), peakHeapUsedBytes, peakArrayBuffersBytes,
      cache: { misses: s.cache.misses, bytesRead: s.cache.bytesRead, bytes: s.cache.bytes }, cold: coldHow,
    };
  } finally {
    await engine.close();
  }
}

/** Not timed: 200 random rows read back by key equal what the builder wrote. */
async function spotCheck(engine: StorageEngine, m: BigFileManifest): Promise<void> {
  using snap = engine.snapshot();
  const strings = stringPool(STRING_SEED), r = rng(3);
  for (let k = 0; k < 200; k++) {
    const id = Math.floor(r() * m.rows);
    checkRow(id, await snap.get(TREE, keyOf(id)), strings);
  }
}

/** The baseline: the whole file through one reused 1 MiB buffer. Returns bytes/s. */
export async function sequentialReadRate(file: string): Promise<number> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(MiB);
    const t0 = performance.now();
    let offset = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.byteLength, offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
    }
    return offset / ((performance.now() - t0) / 1000);
  } finally {
    await fh.close();
  }
}

export interface ScanLargeResult {
  file: string;
  fileBytes: number;
  rows: number;
  cacheSizeBytes: number;
  cold: boolean;
  coldHow: string | null;
  openMsMedian: number;
  scanRowsPerSecMedian: number;
  scanBytesPerSecMedian: number;
  fsBytesPerSecMedian: number;
  scanVsFs: number;
  peakRssKiB: number;
  rssBeforeOpenKiB: number;
  peakArrayBuffersBytes: number;
  rssBudgetKiB: number;
  withinBudget: boolean;
  build: { rowsPerSec: number; peakRssKiB: number; seconds: number };
}

async function orchestrate(): Promise<ScanLargeResult> {
  const runs = Number(process.env.RUNS ?? 3), passes = Number(process.env.PASSES ?? 3), cold = process.env.COLD === '1';
  const m = await ensureBigFile(bigFileSpec());
  console.log(`scan-large-file: ${(m.fileBytes / GiB).toFixed(2)} GiB, ${si(m.rows)} rows, cacheSize ${CACHE_BYTES / MiB} MiB; ` +
    `${runs} fresh processes × ${passes} full scans; page cache ${cold ? 'dropped before each pass' : 'warm'}`);
  const measured: MeasureResult[] = [];
  const fsRates: number[] = [];
  for (let r = 0; r < runs; r++) {
    measured.push(await runChild<MeasureResult>(new URL(import.meta.url), ['--measure'], { PASSES: String(passes), COLD: cold ? '1' : '0' }));
    if (cold) dropFileCache(m.file);
    fsRates.push(await sequentialReadRate(m.file));
  }
  const passMs = measured.flatMap((x) => x.passMs);
  const scanMs = median(passMs);
  const peak = Math.max(...measured.map((x) => x.peakRssKiB));
  const result: ScanLargeResult = {
    file: m.file, fileBytes: m.fileBytes, rows: m.rows, cacheSizeBytes: CACHE_BYTES, cold, coldHow: measured[0].cold,
    openMsMedian: median(measured.map((x) => x.openMs)),
    scanRowsPerSecMedian: m.rows / (scanMs / 1000),
    scanBytesPerSecMedian: m.fileBytes / (scanMs / 1000),
    fsBytesPerSecMedian: median(fsRates),
    scanVsFs: ratio(m.fileBytes / (scanMs / 1000), median(fsRates)),
    peakRssKiB: peak,
    rssBeforeOpenKiB: median(measured.map((x) => x.rssBeforeOpenKiB)),
    peakArrayBuffersBytes: Math.max(...measured.map((x) => x.peakArrayBuffersBytes)),
    rssBudgetKiB: RSS_BUDGET_KIB,
    withinBudget: peak <= RSS_BUDGET_KIB,
    build: { rowsPerSec: m.buildRowsPerSec, peakRssKiB: m.buildPeakRssKiB, seconds: m.buildMs / 1000 },
  };
  console.log();
  printTable([
    ['figure', 'value', 'note'],
    ['open', `${result.openMsMedian.toFixed(1)} ms`, `median of ${runs} fresh processes`],
    ['full scan (2 columns, slices())', `${si(result.scanRowsPerSecMedian)} rows/s`, `median of ${passMs.length} passes: ${passMs.map((x) => x.toFixed(0)).join(', ')} ms`],
    ['  as file bytes', mibps(result.scanBytesPerSecMedian), ''],
    ['fs read, 1 MiB chunks (baseline)', mibps(result.fsBytesPerSecMedian), `median of ${runs}`],
    ['scan / fs read', fmtRatio(result.scanVsFs), cold ? 'cold page cache' : 'warm page cache'],
    ['peak RSS', `${(peak / 1024).toFixed(0)} MiB`, `budget cacheSize + 100 MiB = ${(RSS_BUDGET_KIB / 1024).toFixed(0)} MiB: ${result.withinBudget ? 'within' : 'OVER'}`],
    ['  RSS before open', `${(result.rssBeforeOpenKiB / 1024).toFixed(0)} MiB`, 'node + imports (an esbuild bundle, no tsx)'],
    ['  peak RSS − RSS before open', `${((peak - result.rssBeforeOpenKiB) / 1024).toFixed(0)} MiB`, `what opening and scanning added; cacheSize is ${CACHE_BYTES / MiB} MiB`],
    ['  peak arrayBuffers', `${(result.peakArrayBuffersBytes / MiB).toFixed(0)} MiB`, 'page buffers in the pool plus those awaiting GC'],
    ['  peak heapUsed', `${(Math.max(...measured.map((x) => x.peakHeapUsedBytes)) / MiB).toFixed(0)} MiB`, ''],
    ['  pool bytes read per pass', `${(measured[0].cache.bytesRead / passes / GiB).toFixed(2)} GiB`, `of ${(m.fileBytes / GiB).toFixed(2)} GiB file`],
    ['build (cached)', `${si(m.buildRowsPerSec)} rows/s`, `${(m.buildMs / 1000).toFixed(0)} s, builder peak RSS ${(m.buildPeakRssKiB / 1024).toFixed(0)} MiB`],
  ]);
  return result;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  if (process.argv[2] === '--measure') {
    const m = await ensureBigFile(bigFileSpec());
    emitResult(await measure(m, Number(process.env.PASSES ?? 3), process.env.COLD === '1'));
  } else {
    emitResult(await orchestrate());
  }
}
