// `npm run bench`: every storage benchmark in its own process, then one summary table whose
// figures are ratios against baselines measured in the same run (medians).
//
//   npm run bench                                   defaults: N=200000, SIZE_GB=2
//   N=50000 SIZE_GB=0.25 npm run bench              a quicker run
//   ONLY=btree,page-read npm run bench              a subset (btree, scan-large-file, page-read,
//                                                   write-path, query-engines, spill-operators)
//   npm run bench -- --big                          also the slow cases: 20M-row insertMany
//                                                   (write-path) and the 10M-row sort (spill-operators)
//
// The large file is built on first use (minutes for 2 GiB) and cached in bench/out/. The three
// comparison benchmarks (against better-sqlite3, DuckDB, lmdb-js) run their own cases each in a
// child process and also write bench/out/<name>.json; N sets their row count too (default 1M).
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import type { ScanLargeResult } from './scan-large-file.js';
import type { PageReadResult } from './page-read.js';
import { ensureBigFile, bigFileSpec } from './big-file.js';
import type { GroupReport } from './compare.js';
import { GiB, fmtRatio, mibps, printTable, runChild, si } from './harness.js';

interface BtreeResult {
  n: number;
  sqlite: boolean;
  results: { workload: string; mvRowsPerSec: number; sqliteRowsPerSec: number; ratio: number }[];
}

const only = process.env.ONLY?.split(',').map((s) => s.trim());
const wanted = (name: string) => !only || only.includes(name);
const summary: string[][] = [['benchmark', 'figure', 'ModelVault', 'baseline (same run)', 'ratio']];
const failures: string[] = [];

const bigCases = process.argv.includes('--big') || process.env.BIG === '1';

async function step<T>(name: string, script: string, record: (r: T) => void, env: NodeJS.ProcessEnv = {}): Promise<void> {
  if (!wanted(name)) return;
  console.log(`\n━━ ${name} (${script}) ━━`);
  const t0 = performance.now();
  try {
    record(await runChild<T>(new URL(script, import.meta.url), [], env));
    console.log(`━━ ${name} done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  } catch (err) {
    failures.push(`${name}: ${(err as Error).message}`);
    console.log(`━━ ${name} FAILED: ${(err as Error).message}`);
  }
}

const head = (() => { try { return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(); } catch { return '?'; } })();
const load = () => os.loadavg().map((x) => x.toFixed(1)).join(' ');
console.log(`ModelVault storage benchmarks at ${head} — Node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ` +
  `${(os.totalmem() / GiB).toFixed(0)} GiB RAM, load average ${load()} (other processes skew timings)`);

await step<BtreeResult>('btree', './btree.bench.ts', (r) => {
  for (const w of r.results) {
    summary.push([`btree (N=${si(r.n)})`, `${w.workload}, rows/s`, si(w.mvRowsPerSec),
      r.sqlite ? `better-sqlite3 ${si(w.sqliteRowsPerSec)}` : 'better-sqlite3 unavailable', fmtRatio(w.ratio)]);
  }
});

if (wanted('scan-large-file') || wanted('page-read')) {
  // Built here, once, so neither benchmark's timing includes it.
  try {
    await ensureBigFile(bigFileSpec());
  } catch (err) {
    failures.push(`building the large file: ${(err as Error).message}`);
  }
}

await step<ScanLargeResult>('scan-large-file', './scan-large-file.ts', (r) => {
  const label = `scan ${(r.fileBytes / GiB).toFixed(1)} GiB (${si(r.rows)} rows)`;
  const cache = r.cold ? 'cold' : 'warm';
  summary.push([label, 'open, ms (median)', r.openMsMedian.toFixed(1), '', '']);
  summary.push([label, `full scan via slices(), ${cache} page cache`, `${si(r.scanRowsPerSecMedian)} rows/s = ${mibps(r.scanBytesPerSecMedian)}`,
    `fs read 1 MiB ${mibps(r.fsBytesPerSecMedian)}`, fmtRatio(r.scanVsFs)]);
  summary.push([label, 'peak RSS, cacheSize 64 MiB', `${(r.peakRssKiB / 1024).toFixed(0)} MiB`,
    `budget ${(r.rssBudgetKiB / 1024).toFixed(0)} MiB (${r.withinBudget ? 'within' : 'OVER'})`, fmtRatio(r.peakRssKiB / r.rssBudgetKiB)]);
  summary.push([label, 'bulk build (cached), rows/s', si(r.build.rowsPerSec), `builder peak RSS ${(r.build.peakRssKiB / 1024).toFixed(0)} MiB`, '']);
});

await step<PageReadResult>('page-read', './page-read.ts', (r) => {
  for (const m of r.modes) {
    const label = `page read, ${m.mode} cache`;
    const fsRate = m.rates['fs read 1 MiB'];
    for (const method of ['pager.prefetch', 'pager.readRun', 'pager.readPage', 'fs read 1 MiB + CRC32C', 'fs read 1 MiB, fresh buffers + CRC32C'] as const) {
      summary.push([label, method, mibps(m.rates[method]), `fs read 1 MiB ${mibps(fsRate)}`, fmtRatio(m.vsFs[method])]);
    }
  }
  if (!r.coldAvailable) summary.push(['page read', 'cold cache', 'not measured', r.coldHow, '']);
});

// The comparison benchmarks: one summary line per engine and group, ratio = ModelVault ÷ peer.
interface CompareResult { name: string; loadStart: number[]; loadEnd: number[]; groups: GroupReport[]; failures: string[] }
const recordCompare = (r: CompareResult) => {
  for (const g of r.groups) {
    const primary = g.rows.find((x) => x.engine === g.primary);
    for (const x of g.rows) {
      if (x === primary) continue;
      const mem = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;
      summary.push([`${r.name}: ${g.title.slice(0, 70)}`, `rows/s vs ${x.engine}`,
        primary && !primary.error ? `${si(primary.rowsPerSec)} (RSS ${mem(primary.peakRssKiB)}${primary.rssBudgetKiB ? `, budget ${mem(primary.rssBudgetKiB)} ${primary.withinBudget ? 'ok' : 'OVER'}` : ''})` : 'failed',
        x.error ? 'failed' : `${si(x.rowsPerSec)} (RSS ${mem(x.peakRssKiB)})`, x.ratio === undefined ? '' : fmtRatio(x.ratio)]);
    }
    if (g.rows.length === 1 && primary && !primary.error) {
      summary.push([`${r.name}: ${g.title.slice(0, 70)}`, 'rows/s', si(primary.rowsPerSec),
        primary.rssBudgetKiB ? `peak RSS ${(primary.peakRssKiB / 1024).toFixed(0)} MiB, budget ${(primary.rssBudgetKiB / 1024).toFixed(0)} MiB (${primary.withinBudget ? 'within' : 'OVER'})` : '', '']);
    }
  }
  for (const f of r.failures) failures.push(`${r.name} ${f}`);
};
const compareEnv = bigCases ? { BIG: '1' } : {};
await step<CompareResult>('write-path', './write-path.ts', recordCompare, compareEnv);
await step<CompareResult>('query-engines', './query-engines.ts', recordCompare, compareEnv);
await step<CompareResult>('spill-operators', './spill-operators.ts', recordCompare, compareEnv);

console.log(`\nload average at the end: ${load()}`);
console.log('\n━━ summary (medians; ratio = ModelVault / baseline, >1 = ModelVault faster, except peak RSS = used / budget) ━━');
printTable(summary);
if (failures.length > 0) {
  console.log(`\n${failures.length} benchmark(s) failed:\n  ${failures.join('\n  ')}`);
  process.exitCode = 1;
}
