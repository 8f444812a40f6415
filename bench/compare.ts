// The driver of the comparison benchmarks (write-path, query-engines, spill-operators): one
// script is both the parent and its children. The parent builds the shared data set in one
// child (`--prepare`), runs every case in a child of its own (`--case ID`), so that a case's
// peak RSS (process.resourceUsage().maxRSS) is that case's alone, then prints a table per
// group with medians, ratios against the peers measured in the same run and peak RSS, and
// writes everything to bench/out/<name>.json. Nothing here is timed.
//
//   CASES=scan,indexed      only the cases whose id starts with one of these (results go to
//                           bench/out/<name>-scan+indexed.json, not over the full run's file)
//   REPS=5                  repetitions per case (each case has its own default)
//   WARMUP=0                untimed repetitions before them (each case has its own default);
//                           REPS=1 WARMUP=0 makes a case's peak RSS that of one query in a fresh process
//   KEEP=1                  keep the scratch folder (BENCH_TMP: where to make it, default the OS temp dir)
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GiB, MiB, emitResult, fmtRatio, median, peakRssKiB, printTable, runChild, si } from './harness.js';

export const MODELVAULT = 'modelvault';

/** What a case's run function returns: the timed repetitions and what they produced. */
export interface Measured {
  /** Rows per repetition: the unit of rows/s (rows inserted, looked up, delivered or read). */
  rows: number;
  samplesMs: number[];
  /** An answer digest that must be equal across the engines of a group (count, sums). */
  check?: string;
  /** Peak RSS budget for this case, when the benchmark promises one. */
  rssBudgetKiB?: number;
  rssBudgetLabel?: string;
  notes?: string[];
  extra?: Record<string, unknown>;
  /** Peak RSS when the repetitions ended, when the case does more afterwards (an explain pass) that must not count. */
  peakRssKiB?: number;
}

export interface CaseResult extends Measured {
  id: string;
  group: string;
  engine: string;
  medianMs: number;
  rowsPerSec: number;
  peakRssKiB: number;
  /** RSS when the case began, before any engine was opened (Node + tsx + modules). */
  baseRssKiB: number;
  loadStart: number[];
  loadEnd: number[];
  error?: string;
}

export interface CaseDef {
  /** `group/engine`, e.g. `scan/duckdb`; CASES filters on its prefix. */
  id: string;
  group: string;
  engine: string;
  /** Runs in the child. */
  run: () => Promise<Measured>;
  /** Off unless asked for (BIG=1 or --big). */
  big?: boolean;
}

export interface GroupDef {
  id: string;
  title: string;
  /** The engine the others are set against (default ModelVault). */
  primary?: string;
  /** Ids of cases of other groups shown (and set against the primary) in this one too. */
  include?: string[];
}

export interface BenchSpec {
  name: string;
  title: string;
  params: Record<string, unknown>;
  groups: GroupDef[];
  cases: CaseDef[];
  /** Builds the shared data set (in its own child); returns facts the cases read via `manifest()`. */
  prepare?: () => Promise<Record<string, unknown>>;
}

export const loadavg = () => os.loadavg().map((x) => Number(x.toFixed(2)));
export const big = () => process.env.BIG === '1' || process.argv.includes('--big');
export const reps = (fallback: number) => Math.max(1, Number(process.env.REPS ?? fallback));
const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;

/** One repetition: its rows, answer digest and, when only part of it is timed, that part's ms. */
export interface Rep { rows: number; check?: string; ms?: number }

/**
 * Times `reps` repetitions after `warmup` untimed ones. `fn` does one repetition and returns
 * its row count and answer digest (and `ms` when it timed only part of itself); every
 * repetition must give the same digest. Warm-up repetitions have rep < 0.
 */
export async function timeReps(
  reps: number,
  warmup: number,
  fn: (rep: number) => Promise<Rep> | Rep,
): Promise<{ rows: number; samplesMs: number[]; check?: string }> {
  let rows = 0, check: string | undefined;
  const samplesMs: number[] = [];
  if (process.env.WARMUP !== undefined) warmup = Math.max(0, Number(process.env.WARMUP));
  for (let rep = -warmup; rep < reps; rep++) {
    const t0 = performance.now();
    const r = await fn(rep);
    const ms = r.ms ?? performance.now() - t0;
    if (check !== undefined && r.check !== check) throw new Error(`repetition ${rep} answered ${r.check}, earlier ones ${check}`);
    check = r.check;
    rows = r.rows;
    if (rep >= 0) samplesMs.push(ms);
  }
  return { rows, samplesMs, check };
}

/** The scratch folder the parent made for this run (children only). */
export function benchDir(): string {
  const dir = process.env.BENCH_DIR;
  if (!dir) throw new Error('no BENCH_DIR: run the benchmark without --case / --prepare');
  return dir;
}

