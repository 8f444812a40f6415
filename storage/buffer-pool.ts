// The buffer pool: verified pages (and what the B+tree decoded from them) keyed by page
// number, bounded by `cacheSize` bytes through lru-cache. Committed pages are immutable, so a
// clean page can be evicted at any time; a transaction's unwritten pages never live here.
import { LRUCache } from 'lru-cache';
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
}

const ENTRY_OVERHEAD_BYTES = 256;

export class BufferPool {
  private readonly cache: LRUCache<number, CachedPage>;
  hits = 0;
  misses = 0;
  bytesRead = 0;

  constructor(readonly maxBytes: number) {
    this.cache = new LRUCache<number, CachedPage>({
      maxSize: Math.max(maxBytes, 1 << 20),
      sizeCalculation: (entry) => entry.bytes.byteLength + ENTRY_OVERHEAD_BYTES,
    });
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

  stats(): CacheStats {
    return { hits: this.hits, misses: this.misses, bytesRead: this.bytesRead, bytes: this.cache.calculatedSize, maxBytes: this.maxBytes };
  }
}
