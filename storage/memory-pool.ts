// Per-query memory budget. Buffering operators (sort, aggregate, join build side) reserve
// bytes as they buffer and spill when a reservation is refused; streaming operators reserve
// nothing. The budget is honoured: tryGrow never lets the total pass the limit.
import { ModelVaultError } from './errors.js';

export class MemoryPool {
  private reserved = 0;
  peakBytes = 0;

  constructor(readonly limitBytes: number) {}

  get reservedBytes(): number { return this.reserved; }

  reserve(label: string): Reservation {
    return new Reservation(this, label);
  }

  /** @internal */
  tryAdd(bytes: number): boolean {
    if (this.reserved + bytes > this.limitBytes) return false;
    this.reserved += bytes;
    if (this.reserved > this.peakBytes) this.peakBytes = this.reserved;
    return true;
  }

  /** @internal */
  release(bytes: number): void {
    this.reserved -= bytes;
  }
}

/** One operator's share of the pool. Dispose it (or `using`) to give everything back. */
export class Reservation implements Disposable {
  private bytes = 0;
  peakBytes = 0;

  constructor(private readonly pool: MemoryPool, readonly label: string) {}

  get size(): number { return this.bytes; }

  /** Reserves more, or returns false when the pool cannot give it (time to spill). */
  tryGrow(bytes: number): boolean {
    if (!this.pool.tryAdd(bytes)) return false;
    this.bytes += bytes;
    if (this.bytes > this.peakBytes) this.peakBytes = this.bytes;
    return true;
  }

  /** Reserves more or fails: for memory an operator cannot do without. */
  grow(bytes: number): void {
    if (!this.tryGrow(bytes)) {
      throw new ModelVaultError('ABORTED', `${this.label} needs ${bytes} more bytes than memoryLimit ${this.pool.limitBytes} allows (${this.pool.reservedBytes} reserved); raise memoryLimit`, { label: this.label, memoryLimit: this.pool.limitBytes });
    }
  }

  shrink(bytes: number): void {
    const n = Math.min(bytes, this.bytes);
    this.bytes -= n;
    this.pool.release(n);
  }

  free(): void {
    this.shrink(this.bytes);
  }

  [Symbol.dispose](): void {
    this.free();
  }
}
