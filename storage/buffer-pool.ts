// The buffer pool: verified pages (and what the B+tree decoded from them) keyed by page
// number, bounded by `cacheSize` bytes through lru-cache. Committed pages are immutable, so a
// clean page can be evicted at any time; a transaction's unwritten pages never live here.
//
// Page buffers are recycled: a buffer leaving the pool goes to the next page read instead of
// to the garbage collector (a fresh 64 KiB buffer costs page faults, and a stream of them
// costs GC pauses). Whoever was handed the page before may still read it, though — a scan's
// leaf views, a cell being decoded — so a buffer is reused only after every reader that was
// running when it left the pool has finished (a grace period, as in RCU). Until then it waits
// in quarantine. Readers are the pinned snapshots and the write transaction; synchronous
// unpinned reads (point gets) finish before anything else runs, so they need no grace.
//
// Invariants:
// (1) A buffer is handed out for reuse only when no reader that began before it left the
//     pool is still running.
// (2) Buffers waiting or spare never exceed a sixteenth of cacheSize (at least 16); the rest go to the GC.
import { LRUCache } from 'lru-cache';
import { alignedBufferUnsafe } from './block-store.js';
import type { PageInfo } from './page.js';

export interface CachedPage {
  readonly bytes: Uint8Array;
  readonly info: PageInfo;
  /** Whatever the layer above decoded from the page, kept with it so a hit skips decoding. */
  decoded?: unknown;
}

export interface CacheStats {
  hits: number;
  misses: number;
  /** Bytes read from the store into the pool. */
  bytesRead: number;
  /** Bytes the pool holds now. */
  bytes: number;
  maxBytes: number;
  /** Page reads that reused a buffer that had left the pool. */
  buffersReused: number;
}

const ENTRY_OVERHEAD_BYTES = 256;

export class BufferPool {
  private readonly cache: LRUCache<number, CachedPage>;
  hits = 0;
  misses = 0;
  bytesRead = 0;
  buffersReused = 0;
  /** Buffers that left the pool, with the reader clock at that moment, oldest first. */
  private readonly quarantine: { buffer: Buffer; clock: number }[] = [];
  private readonly spare: Buffer[] = [];
  private readonly maxRecycled: number;
  /** Start clock of every running reader; a Set iterates in insertion order, so the first is the oldest. */
  private readonly readers = new Set<number>();
  private clock = 0;

  constructor(readonly maxBytes: number, readonly pageSize: number) {
    this.cache = new LRUCache<number, CachedPage>({
      maxSize: Math.max(maxBytes, 1 << 20),
      sizeCalculation: (entry) => entry.bytes.byteLength + ENTRY_OVERHEAD_BYTES,
      dispose: (entry) => this.retire(entry.bytes),
    });
    this.maxRecycled = Math.max(16, Math.floor(Math.max(maxBytes, 1 << 20) / 16 / pageSize));
  }

  get(pageNo: number): CachedPage | undefined {
    const hit = this.cache.get(pageNo);
    if (hit) this.hits++;
    else this.misses++;
    return hit;
  }

  /** Looks without counting or touching recency (read-ahead planning). */
  has(pageNo: number): boolean {
    return this.cache.has(pageNo);
  }

  /** The bytes of pages the pool holds at most (cacheSize, and at least 1 MiB). */
  get capacityBytes(): number { return this.cache.maxSize; }

  /** Whether `pages` more pages of `pageSize` fit without evicting anything. */
  hasRoomFor(pages: number, pageSize: number): boolean {
    return this.cache.calculatedSize + pages * (pageSize + ENTRY_OVERHEAD_BYTES) <= this.cache.maxSize;
  }

  set(pageNo: number, entry: CachedPage): void {
    this.cache.set(pageNo, entry);
  }

  delete(pageNo: number): void {
    this.cache.delete(pageNo);
  }

  clear(): void {
    this.cache.clear();
  }

  /** A reader begins: buffers leaving the pool from now on wait for it. Returns its token for `endRead`. */
  beginRead(): number {
    const start = ++this.clock;
    this.readers.add(start);
    return start;
  }

  endRead(token: number): void {
    this.readers.delete(token);
  }

  /** A page-sized buffer for a page about to be read: a recycled one when any is free, else a new one. */
  pageBuffer(): Buffer {
    const oldest = this.readers.size === 0 ? Infinity : (this.readers.values().next().value as number);
    while (this.quarantine.length > 0 && this.quarantine[0].clock < oldest) this.spare.push(this.quarantine.shift()!.buffer);
    const reused = this.spare.pop();
    if (reused) {
      this.buffersReused++;
      return reused;
    }
    return alignedBufferUnsafe(this.pageSize);
  }

  private retire(bytes: Uint8Array): void {
    // Only whole page buffers the pool owns: never a view into a larger allocation.
    if (bytes.byteLength !== this.pageSize || bytes.byteOffset !== 0 || bytes.buffer.byteLength !== this.pageSize) return;
    if (this.quarantine.length + this.spare.length >= this.maxRecycled) return;
    const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, 0, bytes.byteLength);
    if (this.readers.size === 0) this.spare.push(buffer);
    else this.quarantine.push({ buffer, clock: this.clock });
  }

  stats(): CacheStats {
    return { hits: this.hits, misses: this.misses, bytesRead: this.bytesRead, bytes: this.cache.calculatedSize, maxBytes: this.maxBytes, buffersReused: this.buffersReused };
  }
}
