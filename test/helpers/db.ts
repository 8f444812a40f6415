// Shared helpers for the public-API tests: a Database per storage mode with automatic
// cleanup, reopening (the same file, or the committed image in memory mode) and
// error-code assertions.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, onTestFinished } from 'vitest';
import { Database, ModelVaultError, type ErrorCode, type InMemoryOptions, type OpenOptions } from '../../src/index.js';

export const MODES = ['memory', 'file'] as const;
export type Mode = (typeof MODES)[number];

/** Where each database handle came from, so it can be reopened. */
const origins = new WeakMap<Database, { mode: Mode; file: string | null; opts: OpenOptions }>();

/** A fresh directory under the OS temp directory, removed when the test finishes. */
export function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modelvault-api-'));
  onTestFinished(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function closeQuietly(db: Database): Promise<void> {
  try {
    await db.close();
  } catch {
    // already closed by the test
  }
}

/** A database in memory, or over a new file in a temporary directory; closed when the test finishes. */
export async function openDb(mode: Mode, opts: OpenOptions = {}): Promise<Database> {
  let db: Database;
  let file: string | null = null;
  if (mode === 'memory') {
    const { readOnly: _r, create: _c, recovery: _v, lockTimeoutMs: _l, ...memOpts } = opts;
    db = await Database.openInMemory(memOpts as InMemoryOptions);
  } else {
    file = path.join(tempDir(), 'test.modelvault');
    db = await Database.open(file, opts);
  }
  origins.set(db, { mode, file, opts });
  onTestFinished(() => closeQuietly(db));
  return db;
}

/**
 * Closes `db` and opens the same database again: the file itself in file mode, the committed
 * image (`snapshotBytes` → `openSnapshotBytes`) in memory mode.
 */
export async function reopenDb(db: Database): Promise<Database> {
  const origin = origins.get(db);
  if (!origin) throw new Error('reopenDb: database not opened by openDb');
  let next: Database;
  if (origin.file !== null) {
    await db.close();
    next = await Database.open(origin.file, origin.opts);
  } else {
    const image = await db.snapshotBytes();
    await db.close();
    next = await Database.openSnapshotBytes(image);
  }
  origins.set(next, origin);
  onTestFinished(() => closeQuietly(next));
  return next;
}

/** Awaits `promise` (or calls `fn`), expecting a ModelVaultError of `code`; returns the error. */
export async function expectCode(promise: Promise<unknown> | (() => unknown), code: ErrorCode): Promise<ModelVaultError> {
  let err: unknown;
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (e) {
    err = e;
  }
  if (err === undefined) throw new Error(`expected a ModelVaultError ${code}, but the call succeeded`);
  expect(err).toBeInstanceOf(ModelVaultError);
  expect((err as ModelVaultError).code, (err as Error).message).toBe(code);
  return err as ModelVaultError;
}

/** Like expectCode for VALIDATION, also checking `details.path`. */
export async function expectValidation(promise: Promise<unknown> | (() => unknown), pathName: string): Promise<ModelVaultError> {
  const err = await expectCode(promise, 'VALIDATION');
  expect(err.details.path, err.message).toBe(pathName);
  return err;
}

/** A comparator by a numeric or string `id`. */
export const byId = <T extends { id: number | string | bigint }>(a: T, b: T): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** A deterministic pseudo-random generator in [0, 1) (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}
