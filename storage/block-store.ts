// The byte device under everything: a file or a growable memory buffer. All layers above
// are shared, so the in-memory database is the same engine as the on-disk one.

export interface BlockStore {
  readonly kind: 'file' | 'memory';
  /** Current size in bytes. */
  size(): number;
  /** Reads exactly `length` bytes at `offset` into a fresh, 8-byte-aligned buffer; short reads past the end are zero-filled. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Reads `target.byteLength` bytes at `offset` into `target` (zero-filled past the end). */
  readInto(offset: number, target: Uint8Array): Promise<void>;
  /** Synchronous read for point lookups (2-12 µs on a warm page cache versus ~40 µs for a promise read). */
  readSync(offset: number, length: number): Uint8Array;
  /** Synchronous `readInto`. */
  readIntoSync(offset: number, target: Uint8Array): void;
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Makes every completed write durable. */
  sync(): Promise<void>;
  truncate(size: number): Promise<void>;
  close(): Promise<void>;
}

/** A zeroed buffer whose byteOffset is 0, so typed-array views of 8-byte-aligned page offsets work. */
export function alignedBuffer(length: number): Buffer {
  return Buffer.from(new ArrayBuffer(length));
}

/** Like alignedBuffer, but not zeroed: for reads that fill it (zeroing 1 MiB reads cost a third of a scan). */
export function alignedBufferUnsafe(length: number): Buffer {
  return Buffer.allocUnsafeSlow(length);
}
