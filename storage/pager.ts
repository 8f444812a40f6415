// The pager owns the file image: recovery at open, the buffer pool, page allocation and
// free space, reader snapshots, the single write transaction and its commit.
//
// Invariants:
// (1) A published superblock only points at pages written and synced before it.
// (2) A page is overwritten only when neither the last two superblocks nor any pinned
//     reader snapshot can reach it: pages freed by commit G wait in `pending` until no
//     reader older than G remains.
// (3) Every page below `pageCount` is reachable from the superblock or listed in its free
//     list; spill pages and a transaction's pages are free as far as the file is concerned.
// State: open → (writing → committing → open)* → closed;  a failed commit → failed (reads only).
import { BufferPool, type CachedPage, type CacheStats } from './buffer-pool.js';
import { alignedBuffer, alignedBufferUnsafe, type BlockStore } from './block-store.js';
import { ModelVaultError, corruptAt, ioError } from './errors.js';
import { FreeSpace, type PageRange } from './free-space.js';
import { PAGE_HEADER_BYTES, PageType, pageBody, sealPage, verifyPage, type PageInfo } from './page.js';
import {
  DEFAULT_PAGE_SIZE, FORMAT_VERSION, MAX_PAGE_SIZE, MIN_PAGE_SIZE, SUPERBLOCK_BYTES, SUPERBLOCK_OFFSETS,
  decodeHeader, decodeSuperblock, encodeHeader, encodeSuperblock, type Superblock,
} from './superblock.js';

export interface PagerOptions {
  cacheSize?: number;
  readOnly?: boolean;
  recovery?: 'truncate' | 'strict';
  /** Page size for a new file (power of two, 16 KiB–1 MiB); an existing file keeps its own. */
  pageSize?: number;
  /** Bytes of modified pages a write transaction keeps in memory before writing them out early. */
  maxDirtyBytes?: number;
}

export interface RecoveryInfo {
  truncatedBytes: number;
  reason: string;
}

/** A modified page held by a write transaction until it is written. */
export interface DirtyPage {
  readonly pageType: PageType;
  /** Writes the page body into `body` and returns its length. */
  encodeInto(body: Uint8Array): number;
}

/** A reader's pin on one committed state; pages it can reach are not reused until release. */
export class Snapshot implements Disposable {
  private released: boolean;
  constructor(
    private readonly pager: Pager,
    readonly generation: number,
    readonly catalogRoot: number,
    /** The buffer pool's reader token (pinned snapshots only): page buffers it may hold are not reused. */
    private readonly readToken = 0,
  ) {
    this.released = readToken === 0;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.pager.unpin(this.generation, this.readToken);
  }

  [Symbol.dispose](): void {
    this.release();
  }
}

const FREELIST_HEADER_BYTES = 8;
const MAX_READ_BYTES = 1 << 20;
/** A synchronous page read slower than this (µs, moving average) is taken for a disk read, not the page cache. */
const SLOW_SYNC_READ_US = 30;
/** Runs a prefetch reads at once (libuv runs four file reads in parallel by default). */
const PREFETCH_CONCURRENCY = 4;
/** Writes of up to this many pages also refresh the buffer pool (see writePages). */
const SMALL_WRITE_PAGES = 64;

export class Pager {
  readonly pool: BufferPool;
  recoveryInfo: RecoveryInfo | null = null;
  private committed: Superblock;
  /** Pages that may be allocated now. */
  private reusable = new FreeSpace();
  /** Pages freed by a commit, with that commit's generation, waiting for older readers to finish. */
  private pending: { generation: number; ranges: PageRange[] }[] = [];
  /** Pages of the committed free list itself; freed by the next commit that rewrites it. */
  private freeListPages: number[] = [];
  /** Spill runs in use: start → length. Free in the file's eyes, taken in memory. */
  private spillRuns = new Map<number, number>();
  /** One past the highest page handed out (committed, transaction or spill). */
  private highWater: number;
  private readers = new Map<number, number>();
  private writer: WriteTxn | null = null;
  private failure: Error | null = null;
  private closed = false;
  readonly stats = { commits: 0, pagesWritten: 0, bytesWritten: 0, spillPagesAllocated: 0 };

  private constructor(
    readonly store: BlockStore,
    readonly pageSize: number,
    readonly readOnly: boolean,
    sb: Superblock,
    readonly maxDirtyBytes: number,
    cacheSize: number,
  ) {
    this.committed = sb;
    this.highWater = sb.pageCount;
    this.pool = new BufferPool(cacheSize, pageSize);
  }

