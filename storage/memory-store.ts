import { alignedBuffer, type BlockStore } from './block-store.js';

/** A growable in-memory image; doubles its capacity so appends stay amortised O(1). */
export class MemoryStore implements BlockStore {
  readonly kind = 'memory' as const;
  private buf: Buffer;
  private length: number;

  constructor(initial?: Uint8Array) {
    this.length = initial?.byteLength ?? 0;
    this.buf = alignedBuffer(Math.max(1 << 16, this.length));
    if (initial) this.buf.set(initial, 0);
  }

  size(): number { return this.length; }

  readSync(offset: number, length: number): Uint8Array {
    const out = alignedBuffer(length);
    const end = Math.min(offset + length, this.length);
    if (end > offset) out.set(this.buf.subarray(offset, end), 0);
    return out;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    return this.readSync(offset, length);
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    this.readIntoSync(offset, target);
  }

  readIntoSync(offset: number, target: Uint8Array): void {
    const end = Math.min(offset + target.byteLength, this.length);
    const n = Math.max(0, end - offset);
    if (n > 0) target.set(this.buf.subarray(offset, end), 0);
    target.fill(0, n);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const end = offset + data.byteLength;
    this.ensureCapacity(end);
    this.buf.set(data, offset);
    if (end > this.length) this.length = end;
  }

  async sync(): Promise<void> {}

  async truncate(size: number): Promise<void> {
    this.ensureCapacity(size);
    if (size < this.length) this.buf.fill(0, size, this.length);
    this.length = size;
  }

  async close(): Promise<void> {}

  /** The first `length` bytes, copied. */
  copyBytes(length = this.length): Uint8Array {
    return Uint8Array.prototype.slice.call(this.buf, 0, length);
  }

  private ensureCapacity(bytes: number): void {
    if (bytes <= this.buf.byteLength) return;
    let cap = this.buf.byteLength;
    while (cap < bytes) cap *= 2;
    const next = alignedBuffer(cap);
    next.set(this.buf.subarray(0, this.length), 0);
    this.buf = next;
  }
}
