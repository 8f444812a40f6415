// The public entry point. This milestone covers what concerns storage: opening (file,
// memory, snapshot image), recovery info, snapshot bytes, backup, compact, verify, stats
// and close. Collections and queries slot in on top of `engine`.
import { ModelVaultError } from '../storage/errors.js';
import { StorageEngine, type StorageStats, type VerifyReport } from '../storage/engine.js';
import type { RecoveryInfo } from '../storage/pager.js';

export interface OpenOptions {
  /** Buffer pool budget in bytes (default 64 MiB). */
  cacheSize?: number;
  /** Per-query operator memory before spilling (default 256 MiB). */
  memoryLimit?: number;
  /** Never write (default false). */
  readOnly?: boolean;
  /** Create the file if missing (default true). */
  create?: boolean;
  /** `'truncate'` repairs an unclean tail and reports it; `'strict'` refuses such a file. */
  recovery?: 'truncate' | 'strict';
  /** Wait this long for another process's write lock before `LOCKED` (default 0: fail at once). */
  lockTimeoutMs?: number;
  /** Page size of a new file, a power of two from 16 KiB to 1 MiB (default 64 KiB). */
  pageSize?: number;
}

export type InMemoryOptions = Omit<OpenOptions, 'readOnly' | 'create' | 'recovery' | 'lockTimeoutMs'>;

export interface DatabaseStats extends StorageStats {
  memoryLimit: number;
}

const DEFAULT_MEMORY_LIMIT = 256 * 2 ** 20;

function checkOptions(opts: OpenOptions): void {
  const positive = (name: keyof OpenOptions, min: number) => {
    const v = opts[name];
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) {
      throw new ModelVaultError('VALIDATION', `${name} must be a number >= ${min}`, { path: name });
    }
  };
  positive('cacheSize', 0);
  positive('memoryLimit', 0);
  positive('lockTimeoutMs', 0);
  positive('pageSize', 0);
  if (opts.recovery !== undefined && opts.recovery !== 'truncate' && opts.recovery !== 'strict') {
    throw new ModelVaultError('VALIDATION', `recovery must be 'truncate' or 'strict'`, { path: 'recovery' });
  }
}

export class Database implements AsyncDisposable {
  private constructor(
    /** @internal The storage engine; collections and queries are built over it. */
    readonly engine: StorageEngine,
    readonly memoryLimit: number,
  ) {}

  /**
   * Opens (or creates) a `.modelvault` file.
   * @example const db = await Database.open('app.modelvault', { cacheSize: 64 * 2 ** 20 });
   */
  static async open(path: string, opts: OpenOptions = {}): Promise<Database> {
    if (typeof path !== 'string' || path.length === 0) {
      throw new ModelVaultError('VALIDATION', 'path must be a non-empty string', { path: 'path' });
    }
    checkOptions(opts);
    const engine = await StorageEngine.open(path, opts);
    return new Database(engine, opts.memoryLimit ?? DEFAULT_MEMORY_LIMIT);
  }

  /**
   * A database held in memory: the same engine over a growable buffer.
   * @example const db = await Database.openInMemory({ memoryLimit: 32 * 2 ** 20 });
   */
  static async openInMemory(opts: InMemoryOptions = {}): Promise<Database> {
    checkOptions(opts);
    return new Database(await StorageEngine.openMemory(opts), opts.memoryLimit ?? DEFAULT_MEMORY_LIMIT);
  }

  /**
   * An in-memory database from the bytes of a `.modelvault` file (or of `snapshotBytes()`).
   * @example const copy = await Database.openSnapshotBytes(await db.snapshotBytes());
   */
  static async openSnapshotBytes(image: Uint8Array, opts: InMemoryOptions = {}): Promise<Database> {
    if (!(image instanceof Uint8Array)) throw new ModelVaultError('VALIDATION', 'image must be a Uint8Array', { path: 'image' });
    checkOptions(opts);
    if (image.byteLength === 0) throw new ModelVaultError('NOT_A_DATABASE', 'the image is empty');
    return new Database(await StorageEngine.openMemory(opts, image), opts.memoryLimit ?? DEFAULT_MEMORY_LIMIT);
  }

  /** What open repaired (`{ truncatedBytes, reason }`), or null when the file was clean. */
  get recoveryInfo(): RecoveryInfo | null {
    return this.engine.recoveryInfo;
  }

  /**
   * The last committed state as the bytes of a valid `.modelvault` file.
   * @example await fs.writeFile('copy.modelvault', await db.snapshotBytes());
   */
  snapshotBytes(): Promise<Uint8Array> {
    return this.engine.snapshotBytes();
  }

  /**
   * Reads every reachable page, checks every checksum and tree invariant.
   * @example const report = await db.verify(); if (!report.ok) console.error(report.problems);
   */
  verify(): Promise<VerifyReport> {
    return this.engine.verify();
  }

  /**
   * Rewrites the live data without free space; the file shrinks.
   * @example const { bytesBefore, bytesAfter } = await db.compact();
   */
  compact(): Promise<{ bytesBefore: number; bytesAfter: number }> {
    return this.engine.compact();
  }

  /**
   * A consistent online copy of the committed state.
   * @example await db.backup('copy.modelvault');
   */
  backup(dest: string): Promise<{ bytes: number }> {
    if (typeof dest !== 'string' || dest.length === 0) {
      return Promise.reject(new ModelVaultError('VALIDATION', 'backup destination must be a non-empty path', { path: 'dest' }));
    }
    return this.engine.backup(dest);
  }

  /**
   * File, cache, spill and commit counters.
   * @example db.stats().cache.hits
   */
  stats(): DatabaseStats {
    return { ...this.engine.stats(), memoryLimit: this.memoryLimit };
  }

  /**
   * Waits for running writes, then closes the file and releases the lock.
   * @example await db.close();
   */
  close(): Promise<void> {
    return this.engine.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