  /** Opens (or initialises, when empty) the image in `store`, recovering a torn tail. */
  static async open(store: BlockStore, opts: PagerOptions = {}): Promise<Pager> {
    const cacheSize = opts.cacheSize ?? 64 * 2 ** 20;
    const readOnly = opts.readOnly ?? false;
    // Large enough that index leaves touched at random stay in memory for a whole bulk load
    // (flushing them early rewrites each many times), small enough to stay within the cache budget.
    const maxDirtyBytes = opts.maxDirtyBytes ?? Math.max(4 << 20, Math.min(32 << 20, cacheSize / 2));
    if (store.size() === 0) {
      if (readOnly) throw new ModelVaultError('NOT_A_DATABASE', 'the file is empty');
      const pageSize = opts.pageSize ?? DEFAULT_PAGE_SIZE;
      if (pageSize < MIN_PAGE_SIZE || pageSize > MAX_PAGE_SIZE || (pageSize & (pageSize - 1)) !== 0) {
        throw new ModelVaultError('VALIDATION', `pageSize must be a power of two between ${MIN_PAGE_SIZE} and ${MAX_PAGE_SIZE}`, { path: 'pageSize' });
      }
      const sb: Superblock = { generation: 1, pageCount: 1, catalogRoot: 0, freeListRoot: 0, freePageCount: 0, committedAtMs: Date.now() };
      const first = alignedBuffer(pageSize);
      first.set(encodeHeader({ formatVersion: FORMAT_VERSION, pageSize }), 0);
      first.set(encodeSuperblock(sb), SUPERBLOCK_OFFSETS[1]);
      await store.write(0, first);
      await store.sync();
      return new Pager(store, pageSize, readOnly, sb, maxDirtyBytes, cacheSize);
    }

    const head = await store.read(0, SUPERBLOCK_OFFSETS[1] + SUPERBLOCK_BYTES);
    const header = decodeHeader(head);
    const size = store.size();
    const slots = SUPERBLOCK_OFFSETS.map((at) => decodeSuperblock(head.subarray(at, at + SUPERBLOCK_BYTES)));
    const candidates = slots
      .map((sb, slot) => ({ sb, slot }))
      .filter((c): c is { sb: Superblock; slot: number } => c.sb !== null)
      .sort((a, b) => b.sb.generation - a.sb.generation);
    const usable = candidates.find((c) => c.sb.pageCount * header.pageSize <= size);
    if (!usable) {
      throw new ModelVaultError('CORRUPT', candidates.length === 0
        ? 'no valid superblock: both copies fail their checksum'
        : 'the file is shorter than every superblock says', { offset: SUPERBLOCK_OFFSETS[0] });
    }
    const pager = new Pager(store, header.pageSize, readOnly, usable.sb, maxDirtyBytes, cacheSize);
    const tornCommit = candidates[0] !== usable;
    const tailBytes = size - usable.sb.pageCount * header.pageSize;
    if (tornCommit || tailBytes > 0) {
      const reason = tornCommit
        ? `the last commit (generation ${candidates[0].sb.generation}) was not completely written; reverted to generation ${usable.sb.generation}`
        : `${tailBytes} bytes past the last commit (an interrupted transaction or spill)`;
      if (opts.recovery === 'strict') {
        throw new ModelVaultError('CORRUPT', `unclean file: ${reason}`, { offset: usable.sb.pageCount * header.pageSize, reason });
      }
      pager.recoveryInfo = { truncatedBytes: readOnly ? 0 : tailBytes, reason };
      if (!readOnly) {
        if (tornCommit) {
          // Blank the unusable newer superblock: were the file to grow past its page count
          // again, it must not come back to life.
          await store.write(SUPERBLOCK_OFFSETS[candidates[0].slot], new Uint8Array(SUPERBLOCK_BYTES));
        }
        await store.truncate(usable.sb.pageCount * header.pageSize);
        await store.sync();
      }
    }
    // A damaged (non-blank, failing) superblock slot: a torn superblock write or bit rot. The
    // other slot's state is used; say so rather than fall back silently.
    const damaged = slots.findIndex((sb, i) => sb === null && head.subarray(SUPERBLOCK_OFFSETS[i], SUPERBLOCK_OFFSETS[i] + SUPERBLOCK_BYTES).some((b) => b !== 0));
    if (damaged >= 0 && !pager.recoveryInfo) {
      pager.recoveryInfo = { truncatedBytes: 0, reason: `superblock slot ${damaged} is damaged (a torn superblock write or corruption); opened generation ${usable.sb.generation} from the other slot` };
    }
    await pager.loadFreeList();
    return pager;
  }