/** In the prepare child: whether any selected case id starts with `prefix`. */
export function wanted(prefix: string): boolean {
  const ids = process.env.BENCH_CASES;
  return ids === undefined || ids.split(',').some((id) => id.startsWith(prefix));
}

/** The facts `prepare` returned, passed to the children through the environment. */
export function manifest<T = Record<string, unknown>>(): T {
  const raw = process.env.BENCH_MANIFEST;
  if (!raw) throw new Error('no BENCH_MANIFEST: run the benchmark without --case, or prepare first');
  return JSON.parse(raw) as T;
}

const head = () => { try { return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(); } catch { return '?'; } };
const dirty = () => { try { return execFileSync('git', ['status', '--porcelain', '--untracked-files=no', 'src', 'storage', 'operators'], { encoding: 'utf8' }).trim().length > 0; } catch { return false; } };

/** The whole benchmark: child mode when given --case / --prepare, parent mode otherwise. */
export async function benchMain(spec: BenchSpec, script: string | URL): Promise<void> {
  const argv = process.argv.slice(2);
  const caseAt = argv.indexOf('--case');
  if (caseAt >= 0) return runCaseHere(spec, argv[caseAt + 1]);
  if (argv.includes('--prepare')) {
    emitResult(spec.prepare ? await spec.prepare() : {});
    return;
  }
  const file = script instanceof URL ? fileURLToPath(script) : script;
  const filters = process.env.CASES?.split(',').map((s) => s.trim()).filter(Boolean);
  const selected = spec.cases.filter((c) => (!c.big || big()) && (!filters || filters.some((f) => c.id.startsWith(f))));
  const skippedBig = spec.cases.filter((c) => c.big && !big()).map((c) => c.id);
  const startedAt = new Date().toISOString();
  const loadStart = loadavg();
  console.log(`${spec.title} — ModelVault at ${head()}${dirty() ? ' (+ uncommitted changes in src/storage/operators)' : ''}, Node ${process.version}, ` +
    `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / GiB).toFixed(0)} GiB RAM`);
  console.log(`params: ${JSON.stringify(spec.params)}`);
  console.log(`load average at start: ${loadStart.join(' ')} (other processes on this machine skew timings)`);
  if (skippedBig.length) console.log(`skipped (BIG=1 or --big to run): ${skippedBig.join(', ')}`);

  // Every child gets the same scratch folder (BENCH_DIR); it goes when the run ends (KEEP=1 keeps it).
  const dataDir = fs.mkdtempSync(path.join(process.env.BENCH_TMP ?? os.tmpdir(), `modelvault-${spec.name}-`));
  const childEnv = { BIG: big() ? '1' : '0', BENCH_DIR: dataDir };
  console.log(`scratch files in ${dataDir}`);
  const results: CaseResult[] = [];
  let prepared: Record<string, unknown> = {};
  let prepareError: string | null = null;
  if (spec.prepare && selected.length > 0) {
    const t0 = performance.now();
    console.log('\n── preparing the data set (untimed) ──');
    try {
      prepared = await runChild<Record<string, unknown>>(file, ['--prepare'], { ...childEnv, BENCH_CASES: selected.map((c) => c.id).join(',') });
      console.log(`── prepared in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    } catch (err) {
      prepareError = (err as Error).message;
      console.log(`── prepare FAILED: ${prepareError}`);
    }
  }
  try {
    for (const c of selected) {
      console.log(`\n── ${c.id} ──`);
      const loadBefore = loadavg();
      try {
        if (prepareError) throw new Error(`not run: prepare failed (${prepareError})`);
        const r = await runChild<CaseResult>(file, ['--case', c.id], { ...childEnv, BENCH_MANIFEST: JSON.stringify(prepared) });
        results.push(r);
        console.log(`   median ${r.medianMs.toFixed(1)} ms, ${si(r.rowsPerSec)} rows/s, peak RSS ${mib(r.peakRssKiB)}, load ${r.loadStart.join(' ')}`);
      } catch (err) {
        const message = (err as Error).message;
        console.log(`   FAILED: ${message}`);
        results.push({ id: c.id, group: c.group, engine: c.engine, rows: 0, samplesMs: [], medianMs: NaN, rowsPerSec: NaN, peakRssKiB: NaN, baseRssKiB: NaN, loadStart: loadBefore, loadEnd: loadavg(), error: message });
      }
    }
  } finally {
    if (process.env.KEEP !== '1') fs.rmSync(dataDir, { recursive: true, force: true });
    else console.log(`data kept in ${dataDir}`);
  }
  const loadEnd = loadavg();
  const report = report_(spec, results);
  console.log(`\nload average at start ${loadStart.join(' ')}, at end ${loadEnd.join(' ')} (1/5/15 min; ${os.cpus().length} cores)`);
  // A subset run (CASES=...) writes beside the full run's file instead of over it.
  const suffix = filters ? `-${filters.join('+').replace(/[^A-Za-z0-9+_-]/g, '_')}` : '';
  const out = new URL(`./out/${spec.name}${suffix}.json`, import.meta.url);
  fs.mkdirSync(new URL('./out/', import.meta.url), { recursive: true });
  const json = { name: spec.name, title: spec.title, startedAt, finishedAt: new Date().toISOString(), git: head(), uncommittedEngineChanges: dirty(),
    node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, totalMemBytes: os.totalmem(), loadStart, loadEnd,
    params: spec.params, skipped: skippedBig, prepared, groups: report, cases: results };
  fs.writeFileSync(out, JSON.stringify(json, null, 2) + '\n');
  console.log(`results: ${fileURLToPath(out)}`);
  emitResult({ name: spec.name, loadStart, loadEnd, groups: report, failures: results.filter((r) => r.error).map((r) => `${r.id}: ${r.error}`) });
}

export interface GroupReport {
  group: string;
  title: string;
  primary: string;
  rows: { engine: string; id: string; medianMs: number; rowsPerSec: number; peakRssKiB: number; baseRssKiB: number;
    rssBudgetKiB?: number; withinBudget?: boolean; ratio?: number; check?: string; error?: string; samples: number }[];
  checksAgree: boolean;
}

function report_(spec: BenchSpec, results: CaseResult[]): GroupReport[] {
  const groups: GroupReport[] = [];
  for (const g of spec.groups) {
    const rs = results.filter((r) => r.group === g.id || g.include?.includes(r.id));
    if (rs.length === 0) continue;
    const primary = g.primary ?? MODELVAULT;
    const p = rs.find((r) => r.engine === primary && !r.error);
    const checks = new Set(rs.filter((r) => !r.error && r.check !== undefined).map((r) => r.check));
    groups.push({
      group: g.id, title: g.title, primary, checksAgree: checks.size <= 1,
      rows: rs.map((r) => ({
        engine: r.engine, id: r.id, medianMs: r.medianMs, rowsPerSec: r.rowsPerSec, peakRssKiB: r.peakRssKiB, baseRssKiB: r.baseRssKiB,
        rssBudgetKiB: r.rssBudgetKiB, withinBudget: r.rssBudgetKiB === undefined ? undefined : r.peakRssKiB <= r.rssBudgetKiB,
        ratio: p && r.engine !== primary && !r.error ? p.rowsPerSec / r.rowsPerSec : undefined,
        check: r.check, error: r.error, samples: r.samplesMs.length,
      })),
    });
  }
  console.log(`\n━━ ${spec.title}: medians; ratio = primary rows/s ÷ this row's rows/s (>1 = the primary, ModelVault unless said, is faster) ━━`);
  for (const g of groups) {
    console.log(`\n${g.title}${g.primary !== MODELVAULT ? ` (primary: ${g.primary})` : ''}`);
    const table: string[][] = [['engine', 'median ms', 'rows/s', `${g.primary === MODELVAULT ? 'MV' : 'primary'} ÷ this`, 'peak RSS', 'base RSS', 'RSS budget', 'reps']];
    for (const r of g.rows) {
      if (r.error) { table.push([r.engine, 'FAILED', r.error.slice(0, 60), '', '', '', '', '']); continue; }
      table.push([r.engine, r.medianMs.toFixed(1), si(r.rowsPerSec), r.ratio === undefined ? '—' : fmtRatio(r.ratio), mib(r.peakRssKiB), mib(r.baseRssKiB),
        r.rssBudgetKiB === undefined ? '' : `${mib(r.rssBudgetKiB)} ${r.withinBudget ? 'ok' : 'OVER'}`, String(r.samples)]);
    }
    printTable(table);
    if (!g.checksAgree) console.log(`  !! answers differ between engines: ${g.rows.map((r) => `${r.engine}=${r.check}`).join('; ')}`);
    const notes = results.filter((r) => r.group === g.group && r.notes?.length).flatMap((r) => r.notes!.map((n) => `${r.engine}: ${n}`));
    for (const n of notes) console.log(`  · ${n}`);
  }
  return groups;
}

async function runCaseHere(spec: BenchSpec, id: string | undefined): Promise<void> {
  const c = spec.cases.find((x) => x.id === id);
  if (!c) throw new Error(`unknown case ${id}; cases: ${spec.cases.map((x) => x.id).join(', ')}`);
  const baseRssKiB = Math.round(process.memoryUsage().rss / 1024);
  const loadStart = loadavg();
  const m = await c.run();
  const medianMs = median(m.samplesMs);
  const result: CaseResult = {
    ...m, id: c.id, group: c.group, engine: c.engine, medianMs, rowsPerSec: m.rows / (medianMs / 1000),
    peakRssKiB: m.peakRssKiB ?? peakRssKiB(), baseRssKiB, loadStart, loadEnd: loadavg(),
  };
  emitResult(result);
}

export { MiB };
