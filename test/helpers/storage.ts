// Shared helpers for the storage tests: engines per storage mode with automatic cleanup,
// deterministic bytes, content digests and error-code assertions.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, onTestFinished } from 'vitest';
import { StorageEngine, type EngineOptions, type TreeReader } from '../../storage/engine.js';
import type { KeyBounds } from '../../storage/btree.js';
import { ModelVaultError, type ErrorCode } from '../../storage/errors.js';

export const MODES = ['memory', 'file'] as const;
export type Mode = (typeof MODES)[number];
export type Cells = (Uint8Array | null)[];

/** The pid of a process that has exited (pids are not reused that soon). */
export async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  const pid = child.pid!;
  await new Promise<void>((resolve, reject) => { child.once('exit', () => resolve()); child.once('error', reject); });
  expect(() => process.kill(pid, 0)).toThrow(); // gone (ESRCH)
  return pid;
}

/** A fresh directory under the OS temp directory, removed when the test finishes. */
export function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modelvault-test-'));
  onTestFinished(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A path for a database file in a fresh temporary directory (the file does not exist yet). */
export function tempFile(name = 'test.modelvault'): string {
  return path.join(tempDir(), name);
}

/** An engine over memory, or over a new file in a temporary directory; closed when the test finishes. */
export async function openEngine(mode: Mode, opts: EngineOptions = {}): Promise<StorageEngine> {
  const engine = mode === 'memory' ? await StorageEngine.openMemory(opts) : await StorageEngine.open(tempFile(), opts);
  onTestFinished(() => engine.close());
  return engine;
}

/**
 * Closes `engine` and opens the same database again: the file itself in file mode, the
 * committed image (`snapshotBytes` → `openMemory`) in memory mode.
 */
export async function reopenEngine(engine: StorageEngine, opts: EngineOptions = engine.options): Promise<StorageEngine> {
  let next: StorageEngine;
  if (engine.path !== null) {
    await engine.close();
    next = await StorageEngine.open(engine.path, opts);
  } else {
    const image = await engine.snapshotBytes();
    await engine.close();
    next = await StorageEngine.openMemory(opts, image);
  }
  onTestFinished(() => next.close());
  return next;
}

/** One write transaction putting rows 0..rows-1 under u32 keys into a one-column tree. */
export async function fillTree(engine: StorageEngine, tree: string, rows: number, value: (i: number) => Uint8Array): Promise<void> {
  await engine.write(async (tx) => {
    const w = await tx.tree(tree, 1);
    for (let i = 0; i < rows; i++) {
      await w.put(u32Key(i), [value(i)]);
      await tx.maybeFlush();
    }
  });
}

/** A 4-byte big-endian key: byte order is numeric order. */
export function u32Key(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/** `length` pseudo-random bytes determined by `seed` (xorshift32). */
export function seededBytes(seed: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = (seed ^ 0x9e3779b9) >>> 0 || 1;
  let i = 0;
  for (; i + 4 <= length; i += 4) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out.writeUInt32LE(x, i);
  }
  for (; i < length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

const hash = (bytes: Uint8Array) => createHash('sha1').update(bytes).digest('hex').slice(0, 12);

/** A short, comparable description of one cell: null, or its length and a hash of its bytes. */
export function describeCell(cell: Uint8Array | null): string {
  if (cell === null) return 'null';
  return cell.byteLength <= 16 ? `0x${Buffer.from(cell).toString('hex')}` : `${cell.byteLength}B#${hash(cell)}`;
}

/** A short, comparable description of an entry; arrays of these compare order and content. */
export function describeEntry(key: Uint8Array, cells: readonly (Uint8Array | null)[]): string {
  const k = key.byteLength <= 24 ? Buffer.from(key).toString('hex') : `${Buffer.from(key.subarray(key.byteLength - 8)).toString('hex')}(${key.byteLength}B#${hash(key)})`;
  return `${k} => ${cells.map(describeCell).join(' | ')}`;
}

/** Every entry of `tree` within `bounds`, described. */
export async function readEntries(reader: TreeReader, tree: string, bounds: KeyBounds = {}): Promise<string[]> {
  const out: string[] = [];
  for await (const [key, cells] of reader.entries(tree, bounds)) out.push(describeEntry(key, cells));
  return out;
}

/** Names, metadata and every entry of every tree: the whole committed content, described. */
export async function describeContent(engine: StorageEngine): Promise<Record<string, { meta: string | null; entries: string[] }>> {
  using snap = engine.snapshot();
  const out: Record<string, { meta: string | null; entries: string[] }> = {};
  for (const name of await snap.names()) {
    const meta = await snap.getMeta(name);
    out[name] = { meta: meta === undefined ? null : describeCell(meta), entries: await readEntries(snap, name) };
  }
  return out;
}

/** Awaits `promise`, expecting it to reject with a ModelVaultError of `code`; returns the error. */
export async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<ModelVaultError> {
  const err = await promise.then(
    () => { throw new Error(`expected a ModelVaultError ${code}, but the call succeeded`); },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ModelVaultError);
  expect((err as ModelVaultError).code, (err as Error).message).toBe(code);
  return err as ModelVaultError;
}

/** Asserts that verify() finds nothing wrong and returns its report. */
export async function expectVerifyOk(engine: StorageEngine): Promise<Awaited<ReturnType<StorageEngine['verify']>>> {
  const report = await engine.verify();
  expect(report.problems).toEqual([]);
  expect(report.ok).toBe(true);
  return report;
}