  get generation(): number { return this.committed.generation; }
  get catalogRoot(): number { return this.committed.catalogRoot; }
  get pageCount(): number { return this.committed.pageCount; }
  get superblock(): Superblock { return this.committed; }
  get freePageCount(): number { return this.committed.freePageCount; }
  get isWriting(): boolean { return this.writer !== null; }

  cacheStats(): CacheStats { return this.pool.stats(); }

  // ── reading ────────────────────────────────────────────────────────────────

  /** A verified page through the buffer pool. */
  async readPage(pageNo: number, expect?: PageType): Promise<CachedPage> {
    if (this.closed) throw new ModelVaultError('CLOSED', 'the database is closed');
    const hit = this.pool.get(pageNo);
    if (hit) return checkType(hit, pageNo, this.pageSize, expect);
    this.assertReadable(pageNo);
    const bytes = this.pool.pageBuffer();
    await this.store.readInto(pageNo * this.pageSize, bytes);
    return this.admit(pageNo, bytes, expect);
  }

  /** Synchronous variant for point lookups: a pool hit costs no promise at all. */
  readPageSync(pageNo: number, expect?: PageType): CachedPage {
    if (this.closed) throw new ModelVaultError('CLOSED', 'the database is closed');
    const hit = this.pool.get(pageNo);
    if (hit) return checkType(hit, pageNo, this.pageSize, expect);
    this.assertReadable(pageNo);
    const bytes = this.pool.pageBuffer();
    this.readSyncTimed(pageNo, bytes);
    return this.admit(pageNo, bytes, expect);
  }

  /** A synchronous page read, timed for syncReadsAreFast. */
  private readSyncTimed(pageNo: number, target: Uint8Array): void {
    const t0 = performance.now();
    this.store.readIntoSync(pageNo * this.pageSize, target);
    this.syncReadUs += ((performance.now() - t0) * 1000 - this.syncReadUs) / 16;
  }

  /**
   * Reads a page synchronously into the caller's `target` (reused between calls), verified but
   * not cached: what scattered reads use once the pool is full, so a stream of misses neither
   * evicts the pool's pages nor allocates a buffer each.
   */
  readPageAroundSync(pageNo: number, target: Buffer, expect?: PageType): PageInfo {
    this.assertReadable(pageNo);
    this.pool.misses++;
    this.pool.bytesRead += this.pageSize;
    const bytes = target.subarray(0, this.pageSize);
    this.readSyncTimed(pageNo, bytes);
    return this.verifyRead(bytes, pageNo, expect);
  }

  /**
   * Whether scattered pages are best read one synchronous read at a time. From the OS page
   * cache a synchronous read of a page takes 3–10 µs here, a promise read ~40 µs of round trip
   * to the I/O threads (~10 µs each with four in flight); from a disk the synchronous read
   * waits for the device while the event loop stands still, and reads in flight overlap.
   * Judged from the recent synchronous reads.
   */
  get syncReadsAreFast(): boolean {
    return this.syncReadUs < SLOW_SYNC_READ_US;
  }

  /**
   * Reads ahead: pages not in the pool are fetched with one large read per run of
   * consecutive page numbers (up to 1 MiB), verified, and put in the pool.
   */
  async prefetch(pageNos: readonly number[]): Promise<void> {
    this.assertOpen();
    const missing = pageNos.filter((p) => !this.pool.has(p) && p > 0 && p < this.highWater).sort((a, b) => a - b);
    const maxPages = Math.max(1, Math.floor(MAX_READ_BYTES / this.pageSize));
    const runs: [start: number, count: number][] = [];
    for (let i = 0; i < missing.length;) {
      let j = i + 1;
      while (j < missing.length && missing[j] === missing[j - 1] + 1 && j - i < maxPages) j++;
      runs.push([missing[i], j - i]);
      i = j;
    }
    // A few runs are read at once: scattered pages (an index fetch) then cost about one round
    // trip to the I/O threads together instead of one each.
    let next = 0;
    const reader = async () => {
      while (next < runs.length) {
        const [start, count] = runs[next++];
        await this.readRunIntoPool(start, count, maxPages);
      }
    };
    const results = await Promise.allSettled(Array.from({ length: Math.min(PREFETCH_CONCURRENCY, runs.length) }, reader));
    const failure = results.find((r) => r.status === 'rejected');
    if (failure) throw (failure as PromiseRejectedResult).reason;
  }

