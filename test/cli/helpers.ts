// Shared helpers for the command-line tests: run `modelvault` (src/cli.ts under tsx) in a child
// process, generate deterministic order data, and temporary directories removed afterwards.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

/** The repository root (the CLI runs with this as its working directory, so tsx resolves). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const MODEL_MODULE = path.join(ROOT, 'test/cli/fixtures/orders-model.ts');
export const PAGE_SIZE = 65536;

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a TypeScript entry point of the repository with `node --import tsx`; stdin closed, stdout/stderr piped (not TTYs). */
export function runScript(script: string, args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 90_000);
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
  });
}

/** `modelvault ...args` */
export function cli(...args: string[]): Promise<RunResult> {
  return runScript('src/cli.ts', args);
}

/** Asserts exit 0 (showing stderr when not) and returns the result. */
export function expectOk(r: RunResult): RunResult {
  expect(r.stderr.includes('internal error') ? r.stderr : '', 'no internal error').toBe('');
  expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
  return r;
}

/** Asserts a user error: a non-zero exit, exactly one line on stderr, no stack trace. Returns that line. */
export function expectUserError(r: RunResult, pattern?: RegExp): string {
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).not.toBe(0);
  expect(r.code).not.toBeNull();
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stderr).not.toContain('internal error');
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  expect(lines, r.stderr).toHaveLength(1);
  expect(r.stderr.endsWith('\n')).toBe(true);
  if (pattern) expect(lines[0]).toMatch(pattern);
  return lines[0];
}

/** A fresh directory under the OS temp directory; the caller removes it (afterAll). */
export function makeTempDir(label: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `modelvault-cli-${label}-`));
}

export function removeDir(dir: string | undefined): void {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}

/** A row as generated (what the NDJSON file holds, with `ts` as a Date). */
export interface OrderRow {
  id: number;
  userId: number;
  category: string;
  amount: number;
  qty: number;
  ts: Date;
  note?: string;
}

export const CATEGORIES = ['books', 'games', 'garden', 'music', 'tools', 'toys', 'food'];

/** A small deterministic PRNG, so every run sees the same data. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0) / 2 ** 32);
}

/**
 * `n` orders with ids 1..n. Amounts are all distinct (a permutation of cents, so ordering by
 * amount has no ties), some of them whole numbers; a quarter of the rows have a note, some of
 * which hold a comma, quotes, a newline or non-ASCII text (CSV quoting); categories are skewed
 * so that group counts differ.
 */
export function generateOrders(n: number, seed = 7): OrderRow[] {
  const r = rng(seed);
  const start = Date.UTC(2025, 0, 1);
  const rows: OrderRow[] = [];
  for (let i = 1; i <= n; i++) {
    const row: OrderRow = {
      id: i,
      userId: Math.floor(r() * 500),
      category: CATEGORIES[Math.floor(r() * r() * CATEGORIES.length)],
      amount: ((i * 7919) % 100_000) / 100,
      qty: 1 + Math.floor(r() * 5),
      ts: new Date(start + Math.floor(r() * 365 * 86_400_000)),
    };
    if (i % 4 === 0) {
      const k = (i / 4) % 5;
      row.note = k === 0 ? `gift, "wrap" ${i}` : k === 1 ? `line one\nline two ${i}` : k === 2 ? `naïve café ☕ ${i}` : `note ${i}`;
    }
    rows.push(row);
  }
  return rows;
}

/** One JSON object per line, as an upstream system would export it (timestamps as ISO strings). */
export function toNdjson(rows: readonly object[]): string {
  return rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
}

/** Rows as plain JSON data (Dates as ISO strings, absent fields absent), as `--json` prints them. */
export function asJson<T>(rows: T): unknown {
  return JSON.parse(JSON.stringify(rows));
}

/** Flips `length` bytes of `file` at `offset`. */
export function flipBytes(file: string, offset: number, length = 16): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = Buffer.alloc(length);
    fs.readSync(fd, b, 0, length, offset);
    for (let i = 0; i < length; i++) b[i] ^= 0xa5;
    fs.writeSync(fd, b, 0, length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** Characters a cli-progress bar draws (full and empty blocks, cursor control, carriage return). */
export const PROGRESS_BAR_CHARS = /[\u2588\u2591\r]|\x1b\[/;
