// Spill space: temporary runs of records written by operators that outgrow their memory
// budget. Runs live in pages of the same file, taken from free space or the tail; they are
// free as far as any superblock is concerned, so a crash leaves nothing to clean but a tail
// that the next open truncates. Pages are checksummed like every other page.
import { alignedBuffer, alignedBufferUnsafe } from './block-store.js';
import { ModelVaultError } from './errors.js';
import { PAGE_HEADER_BYTES, PageType, pageBody, sealPage, type PageInfo } from './page.js';
import type { Pager } from './pager.js';

/** Largest extent a run writes at once (and so the largest I/O buffer a writer or reader holds). */
const MAX_EXTENT_BYTES = 1 << 20;

/** Pages of spill I/O (a writer's extent, a reader's read) that `bytes` allows: at least one, at most 1 MiB. */
export function spillIoPages(bytes: number, pageSize: number): number {
  return Math.max(1, Math.min(Math.floor(MAX_EXTENT_BYTES / pageSize), Math.floor(bytes / pageSize)));
}

interface Extent { start: number; pages: number }

/** Where spill pages live: whole pages allocated, written and read back verified. */
export interface SpillPages {
  readonly pageSize: number;
  /** Pages of runs not yet released. */
  readonly pagesInUse: number;
  /** The first of `count` consecutive pages. */
  allocate(count: number): number;
  /** Gives back the pages of the allocation that started at `start`. */
  release(start: number): void;
  write(start: number, image: Uint8Array): Promise<void>;
  /** Reads `count` pages into `target`, each checked as a spill page of its number. */
  readInto(start: number, count: number, target: Buffer): Promise<PageInfo[]>;
}

/** Spill pages inside the database file: free pages or its tail, free in every superblock. */
export class FilePages implements SpillPages {
  constructor(readonly pager: Pager) {}
  get pageSize(): number { return this.pager.pageSize; }
  get pagesInUse(): number { return this.pager.spillPagesInUse; }
  allocate(count: number): number { return this.pager.allocateSpill(count); }
  release(start: number): void { this.pager.releaseSpill(start); }
  write(start: number, image: Uint8Array): Promise<void> { return this.pager.store.write(start * this.pager.pageSize, image); }
  readInto(start: number, count: number, target: Buffer): Promise<PageInfo[]> { return this.pager.readRunInto(start, count, target, PageType.Spill); }
}

/** Where operators create their runs: the database's spill space, or a group of it. */
export interface SpillRuns {
  readonly pageSize: number;
  createRun(label: string, extentPages?: number): SpillRunWriter;
}

/** A writer or run that a group still holds; `discard` releases its pages. */
interface Held { discard(): void }

export class SpillSpace {
  runsWritten = 0;
  bytesWritten = 0;
  /** `pages`: where runs go now (a compaction replaces the pager, and with it the file pages). */
  constructor(private readonly pages: () => SpillPages) {}

  /** Spill I/O moves whole pages: a writer's extent buffer and a reader's read are multiples of this. */
  get pageSize(): number { return this.pages().pageSize; }

  /**
   * Starts a run; append records, then `finish()` for a readable `SpillRun`. It buffers
   * `extentPages` pages (default: 1 MiB worth) before writing them as one extent: that buffer,
   * allocated at the first record, is all the memory it holds.
   */
  createRun(label: string, extentPages?: number): SpillRunWriter {
    return new SpillRunWriter(this, this.pages(), label, extentPages, null);
  }

  /** A group of runs in this space that can be dropped together (see SpillGroup). */
  group(): SpillGroup {
    return new SpillGroup(this, this.pages);
  }
}

/**
 * The runs of one consumer: every writer it starts and every run those finish, until dropped
 * or aborted. `dropAll()` releases what is left, for a consumer that cannot run its own
 * cleanup (a query whose iterator was dropped without being finished or returned).
 */
export class SpillGroup implements SpillRuns {
  private readonly held = new Set<Held>();
  constructor(private readonly space: SpillSpace, private readonly pages: () => SpillPages) {}

  get pageSize(): number { return this.space.pageSize; }

  createRun(label: string, extentPages?: number): SpillRunWriter {
    return new SpillRunWriter(this.space, this.pages(), label, extentPages, this.held);
  }

  /** Pages still held by the group's writers and runs are released. */
  dropAll(): void {
    for (const h of [...this.held]) h.discard();
    this.held.clear();
  }

  get size(): number { return this.held.size; }
}

/**
 * Appends length-prefixed records into extents of spill pages. Records are copied straight into
 * the bodies of the extent's page image, one buffer allocated once per run and reused for every
 * extent: a sort that spills 100 MiB left 100 MiB of 1 MiB images for the GC, and they showed
 * in its peak RSS.
 */
export class SpillRunWriter {
  private readonly extents: Extent[] = [];
  private image: Buffer | null = null;
  private readonly header = Buffer.allocUnsafe(4);
  /** Body bytes filled in the current extent. */
  private used = 0;
  private records = 0;
  private bytes = 0;
  private done = false;
  private readonly pagesPerExtent: number;
  private readonly bodyBytes: number;

  constructor(
    private readonly space: SpillSpace,
    private readonly pages: SpillPages,
    readonly label: string,
    extentPages: number | undefined,
    private readonly group: Set<Held> | null,
  ) {
    group?.add(this);
    this.pagesPerExtent = extentPages ?? spillIoPages(MAX_EXTENT_BYTES, pages.pageSize);
    if (!Number.isInteger(this.pagesPerExtent) || this.pagesPerExtent < 1) throw new Error(`internal: spill extent of ${extentPages} pages`);
    this.bodyBytes = pages.pageSize - PAGE_HEADER_BYTES;
  }