  private async readRunIntoPool(start: number, count: number, maxPages: number): Promise<void> {
    if (count === 1) {
      const page = this.pool.pageBuffer();
      await this.store.readInto(start * this.pageSize, page);
      if (!this.pool.has(start)) this.admit(start, page);
      return;
    }
    // Longer runs go through reusable scratch buffers (one per concurrent read), so a long scan
    // leaves no 1 MiB buffers behind for the GC: RSS stays near cacheSize.
    const scratch = this.scratch.pop() ?? alignedBufferUnsafe(maxPages * this.pageSize);
    try {
      const bytes = scratch.subarray(0, count * this.pageSize);
      await this.store.readInto(start * this.pageSize, bytes);
      for (let k = 0; k < count; k++) {
        if (this.pool.has(start + k)) continue;
        // Each page gets its own buffer: a view would keep the whole 1 MiB read alive while the
        // pool counts only one page of it, and RSS would outgrow cacheSize.
        const page = this.pool.pageBuffer();
        page.set(bytes.subarray(k * this.pageSize, (k + 1) * this.pageSize));
        this.admit(start + k, page);
      }
    } finally {
      this.scratch.push(scratch);
    }
  }

  private readonly scratch: Buffer[] = [];
  /** Moving average of synchronous page read times, in µs (see syncReadsAreFast). */
  private syncReadUs = 0;

  /**
   * Reads `count` consecutive pages into the caller's `target` (reused between calls),
   * verified but not cached: what long scans use once the pool is full, so they neither evict
   * its pages nor leave a buffer per page behind for the GC.
   */
  async readRunInto(start: number, count: number, target: Buffer, expect: PageType): Promise<PageInfo[]> {
    this.assertReadable(start);
    this.assertReadable(start + count - 1);
    const bytes = target.subarray(0, count * this.pageSize);
    await this.store.readInto(start * this.pageSize, bytes);
    this.pool.bytesRead += bytes.byteLength;
    const infos: PageInfo[] = [];
    for (let k = 0; k < count; k++) {
      infos.push(this.verifyRead(bytes.subarray(k * this.pageSize, (k + 1) * this.pageSize), start + k, expect));
    }
    return infos;
  }

  /** Reads `count` consecutive pages without caching them (overflow values, spill runs). */
  async readRun(start: number, count: number, expect: PageType): Promise<Uint8Array[]> {
    this.assertReadable(start);
    this.assertReadable(start + count - 1);
    return this.runBodies(await this.store.read(start * this.pageSize, count * this.pageSize), start, count, expect);
  }

  /** Synchronous `readRun`, for the rare overflow value met on a synchronous path. */
  readRunSync(start: number, count: number, expect: PageType): Uint8Array[] {
    this.assertReadable(start);
    this.assertReadable(start + count - 1);
    return this.runBodies(this.store.readSync(start * this.pageSize, count * this.pageSize), start, count, expect);
  }

  /** Verifies each page of a run read in one piece and returns their bodies. */
  private runBodies(bytes: Uint8Array, start: number, count: number, expect: PageType): Uint8Array[] {
    this.pool.bytesRead += bytes.byteLength;
    const bodies: Uint8Array[] = [];
    for (let k = 0; k < count; k++) {
      const page = bytes.subarray(k * this.pageSize, (k + 1) * this.pageSize);
      bodies.push(pageBody(page, this.verifyRead(page, start + k, expect)));
    }
    return bodies;
  }

  /**
   * verifyPage, except that a read-only open whose file another process has committed to
   * since (a newer superblock on disk) reports the failure as ABORTED: the page may have been
   * reused and been half-written while we read it, which is not corruption.
   */
  private verifyRead(bytes: Uint8Array, pageNo: number, expect?: PageType): PageInfo {
    try {
      return verifyPage(bytes, pageNo, pageNo * this.pageSize, expect);
    } catch (err) {
      if (this.readOnly && err instanceof ModelVaultError && err.code === 'CORRUPT') {
        const newest = this.newestGenerationOnDisk();
        if (newest > this.committed.generation) {
          throw new ModelVaultError('ABORTED', `the file was changed by another process during this read (page ${pageNo} was being rewritten; the file is at generation ${newest}, this open at ${this.committed.generation}); reopen to read the new state`, { pageNo, generation: newest }, { cause: err });
        }
      }
      throw err;
    }
  }

  private newestGenerationOnDisk(): number {
    try {
      const head = this.store.readSync(0, SUPERBLOCK_OFFSETS[1] + SUPERBLOCK_BYTES);
      let newest = -1;
      for (const at of SUPERBLOCK_OFFSETS) newest = Math.max(newest, decodeSuperblock(head.subarray(at, at + SUPERBLOCK_BYTES))?.generation ?? -1);
      return newest;
    } catch {
      return -1;
    }
  }

