// Shared plumbing for the benchmarks: seeded data, the row schema every storage benchmark
// uses, medians and formatting, child processes that report one JSON result line, and the
// OS page-cache controls. Nothing here is timed.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import type { Cell } from '../storage/btree.js';

export const MiB = 2 ** 20;
export const GiB = 2 ** 30;

/** Seeded PRNG (mulberry32): uniform in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ── the row schema ──────────────────────────────────────────────────────────────
// key: id as an 8-byte big-endian integer; cells: [f float64 LE, i int64 LE, s UTF-8 of 30–50 chars].
// better-sqlite3 gets the same rows: t(id INTEGER PRIMARY KEY, f REAL, i INTEGER, s TEXT).

export const COLUMNS = 3;
export const COL_F = 0;
export const COL_I = 1;
export const COL_S = 2;

/** A pool of seeded 30–50 character strings; rows pick one each (strings are ~55% of a row's bytes). */
export function stringPool(seed: number, size = 4096): string[] {
  const r = rng(seed);
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ';
  const out: string[] = [];
  // Each string is decoded from its bytes in one step: built with `+=`, the pool's 160k
  // intermediate strings cost every benchmark child ~7 MiB of RSS before its case began.
  const bytes = Buffer.alloc(50);
  for (let n = 0; n < size; n++) {
    const len = 30 + Math.floor(r() * 21);
    for (let k = 0; k < len; k++) bytes[k] = alphabet.charCodeAt(Math.floor(r() * alphabet.length));
    out.push(bytes.toString('latin1', 0, len));
  }
  return out;
}

export interface Row { id: number; f: number; i: number; s: string }

/** Row values for id `id`, a pure function of (id, seed) so both engines and every run agree. */
export function makeRow(id: number, strings: readonly string[]): Row {
  // A cheap integer hash of the id; no PRNG state, so a row can be regenerated anywhere.
  let h = Math.imul(id ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h ^= h >>> 16;
  const u = h >>> 0;
  return { id, f: u / 4294967296 * 1000, i: u & 0x7fffffff, s: strings[u % strings.length] };
}

/**
 * Encodes a row as a key and cells in one fresh buffer per row. `BTreeWriter.put` takes its
 * key and cells over without copying (storage/btree.ts), so nothing here may be reused.
 */
export function encodeRow(row: Row): { key: Buffer; cells: Cell[] } {
  const n = Buffer.byteLength(row.s, 'utf8');
  const b = Buffer.allocUnsafe(24 + n);
  writeKey(b, 0, row.id);
  b.writeDoubleLE(row.f, 8);
  b.writeUInt32LE(row.i >>> 0, 16);
  b.writeUInt32LE(0, 20);
  b.write(row.s, 24, n, 'utf8');
  const cells: Cell[] = [null, null, null];
  cells[COL_F] = b.subarray(8, 16);
  cells[COL_I] = b.subarray(16, 24);
  cells[COL_S] = b.subarray(24, 24 + n);
  return { key: b.subarray(0, 8), cells };
}

/** Throws unless `cells` hold exactly the row `makeRow` gives for that id. */
export function checkRow(id: number, cells: readonly Cell[] | undefined, strings: readonly string[]): void {
  const want = makeRow(id, strings);
  if (!cells) throw new Error(`row ${id} is missing`);
  const f = asBuf(cells[COL_F]!).readDoubleLE(0), i = asBuf(cells[COL_I]!).readUInt32LE(0), s = asBuf(cells[COL_S]!).toString('utf8');
  if (f !== want.f || i !== want.i || s !== want.s) throw new Error(`row ${id} holds (${f}, ${i}, ${s}), expected (${want.f}, ${want.i}, ${want.s})`);
}

/** An id as an 8-byte big-endian integer (ids below 2^53). */
export function writeKey(b: Buffer, at: number, id: number): void {
  b.writeUInt32BE(Math.floor(id / 4294967296), at);
  b.writeUInt32BE(id >>> 0, at + 4);
}

export function keyOf(id: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  writeKey(b, 0, id);
  return b;
}

export function asBuf(c: Uint8Array): Buffer {
  return Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
}

// ── numbers ─────────────────────────────────────────────────────────────────────

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** 1234567 → "1.23 M". */
export function si(n: number, digits = 3): string {
  if (!Number.isFinite(n)) return String(n);
  const units: [number, string][] = [[1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
  for (const [v, u] of units) if (Math.abs(n) >= v) return `${(n / v).toPrecision(digits)} ${u}`;
  return n.toPrecision(digits);
}

export const mibps = (bytesPerSec: number) => `${(bytesPerSec / MiB).toFixed(0)} MiB/s`;
export const ratio = (a: number, b: number) => (b > 0 ? a / b : NaN);
export const fmtRatio = (r: number) => (Number.isFinite(r) ? `${r.toFixed(2)}x` : 'n/a');

/** Prints rows as an aligned text table (first row = header). */
export function printTable(rows: readonly (readonly string[])[]): void {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const line = (r: readonly string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ');
  console.log(line(rows[0]));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows.slice(1)) console.log(line(r));
}

// ── processes ───────────────────────────────────────────────────────────────────

const RESULT_PREFIX = '@@result ';

/** Ends a benchmark process's output with one machine-readable line for `runChild`. */
export function emitResult(result: unknown): void {
  console.log(RESULT_PREFIX + JSON.stringify(result));
}

/** Peak resident set size of this process so far, in KiB. */
export function peakRssKiB(): number {
  return process.resourceUsage().maxRSS;
}

/**
 * A .ts script bundled by esbuild into plain ESM beside it (packages stay imports), so a child
 * runs on bare Node: then its RSS is the database's and the peers', not tsx's (its loader runs
 * in a worker thread with its own heap, about 35 MiB). BENCH_TSX=1 runs children through tsx.
 */
function childEntry(file: string): string[] {
  if (!file.endsWith('.ts') || process.env.BENCH_TSX === '1') return [...process.execArgv, file];
  const out = path.join(path.dirname(file), `.${path.basename(file, '.ts')}.bundle.mjs`);
  // Loaded here, not at the top: every child imports this module, and esbuild would add ~3 MiB to its RSS.
  const esbuild = createRequire(import.meta.url)('esbuild') as typeof import('esbuild');
  esbuild.buildSync({ entryPoints: [file], outfile: out, bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'warning' });
  return [out];
}

/**
 * Runs `script` in its own Node process (see childEntry), echoing its output, and resolves
 * with the JSON it passed to `emitResult`.
 */
export function runChild<T>(script: string | URL, args: readonly string[] = [], env: NodeJS.ProcessEnv = {}): Promise<T> {
  const file = script instanceof URL ? fileURLToPath(script) : script;
  const entry = childEntry(file);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...entry, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let result: T | undefined;
    let pending = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line.startsWith(RESULT_PREFIX)) result = JSON.parse(line.slice(RESULT_PREFIX.length)) as T;
        else process.stdout.write(`  │ ${line}\n`);
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code !== 0) reject(new Error(`${file} ${args.join(' ')} exited with ${signal ?? code}`));
      else if (result === undefined) reject(new Error(`${file} ${args.join(' ')} printed no result line`));
      else resolve(result);
    });
  });
}

