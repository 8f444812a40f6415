// Where a collection call runs: in its own autocommit transaction, or inside an open
// `db.transaction()`. A call made on a database-level collection from inside a transaction
// callback joins that transaction (found through AsyncLocalStorage) instead of queueing
// behind it, which would deadlock.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { EngineTxn, StorageEngine, TreeReader } from '../storage/engine.js';
import { ModelVaultError } from '../storage/errors.js';

export interface Scope {
  write<T>(fn: (etx: EngineTxn) => Promise<T>): Promise<T>;
  read<T>(fn: (reader: TreeReader) => Promise<T>): Promise<T>;
  /** A reader held across many pulls (a query); call release when done. */
  openReader(): { reader: TreeReader; release(): void };
  /**
   * A reader of the newest commit for code that finishes without awaiting (point gets), or
   * null where reads must queue (inside a transaction).
   */
  syncReader(): TreeReader | null;
}

const activeTxn = new AsyncLocalStorage<{ engine: StorageEngine; tx: TxScope }>();
/** Operations on one transaction run one at a time: a B+tree writer is not re-entrant. */
const opQueues = new WeakMap<EngineTxn, Promise<unknown>>();

function serialized<T>(etx: EngineTxn, fn: () => Promise<T>): Promise<T> {
  const prev = opQueues.get(etx) ?? Promise.resolve();
  const next = prev.then(fn, fn);
  opQueues.set(etx, next.catch(() => undefined));
  return next;
}

export class DatabaseScope implements Scope {
  constructor(private readonly engine: StorageEngine) {}

  write<T>(fn: (etx: EngineTxn) => Promise<T>): Promise<T> {
    const joined = activeTxn.getStore();
    if (joined && joined.engine === this.engine) return joined.tx.write(fn);
    return this.engine.write((etx) => fn(etx));
  }

  async read<T>(fn: (reader: TreeReader) => Promise<T>): Promise<T> {
    const joined = activeTxn.getStore();
    if (joined && joined.engine === this.engine) return joined.tx.read(fn);
    using snap = this.engine.snapshot();
    return await fn(snap);
  }

  openReader(): { reader: TreeReader; release(): void } {
    const joined = activeTxn.getStore();
    if (joined && joined.engine === this.engine) return joined.tx.openReader();
    const snap = this.engine.snapshot();
    return { reader: snap, release: () => snap.release() };
  }

  syncReader(): TreeReader | null {
    const joined = activeTxn.getStore();
    if (joined && joined.engine === this.engine) return null;
    return this.engine.latestSync();
  }
}

/**
 * Throws for a call that would wait for every writer to finish (a new transaction, compact,
 * close) when it is made from inside a transaction callback of the same database: it would
 * wait for the transaction it is part of, forever.
 */
export function refuseInsideTransaction(engine: StorageEngine, call: string, instead: string): void {
  const joined = activeTxn.getStore();
  if (joined && joined.engine === engine && joined.tx.isOpen) {
    throw new ModelVaultError('LOCKED', `${call} inside a db.transaction() callback of the same database would wait for that transaction forever; ${instead}`, { call });
  }
}

export class TxScope implements Scope {
  private closed = false;
  constructor(readonly engine: StorageEngine, readonly etx: EngineTxn) {}

  /** Until the callback's last operation has finished (a timer it set may fire later). */
  get isOpen(): boolean { return !this.closed; }

  write<T>(fn: (etx: EngineTxn) => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(closedError());
    return serialized(this.etx, () => {
      if (this.closed) throw closedError();
      return fn(this.etx);
    });
  }

  read<T>(fn: (reader: TreeReader) => Promise<T>): Promise<T> {
    return this.write(fn);
  }

  openReader(): { reader: TreeReader; release(): void } {
    if (this.closed) throw closedError();
    return { reader: this.etx, release: () => {} };
  }

  syncReader(): TreeReader | null {
    return null;
  }

  /** Runs the transaction callback with this scope visible to database-level calls. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    return activeTxn.run({ engine: this.engine, tx: this }, fn);
  }

  /** Waits for operations still running, then refuses new ones. */
  async close(): Promise<void> {
    await (opQueues.get(this.etx) ?? Promise.resolve());
    this.closed = true;
  }
}

const closedError = () => new ModelVaultError('TRANSACTION_CLOSED', 'the transaction has ended; use the collection outside it or start a new one');