  private admit(pageNo: number, bytes: Uint8Array, expect?: PageType): CachedPage {
    this.pool.bytesRead += bytes.byteLength;
    const info = this.verifyRead(bytes, pageNo, expect);
    const entry: CachedPage = { bytes, info };
    this.pool.set(pageNo, entry);
    return entry;
  }

  private assertReadable(pageNo: number): void {
    if (this.closed) throw new ModelVaultError('CLOSED', 'the database is closed');
    if (!Number.isInteger(pageNo) || pageNo < 1 || pageNo >= this.highWater) {
      throw corruptAt(pageNo * this.pageSize, `reference to page ${pageNo}, outside the file's ${this.highWater} pages`, { pageNo });
    }
  }

  // ── snapshots ──────────────────────────────────────────────────────────────

  /** Pins the last committed state for a reader. */
  pinSnapshot(): Snapshot {
    this.assertOpen();
    const gen = this.committed.generation;
    this.readers.set(gen, (this.readers.get(gen) ?? 0) + 1);
    return new Snapshot(this, gen, this.committed.catalogRoot, this.pool.beginRead());
  }

  /**
   * The newest commit without a pin, for reads that finish without yielding: no commit and no
   * page reuse can happen while synchronous code runs, so nothing it reaches can change.
   */
  latestUnpinned(): Snapshot {
    this.assertOpen();
    return new Snapshot(this, this.committed.generation, this.committed.catalogRoot);
  }

  /** @internal */
  unpin(generation: number, readToken: number): void {
    this.pool.endRead(readToken);
    const n = (this.readers.get(generation) ?? 0) - 1;
    if (n > 0) this.readers.set(generation, n);
    else this.readers.delete(generation);
    this.reclaim();
  }

  get pinnedSnapshots(): number {
    let n = 0;
    for (const c of this.readers.values()) n += c;
    return n;
  }

  /** Moves freed pages that no pinned reader can reach any more into the reusable set. */
  private reclaim(): void {
    let oldest = Infinity;
    for (const gen of this.readers.keys()) oldest = Math.min(oldest, gen);
    while (this.pending.length > 0 && this.pending[0].generation <= oldest) {
      this.reusable.addAll(this.pending.shift()!.ranges);
    }
  }

  // ── writing ────────────────────────────────────────────────────────────────

  /** Starts the single write transaction; the caller queues writers above this. */
  beginWrite(): WriteTxn {
    this.assertOpen();
    if (this.readOnly) throw new ModelVaultError('READ_ONLY', 'the database was opened read-only');
    if (this.failure) {
      throw new ModelVaultError('IO', 'an earlier commit failed; reopen the database to continue writing', {}, { cause: this.failure });
    }
    if (this.writer) throw new Error('internal: a write transaction is already active');
    this.reclaim();
    this.writer = new WriteTxn(this, this.committed.generation + 1, this.committed.catalogRoot, this.pool.beginRead());
    return this.writer;
  }

  /** @internal One page for a transaction: reused free space first, then the file's tail. */
  allocatePage(): number {
    const page = this.reusable.takeOne();
    if (page >= 0) return page;
    return this.highWater++;
  }

  /** @internal `count` contiguous pages. */
  allocateRun(count: number): number {
    if (count === 1) return this.allocatePage();
    const start = this.reusable.takeRun(count);
    if (start >= 0) return start;
    // Extend from the tail, absorbing a free range that already ends there.
    const tail = this.reusable.takeRangeEndingAt(this.highWater);
    const begin = tail ? tail[0] : this.highWater;
    this.highWater = begin + count;
    return begin;
  }

  /** @internal Returns pages a transaction allocated and no longer needs (never written into a commit). */
  releaseUncommitted(start: number, count = 1): void {
    this.reusable.add(start, count);
    for (let p = start; p < start + count; p++) this.pool.delete(p);
  }