// ── the OS page cache ───────────────────────────────────────────────────────────

export interface CacheDrop {
  /** True when the file's pages are (as far as we can tell) out of the page cache. */
  ok: boolean;
  how: string;
}

/**
 * Evicts `file` from the OS page cache: first `dd iflag=nocache count=0`, which asks for
 * posix_fadvise(DONTNEED) on the whole file, needs no privilege and leaves other processes'
 * caches alone; checked with `fincore` where present. Falls back to `echo 3 >
 * /proc/sys/vm/drop_caches` (root on a writable /proc; drops every file's pages).
 */
export function dropFileCache(file: string): CacheDrop {
  spawnSync('sync');
  const dd = spawnSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none'], { encoding: 'utf8' });
  const resident = residentBytes(file);
  const size = fs.statSync(file).size;
  if (dd.status === 0 && resident !== null && resident <= size * 0.01) {
    return { ok: true, how: `posix_fadvise(DONTNEED) via dd iflag=nocache; fincore: ${(resident / MiB).toFixed(1)} MiB resident after` };
  }
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3\n');
    const after = residentBytes(file);
    return { ok: after === null || after <= size * 0.01, how: `echo 3 > /proc/sys/vm/drop_caches; fincore: ${after === null ? 'n/a' : `${(after / MiB).toFixed(1)} MiB`} resident after` };
  } catch (err) {
    const ddWhy = dd.status !== 0 ? `dd failed: ${dd.stderr.trim()}` : resident === null ? 'dd ran but fincore cannot confirm' : `dd left ${(resident / MiB).toFixed(0)} MiB resident`;
    return { ok: false, how: `${ddWhy}; drop_caches: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
  }
}

/** Bytes of `file` in the OS page cache (fincore), or null when it cannot be told. */
export function residentBytes(file: string): number | null {
  const r = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  const n = Number(r.stdout.trim());
  return Number.isFinite(n) ? n : null;
}