  async append(record: Uint8Array): Promise<void> {
    if (this.done) throw new Error('internal: append to a finished spill run');
    this.header.writeUInt32LE(record.byteLength, 0);
    await this.write(this.header);
    await this.write(record);
    this.records++;
  }

  async finish(): Promise<SpillRun> {
    if (this.used > 0) await this.flush();
    this.done = true;
    this.image = null; // a group may hold the writer until its run is dropped
    this.space.runsWritten++;
    this.group?.delete(this);
    return new SpillRun(this.pages, this.extents.slice(), this.records, this.bytes, this.group);
  }

  /** Releases whatever was written (an operator that failed or was stopped). */
  abort(): void {
    this.done = true;
    this.image = null;
    for (const e of this.extents) this.pages.release(e.start);
    this.extents.length = 0;
    this.group?.delete(this);
  }

  discard(): void { this.abort(); }

  private async write(bytes: Uint8Array): Promise<void> {
    const pageSize = this.pages.pageSize, capacity = this.pagesPerExtent * this.bodyBytes;
    // The store is done with the image when write() resolves, so the next extent reuses it.
    const image = (this.image ??= alignedBuffer(this.pagesPerExtent * pageSize));
    let from = 0;
    while (from < bytes.byteLength) {
      const page = Math.floor(this.used / this.bodyBytes), inPage = this.used - page * this.bodyBytes;
      const n = Math.min(bytes.byteLength - from, this.bodyBytes - inPage);
      image.set(bytes.subarray(from, from + n), page * pageSize + PAGE_HEADER_BYTES + inPage);
      this.used += n;
      from += n;
      if (this.used === capacity) await this.flush();
    }
  }

  private async flush(): Promise<void> {
    const pages = Math.ceil(this.used / this.bodyBytes);
    const start = this.pages.allocate(pages);
    this.extents.push({ start, pages });
    const pageSize = this.pages.pageSize;
    const image = this.image!.subarray(0, pages * pageSize);
    for (let p = 0; p < pages; p++) {
      const body = Math.min(this.bodyBytes, this.used - p * this.bodyBytes);
      const page = image.subarray(p * pageSize, (p + 1) * pageSize);
      page.fill(0, PAGE_HEADER_BYTES + body); // no bytes of an earlier extent after the body
      sealPage(page, PageType.Spill, start + p, 0, body);
    }
    await this.pages.write(start, image);
    this.bytes += this.used;
    this.space.bytesWritten += image.byteLength;
    this.used = 0;
  }
}

/** A finished run: read back sequentially (one extent in memory at a time), then dropped. */
export class SpillRun {
  private dropped = false;
  constructor(
    private readonly pages: SpillPages,
    private readonly extents: readonly Extent[],
    readonly recordCount: number,
    readonly byteLength: number,
    private readonly group: Set<Held> | null = null,
  ) {
    group?.add(this);
  }

  /**
   * The records in order. Each is a view of a buffer the run reuses: valid until the next
   * record is pulled (decode or copy it first). Pages are read `readPages` at a time (default:
   * a whole extent) into one buffer and their bodies joined in another, which holds the read's
   * bodies plus a record that continues past them: reading a run back leaves no garbage per read.
   */
  async *records(readPages?: number): AsyncGenerator<Buffer> {
    const pageSize = this.pages.pageSize;
    let largest = 1;
    for (const e of this.extents) largest = Math.max(largest, e.pages);
    const perRead = Math.max(1, Math.min(largest, readPages ?? largest));
    const read = alignedBufferUnsafe(perRead * pageSize);
    let joined = Buffer.allocUnsafe(read.byteLength);
    let held = 0; // bytes of joined[] not yet yielded: the start of a record that continues in the next read
    let produced = 0;
    for (const piece of pieces(this.extents, perRead)) {
      if (this.dropped) throw new ModelVaultError('ABORTED', 'spill run was released while being read');
      const infos = await this.pages.readInto(piece.start, piece.pages, read);
      let bodies = 0;
      for (const info of infos) bodies += info.bodyLength;
      if (held + bodies > joined.byteLength) {
        const grown = Buffer.allocUnsafe(Math.max(held + bodies, 2 * joined.byteLength));
        joined.copy(grown, 0, 0, held);
        joined = grown;
      }
      infos.forEach((info, k) => {
        const body = pageBody(read.subarray(k * pageSize, (k + 1) * pageSize), info);
        joined.set(body, held);
        held += body.byteLength;
      });
      let at = 0;
      while (at + 4 <= held) {
        const len = joined.readUInt32LE(at);
        if (len > this.byteLength) throw new ModelVaultError('CORRUPT', 'spill record longer than its run', { offset: piece.start * pageSize });
        if (at + 4 + len > held) break;
        yield joined.subarray(at + 4, at + 4 + len);
        produced++;
        at += 4 + len;
      }
      joined.copyWithin(0, at, held);
      held -= at;
    }
    if (produced !== this.recordCount || held !== 0) {
      throw new ModelVaultError('CORRUPT', `spill run yielded ${produced} of ${this.recordCount} records`, {});
    }
  }

  drop(): void {
    if (this.dropped) return;
    this.dropped = true;
    for (const e of this.extents) this.pages.release(e.start);
    this.group?.delete(this);
  }

  discard(): void { this.drop(); }

  [Symbol.dispose](): void {
    this.drop();
  }
}

/** The extents cut into reads of at most `perRead` pages. */
function* pieces(extents: readonly Extent[], perRead: number): Generator<Extent> {
  for (const e of extents) {
    for (let at = 0; at < e.pages; at += perRead) yield { start: e.start + at, pages: Math.min(perRead, e.pages - at) };
  }
}