  /** @internal Writes sealed pages, coalescing consecutive page numbers into large writes. */
  async writePages(pages: Map<number, DirtyPage>, generation: number): Promise<void> {
    const order = [...pages.keys()].sort((a, b) => a - b);
    const maxPages = Math.max(1, Math.floor(MAX_READ_BYTES / this.pageSize));
    // Small writes (a commit's few pages) go to the pool too: they are likely read again. A
    // flush of a big transaction only invalidates, so it does not churn the pool's buffers.
    const keepInPool = order.length <= SMALL_WRITE_PAGES;
    // One run buffer, reused: each run is written before the next is encoded.
    const run = alignedBufferUnsafe(Math.min(order.length, maxPages) * this.pageSize);
    for (let i = 0; i < order.length;) {
      let j = i + 1;
      while (j < order.length && order[j] === order[j - 1] + 1 && j - i < maxPages) j++;
      const buf = run.subarray(0, (j - i) * this.pageSize);
      for (let k = i; k < j; k++) {
        const pageNo = order[k];
        const page = buf.subarray((k - i) * this.pageSize, (k - i + 1) * this.pageSize);
        const node = pages.get(pageNo)!;
        const bodyLength = node.encodeInto(page.subarray(PAGE_HEADER_BYTES));
        page.fill(0, PAGE_HEADER_BYTES + bodyLength); // no stale bytes of an earlier run in the file
        sealPage(page, node.pageType, pageNo, generation, bodyLength);
        // A reused page number must never serve its old content from the pool.
        if (keepInPool) {
          const copy = this.pool.pageBuffer(); // own buffer: a view would pin the run buffer
          copy.set(page);
          this.pool.set(pageNo, { bytes: copy, info: { type: node.pageType, pageNo, generation, bodyLength } });
        } else {
          this.pool.delete(pageNo);
        }
      }
      await this.store.write(order[i] * this.pageSize, buf);
      this.stats.pagesWritten += j - i;
      this.stats.bytesWritten += buf.byteLength;
      i = j;
    }
  }

  /** @internal Writes raw sealed page images (overflow values) at `start`. */
  async writeRaw(start: number, image: Uint8Array): Promise<void> {
    for (let p = start; p < start + image.byteLength / this.pageSize; p++) this.pool.delete(p);
    await this.store.write(start * this.pageSize, image);
    this.stats.pagesWritten += image.byteLength / this.pageSize;
    this.stats.bytesWritten += image.byteLength;
  }

  /** @internal Publishes a transaction: free list, sync, superblock, sync. */
  async commit(txn: WriteTxn): Promise<void> {
    try {
      await txn.flushDirty();
      // The free list this commit publishes: everything not reachable from the new roots.
      const freed = txn.freedRanges();
      for (const p of this.freeListPages) freed.add(p);
      const everythingFree = (): FreeSpace => {
        const all = this.reusable.clone();
        for (const entry of this.pending) all.addAll(entry.ranges);
        all.addAll(freed.ranges());
        for (const [start, len] of this.spillRuns) all.add(start, len);
        return all;
      };
      const perPage = Math.floor((this.pageSize - PAGE_HEADER_BYTES - FREELIST_HEADER_BYTES) / 8);
      const all = everythingFree();
      // A page taken for the list can split a range of `all` (a reusable page between pages this
      // commit freed), adding a range: recount after each page taken.
      const listPages: number[] = [];
      while (listPages.length < Math.ceil(all.rangeCount / perPage)) {
        const p = this.reusable.takeLast();
        if (p >= 0) all.remove(p);
        listPages.push(p >= 0 ? p : this.highWater++);
      }
      const ranges = all.ranges();
      const listImages = new Map<number, DirtyPage>();
      listPages.forEach((pageNo, i) => {
        const chunk = ranges.slice(i * perPage, (i + 1) * perPage);
        listImages.set(pageNo, new FreeListPage(listPages[i + 1] ?? 0, chunk));
      });
      await this.writePages(listImages, txn.generation);
      const pageCount = this.highWater;
      if (this.store.size() < pageCount * this.pageSize) await this.store.truncate(pageCount * this.pageSize);
      await this.store.sync();

      const sb: Superblock = {
        generation: txn.generation,
        pageCount,
        catalogRoot: txn.catalogRoot,
        freeListRoot: listPages[0] ?? 0,
        freePageCount: all.pageCount,
        committedAtMs: Date.now(),
      };
      await this.store.write(SUPERBLOCK_OFFSETS[sb.generation % 2], encodeSuperblock(sb));
      await this.store.sync();

      this.committed = sb;
      this.freeListPages = listPages;
      this.pending.push({ generation: sb.generation, ranges: freed.ranges() });
      this.stats.commits++;
    } catch (err) {
      // The in-memory allocator may no longer match the file: refuse further writes until reopen.
      this.failure = err as Error;
      throw err instanceof ModelVaultError ? err : ioError('commit', err);
    } finally {
      this.endWrite(txn);
    }
  }

  private endWrite(txn: WriteTxn): void {
    this.writer = null;
    this.pool.endRead(txn.readToken);
    this.reclaim();
  }

  /** @internal */
  rollback(txn: WriteTxn): void {
    for (const [start, len] of txn.allocatedRanges()) this.releaseUncommitted(start, len);
    // Pages the transaction freed stay where they were: still reachable from the committed roots.
    this.endWrite(txn);
  }

