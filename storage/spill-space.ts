// Spill space: temporary runs of records written by operators that outgrow their memory
// budget. Runs live in pages of the same file, taken from free space or the tail; they are
// free as far as any superblock is concerned, so a crash leaves nothing to clean but a tail
// that the next open truncates. Pages are checksummed like every other page.
import { alignedBuffer, alignedBufferUnsafe } from './block-store.js';
import { ModelVaultError } from './errors.js';
import { PAGE_HEADER_BYTES, PageType, pageBody, sealPage } from './page.js';
import type { Pager } from './pager.js';

const EXTENT_BYTES = 1 << 20;

interface Extent { start: number; pages: number }

export class SpillSpace {
  runsWritten = 0;
  bytesWritten = 0;
  constructor(private readonly pager: () => Pager) {}

  /** Starts a run; append records, then `finish()` for a readable `SpillRun`. */
  createRun(label: string): SpillRunWriter {
    return new SpillRunWriter(this, this.pager(), label);
  }
}

/**
 * Appends length-prefixed records into 1 MiB extents of spill pages. The extent buffer, its page
 * image and the length prefix are allocated once per run and reused: a sort that spills 100 MiB
 * left 100 MiB of 1 MiB images for the GC, and they showed in its peak RSS.
 */
export class SpillRunWriter {
  private readonly extents: Extent[] = [];
  private readonly buffer: Buffer;
  private image: Buffer | null = null;
  private readonly header = Buffer.allocUnsafe(4);
  private used = 0;
  private records = 0;
  private bytes = 0;
  private done = false;
  private readonly pagesPerExtent: number;
  private readonly bodyBytes: number;

  constructor(private readonly space: SpillSpace, private readonly pager: Pager, readonly label: string) {
    this.pagesPerExtent = Math.max(1, Math.floor(EXTENT_BYTES / pager.pageSize));
    this.bodyBytes = pager.pageSize - PAGE_HEADER_BYTES;
    this.buffer = Buffer.allocUnsafe(this.pagesPerExtent * this.bodyBytes);
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
    this.space.runsWritten++;
    return new SpillRun(this.pager, this.extents.slice(), this.records, this.bytes);
  }

  /** Releases whatever was written (an operator that failed or was stopped). */
  abort(): void {
    this.done = true;
    for (const e of this.extents) this.pager.releaseSpill(e.start);
    this.extents.length = 0;
  }

  private async write(bytes: Uint8Array): Promise<void> {
    let from = 0;
    while (from < bytes.byteLength) {
      const n = Math.min(bytes.byteLength - from, this.buffer.byteLength - this.used);
      this.buffer.set(bytes.subarray(from, from + n), this.used);
      this.used += n;
      from += n;
      if (this.used === this.buffer.byteLength) await this.flush();
    }
  }

  private async flush(): Promise<void> {
    const pages = Math.ceil(this.used / this.bodyBytes);
    const start = this.pager.allocateSpill(pages);
    this.extents.push({ start, pages });
    // The store is done with the image when write() resolves, so the next flush may reuse it.
    this.image ??= alignedBuffer(this.pagesPerExtent * this.pager.pageSize);
    const image = this.image.subarray(0, pages * this.pager.pageSize);
    for (let p = 0; p < pages; p++) {
      const chunk = this.buffer.subarray(p * this.bodyBytes, Math.min(this.used, (p + 1) * this.bodyBytes));
      const page = image.subarray(p * this.pager.pageSize, (p + 1) * this.pager.pageSize);
      page.set(chunk, PAGE_HEADER_BYTES);
      page.fill(0, PAGE_HEADER_BYTES + chunk.byteLength); // no bytes of an earlier extent after the body
      sealPage(page, PageType.Spill, start + p, 0, chunk.byteLength);
    }
    await this.pager.store.write(start * this.pager.pageSize, image);
    this.bytes += this.used;
    this.space.bytesWritten += image.byteLength;
    this.used = 0;
  }
}

/** A finished run: read back sequentially (one extent in memory at a time), then dropped. */
export class SpillRun {
  private dropped = false;
  constructor(
    private readonly pager: Pager,
    private readonly extents: readonly Extent[],
    readonly recordCount: number,
    readonly byteLength: number,
  ) {}

  /**
   * The records in order. Each is a view of a buffer the run reuses: valid until the next
   * record is pulled (decode or copy it first). Extents are read into one buffer and their page
   * bodies joined in another, so reading a run back leaves no garbage per extent.
   */
  async *records(): AsyncGenerator<Buffer> {
    const pageSize = this.pager.pageSize;
    let largest = 1;
    for (const e of this.extents) largest = Math.max(largest, e.pages);
    const read = alignedBufferUnsafe(largest * pageSize);
    let joined = Buffer.allocUnsafe(read.byteLength);
    let held = 0; // bytes of joined[] not yet yielded: the start of a record that continues in the next extent
    let produced = 0;
    for (const extent of this.extents) {
      if (this.dropped) throw new ModelVaultError('ABORTED', 'spill run was released while being read');
      const infos = await this.pager.readRunInto(extent.start, extent.pages, read, PageType.Spill);
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
        if (len > this.byteLength) throw new ModelVaultError('CORRUPT', 'spill record longer than its run', { offset: extent.start * pageSize });
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
    for (const e of this.extents) this.pager.releaseSpill(e.start);
  }

  [Symbol.dispose](): void {
    this.drop();
  }
}
