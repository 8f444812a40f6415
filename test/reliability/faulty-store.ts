// A BlockStore that wraps a real one (MemoryStore or FileStore) and misbehaves on purpose:
// the Nth write, sync, read or truncate fails with an EIO-like `ModelVaultError` code IO (what
// FileStore raises for an operating-system failure), or the Nth write lands only partly and
// then fails. It also models power loss: every write and truncate since the last completed
// sync is kept in a pending log, and `powerLoss()` gives the image the disk would hold if the
// power went out now (the durable image, updated at each completed sync), `powerLossSubset()`
// one where an arbitrary subset of the pending writes reached the platter.
//
// Calls are counted per kind from 1, including the calls that fail, so a clean run's counts
// say how many fault points a workload has.
import type { BlockStore } from '../../storage/block-store.js';
import { ioError } from '../../storage/errors.js';
import { MemoryStore } from '../../storage/memory-store.js';

export type IoKind = 'write' | 'sync' | 'read' | 'truncate';
export const IO_KINDS: readonly IoKind[] = ['write', 'sync', 'read', 'truncate'];

export interface FaultPlan {
  /** Which kind of call fails. */
  readonly kind: IoKind;
  /** The 1-based index of the call (among calls of that kind) that fails. */
  readonly at: number;
  /** For writes: write this many leading bytes (clamped below the length) before failing. */
  readonly shortBytes?: number;
  /**
   * 'transient' (default): only that call fails; 'sticky': that call and every later write,
   * truncate and sync fail too (a dead device, or a full disk).
   */
  readonly after?: 'transient' | 'sticky';
}

export type IoCounts = Record<IoKind, number>;

type PendingOp = { kind: 'write'; offset: number; data: Uint8Array } | { kind: 'truncate'; size: number };

const ERRNO = { write: 'write', sync: 'fsync', read: 'read', truncate: 'ftruncate' } as const;

/** An error shaped like the one Node gives for EIO, wrapped the way FileStore wraps it. */
function eio(kind: IoKind) {
  const sys = Object.assign(new Error(`EIO: i/o error, ${ERRNO[kind]}`), { code: 'EIO', errno: -5, syscall: ERRNO[kind] });
  return ioError(kind === 'sync' ? 'fsync' : kind, sys);
}

export class FaultyStore implements BlockStore {
  readonly counts: IoCounts = { write: 0, sync: 0, read: 0, truncate: 0 };
  /** Faults raised so far (0 or 1 for a transient plan; more for a sticky one). */
  faultsRaised = 0;
  /** Set once the planned fault has happened. */
  tripped = false;
  private plan: FaultPlan | null;
  private durable: MemoryStore;
  private pending: PendingOp[] = [];
  private closed = false;

  /**
   * `inner` must hold an image that is already durable (a fresh store, or a file that was
   * synced and closed); its bytes become the starting power-loss image.
   */
  constructor(readonly inner: BlockStore, plan: FaultPlan | null = null) {
    this.plan = plan;
    this.durable = new MemoryStore(inner.size() > 0 ? inner.readSync(0, inner.size()) : undefined);
  }

  get kind(): 'file' | 'memory' { return this.inner.kind; }

  /** Arms (or disarms, with null) a fault; counting goes on from where it is. */
  arm(plan: FaultPlan | null): void {
    this.plan = plan;
    this.tripped = false;
  }

  size(): number { return this.inner.size(); }

  /** While paused, calls pass through uncounted and never fail (checks made between workload steps). */
  paused = false;

  /** True when this call must fail; counts it. */
  private shouldFail(kind: IoKind): boolean {
    if (this.paused) return false;
    const n = ++this.counts[kind];
    const plan = this.plan;
    if (!plan) return false;
    if (this.tripped && plan.after === 'sticky' && kind !== 'read') {
      this.faultsRaised++;
      return true;
    }
    if (!this.tripped && plan.kind === kind && plan.at === n) {
      this.tripped = true;
      this.faultsRaised++;
      return true;
    }
    return false;
  }

  readSync(offset: number, length: number): Uint8Array {
    if (this.shouldFail('read')) throw eio('read');
    return this.inner.readSync(offset, length);
  }

  readIntoSync(offset: number, target: Uint8Array): void {
    if (this.shouldFail('read')) throw eio('read');
    this.inner.readIntoSync(offset, target);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (this.shouldFail('read')) throw eio('read');
    return this.inner.read(offset, length);
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    if (this.shouldFail('read')) throw eio('read');
    return this.inner.readInto(offset, target);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.shouldFail('write')) {
      const plan = this.plan!;
      if (plan.kind === 'write' && plan.shortBytes !== undefined && plan.at === this.counts.write) {
        // A torn write: a prefix reached the file, then the device failed.
        const n = Math.max(0, Math.min(plan.shortBytes, data.byteLength - 1));
        if (n > 0) {
          const prefix = Uint8Array.prototype.slice.call(data, 0, n);
          await this.inner.write(offset, prefix);
          this.pending.push({ kind: 'write', offset, data: prefix });
        }
      }
      throw eio('write');
    }
    await this.inner.write(offset, data);
    this.pending.push({ kind: 'write', offset, data: Uint8Array.prototype.slice.call(data) });
  }

  async sync(): Promise<void> {
    // A failed fsync promises nothing: the pending writes stay pending (a power loss may drop them).
    if (this.shouldFail('sync')) throw eio('sync');
    await this.inner.sync();
    for (const op of this.pending) await applyTo(this.durable, op);
    this.pending = [];
  }

  async truncate(size: number): Promise<void> {
    if (this.shouldFail('truncate')) throw eio('truncate');
    await this.inner.truncate(size);
    this.pending.push({ kind: 'truncate', size });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.inner.close();
  }

  /** Writes and truncates issued since the last completed sync. */
  get pendingOps(): number { return this.pending.length; }

  /** The file as it is now (every completed write applied, torn prefixes included). */
  currentImage(): Uint8Array {
    const n = this.inner.size();
    return n > 0 ? this.inner.readSync(0, n) : new Uint8Array(0);
  }

  /** The image after a power loss now: every write after the last completed sync is dropped. */
  powerLoss(): Uint8Array {
    return this.durable.copyBytes();
  }

  /**
   * A power loss where the disk had already written some of the pending operations, in any
   * order: those `keep(i)` selects are applied (in issue order) over the durable image.
   */
  async powerLossSubset(keep: (i: number) => boolean): Promise<Uint8Array> {
    const img = new MemoryStore(this.durable.copyBytes());
    for (let i = 0; i < this.pending.length; i++) if (keep(i)) await applyTo(img, this.pending[i]);
    return img.copyBytes();
  }
}

async function applyTo(store: MemoryStore, op: PendingOp): Promise<void> {
  if (op.kind === 'write') await store.write(op.offset, op.data);
  else await store.truncate(op.size);
}

/** A fresh FaultyStore over a memory copy of `image` (or an empty store). */
export function faultyMemoryStore(image?: Uint8Array, plan: FaultPlan | null = null): FaultyStore {
  return new FaultyStore(new MemoryStore(image && image.byteLength > 0 ? image : undefined), plan);
}