  // ── spill space ────────────────────────────────────────────────────────────

  /** Takes `count` contiguous pages for temporary data; free in the file's eyes. */
  allocateSpill(count: number): number {
    this.assertOpen();
    if (this.readOnly) throw new ModelVaultError('READ_ONLY', 'spilling needs a writable database; raise memoryLimit for read-only opens');
    this.reclaim();
    const start = this.allocateRun(count);
    this.spillRuns.set(start, count);
    this.stats.spillPagesAllocated += count;
    return start;
  }

  releaseSpill(start: number): void {
    const count = this.spillRuns.get(start);
    if (count === undefined) return;
    this.spillRuns.delete(start);
    this.reusable.add(start, count);
  }

  get spillPagesInUse(): number {
    let n = 0;
    for (const len of this.spillRuns.values()) n += len;
    return n;
  }

  // ── whole-image operations ─────────────────────────────────────────────────

  /**
   * The committed image as file bytes, produced chunk by chunk under a snapshot pin (so the
   * pages cannot be reused while they are copied). The superblock goes in slot `generation % 2`,
   * where its commit put it, and the other slot is blank: the image's next commit then writes
   * the blank slot, so a torn superblock write cannot destroy the only valid superblock.
   */
  async *committedImage(chunkBytes = 4 << 20): AsyncGenerator<Uint8Array> {
    using snap = this.pinSnapshot();
    const sb = this.committed.generation === snap.generation ? this.committed : null;
    if (!sb) throw new Error('internal: snapshot moved');
    const total = sb.pageCount * this.pageSize;
    const chunk = Math.max(this.pageSize, Math.floor(chunkBytes / this.pageSize) * this.pageSize);
    for (let offset = 0; offset < total; offset += chunk) {
      const bytes = await this.store.read(offset, Math.min(chunk, total - offset));
      if (offset === 0) {
        bytes.fill(0, SUPERBLOCK_OFFSETS[0], SUPERBLOCK_OFFSETS[1] + SUPERBLOCK_BYTES);
        bytes.set(encodeSuperblock(sb), SUPERBLOCK_OFFSETS[sb.generation % 2]);
      }
      yield bytes;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      // A clean close leaves no tail: spill or aborted pages past the committed image go.
      if (!this.readOnly && !this.failure && this.store.size() > this.committed.pageCount * this.pageSize) {
        await this.store.truncate(this.committed.pageCount * this.pageSize);
      }
    } finally {
      this.pool.clear();
      await this.store.close();
    }
  }

  get isClosed(): boolean { return this.closed; }

  private assertOpen(): void {
    if (this.closed) throw new ModelVaultError('CLOSED', 'the database is closed');
  }

  /** Reads the committed free list; every listed page is reusable (no reader exists yet). */
  private async loadFreeList(): Promise<void> {
    const seen = new Set<number>();
    let pageNo = this.committed.freeListRoot;
    while (pageNo !== 0) {
      if (seen.has(pageNo)) throw corruptAt(pageNo * this.pageSize, 'the free list loops');
      seen.add(pageNo);
      const page = await this.readPage(pageNo, PageType.FreeList);
      const body = pageBody(page.bytes, page.info);
      const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
      if (body.byteLength < FREELIST_HEADER_BYTES) throw corruptAt(pageNo * this.pageSize, 'free-list page too short');
      const next = view.getUint32(0, true);
      const count = view.getUint32(4, true);
      if (FREELIST_HEADER_BYTES + count * 8 > body.byteLength) throw corruptAt(pageNo * this.pageSize, `free-list page claims ${count} ranges`);
      for (let i = 0; i < count; i++) {
        const start = view.getUint32(FREELIST_HEADER_BYTES + i * 8, true);
        const len = view.getUint32(FREELIST_HEADER_BYTES + i * 8 + 4, true);
        if (start < 1 || len < 1 || start + len > this.committed.pageCount) {
          throw corruptAt(pageNo * this.pageSize, `free-list range [${start}, +${len}) lies outside the file`);
        }
        try {
          this.reusable.add(start, len);
        } catch {
          throw corruptAt(pageNo * this.pageSize, `free-list range [${start}, +${len}) overlaps another`);
        }
      }
      pageNo = next;
    }
    this.freeListPages = [...seen];
    this.pool.clear(); // free-list pages are rewritten by the next commit; keep the pool for data
  }

  /** @internal Free-list page numbers of the committed state (for verify). */
  committedFreeListPages(): readonly number[] { return this.freeListPages; }
}

