// Spill space: temporary runs of records written by operators that outgrow their memory
// budget. Runs live in pages of the same file, taken from free space or the tail; they are
// free as far as any superblock is concerned, so a crash leaves nothing to clean but a tail
// that the next open truncates. Pages are checksummed like every other page.
import { alignedBuffer } from './block-store.js';
import { ModelVaultError } from './errors.js';
import { PAGE_HEADER_BYTES, PageType, sealPage } from './page.js';
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

/** Appends length-prefixed records into 1 MiB extents of spill pages. */
export class SpillRunWriter {
  private readonly extents: Extent[] = [];
  private buffer: Buffer;
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
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32LE(record.byteLength, 0);
    await this.write(header);
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
    const image = alignedBuffer(pages * this.pager.pageSize);
    for (let p = 0; p < pages; p++) {
      const chunk = this.buffer.subarray(p * this.bodyBytes, Math.min(this.used, (p + 1) * this.bodyBytes));
      const page = image.subarray(p * this.pager.pageSize, (p + 1) * this.pager.pageSize);
      page.set(chunk, PAGE_HEADER_BYTES);
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

  async *records(): AsyncGenerator<Buffer> {
    let pending: Buffer = Buffer.alloc(0);
    let produced = 0;
    for (const extent of this.extents) {
      if (this.dropped) throw new ModelVaultError('ABORTED', 'spill run was released while being read');
      const bodies = await this.pager.readRun(extent.start, extent.pages, PageType.Spill);
      let buf = pending.byteLength ? Buffer.concat([pending, ...bodies]) : Buffer.concat(bodies);
      let at = 0;
      while (at + 4 <= buf.byteLength) {
        const len = buf.readUInt32LE(at);
        if (len > this.byteLength) throw new ModelVaultError('CORRUPT', 'spill record longer than its run', { offset: extent.start * this.pager.pageSize });
        if (at + 4 + len > buf.byteLength) break;
        yield buf.subarray(at + 4, at + 4 + len);
        produced++;
        at += 4 + len;
      }
      pending = buf.subarray(at);
      buf = Buffer.alloc(0);
    }
    if (produced !== this.recordCount || pending.byteLength !== 0) {
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