function checkType(entry: CachedPage, pageNo: number, pageSize: number, expect?: PageType): CachedPage {
  if (expect !== undefined && entry.info.type !== expect) {
    throw corruptAt(pageNo * pageSize, `page ${pageNo} has type ${entry.info.type}, expected ${expect}`, { pageNo });
  }
  return entry;
}

class FreeListPage implements DirtyPage {
  readonly pageType = PageType.FreeList;
  constructor(private readonly next: number, private readonly ranges: readonly PageRange[]) {}
  encodeInto(body: Uint8Array): number {
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    view.setUint32(0, this.next, true);
    view.setUint32(4, this.ranges.length, true);
    this.ranges.forEach(([start, len], i) => {
      view.setUint32(FREELIST_HEADER_BYTES + i * 8, start, true);
      view.setUint32(FREELIST_HEADER_BYTES + i * 8 + 4, len, true);
    });
    return FREELIST_HEADER_BYTES + this.ranges.length * 8;
  }
}

/**
 * The one write transaction. Modified pages stay in `dirty` until the budget is exceeded,
 * then go to their (unreachable) page numbers in the file, so a transaction larger than
 * memory works; nothing is reachable until the superblock flips.
 */
export class WriteTxn {
  private readonly dirty = new Map<number, DirtyPage>();
  private readonly owned = new FreeSpace();
  private readonly freed = new FreeSpace();
  private state: 'active' | 'committing' | 'done' = 'active';

  constructor(
    readonly pager: Pager,
    readonly generation: number,
    public catalogRoot: number,
    /** The buffer pool's reader token: the transaction reads committed pages too. */
    readonly readToken: number,
  ) {}

  get isActive(): boolean { return this.state === 'active'; }

  /** True when the page was allocated by this transaction and so may be modified in place. */
  owns(pageNo: number): boolean {
    return this.owned.has(pageNo);
  }

  allocatePage(): number {
    this.assertActive();
    const page = this.pager.allocatePage();
    this.owned.add(page, 1);
    return page;
  }

  allocateRun(count: number): number {
    this.assertActive();
    const start = this.pager.allocateRun(count);
    this.owned.add(start, count);
    return start;
  }

  /** Marks a page unreachable from the new state. Own pages go straight back to the allocator. */
  freePage(pageNo: number, count = 1): void {
    this.assertActive();
    for (let p = pageNo; p < pageNo + count; p++) {
      this.dirty.delete(p);
      if (this.owned.has(p)) {
        this.owned.remove(p);
        this.pager.releaseUncommitted(p);
      } else {
        this.freed.add(p, 1);
      }
    }
  }

  getDirty(pageNo: number): DirtyPage | undefined {
    return this.dirty.get(pageNo);
  }

  setDirty(pageNo: number, page: DirtyPage): void {
    this.assertActive();
    if (!this.owned.has(pageNo)) throw new Error(`internal: page ${pageNo} is not the transaction's own`);
    this.dirty.set(pageNo, page);
  }

  get dirtyPageCount(): number { return this.dirty.size; }

  /** Writes modified pages out early when they exceed the budget; call between tree operations. */
  /** Whether modified pages are over the budget (then `maybeFlush` writes them). */
  get needsFlush(): boolean {
    return this.dirty.size * this.pager.pageSize > this.pager.maxDirtyBytes;
  }

  async maybeFlush(): Promise<void> {
    if (this.needsFlush) await this.flushDirty();
  }

  /** @internal */
  async flushDirty(): Promise<void> {
    if (this.dirty.size === 0) return;
    await this.pager.writePages(this.dirty, this.generation);
    this.dirty.clear();
  }

  /** Writes a run of pages now (overflow values); the run must be the transaction's own. */
  async writeRaw(start: number, image: Uint8Array): Promise<void> {
    this.assertActive();
    await this.pager.writeRaw(start, image);
  }

  async commit(): Promise<void> {
    this.assertActive();
    this.state = 'committing';
    try {
      await this.pager.commit(this);
    } finally {
      this.state = 'done';
    }
  }

  rollback(): void {
    if (this.state !== 'active') return;
    this.state = 'done';
    this.dirty.clear();
    this.pager.rollback(this);
  }

  /** @internal */
  freedRanges(): FreeSpace { return this.freed.clone(); }
  /** @internal */
  allocatedRanges(): PageRange[] { return this.owned.ranges(); }

  private assertActive(): void {
    if (this.state !== 'active') throw new ModelVaultError('TRANSACTION_CLOSED', 'the transaction has ended');
  }
}
