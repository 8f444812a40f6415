import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { alignedBufferUnsafe, type BlockStore } from './block-store.js';
import { ioError } from './errors.js';

/** A `.modelvault` file through one Node file handle. */
export class FileStore implements BlockStore {
  readonly kind = 'file' as const;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly handle: fsp.FileHandle,
    private length: number,
  ) {}

  static async open(path: string, opts: { readOnly: boolean; create: boolean }): Promise<FileStore> {
    const flags = opts.readOnly ? 'r' : opts.create ? fs.constants.O_RDWR | fs.constants.O_CREAT : 'r+';
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(path, flags, 0o644);
    } catch (err) {
      throw ioError(`opening ${path}`, err);
    }
    const { size } = await handle.stat();
    return new FileStore(path, handle, size);
  }

  size(): number { return this.length; }

  readSync(offset: number, length: number): Uint8Array {
    const out = alignedBufferUnsafe(length);
    this.readIntoSync(offset, out);
    return out;
  }

  readIntoSync(offset: number, target: Uint8Array): void {
    const length = target.byteLength;
    let done = 0;
    try {
      while (done < length) {
        const n = fs.readSync(this.handle.fd, target, done, length - done, offset + done);
        if (n === 0) break; // past the end: zero-filled below
        done += n;
      }
    } catch (err) {
      throw ioError('read', err);
    }
    if (done < length) target.fill(0, done);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = alignedBufferUnsafe(length);
    await this.readInto(offset, out);
    return out;
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    const length = target.byteLength;
    let done = 0;
    try {
      while (done < length) {
        const { bytesRead } = await this.handle.read(target, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    } catch (err) {
      throw ioError('read', err);
    }
    if (done < length) target.fill(0, done);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    let done = 0;
    try {
      while (done < data.byteLength) {
        const { bytesWritten } = await this.handle.write(data, done, data.byteLength - done, offset + done);
        done += bytesWritten;
      }
    } catch (err) {
      throw ioError('write', err);
    }
    if (offset + data.byteLength > this.length) this.length = offset + data.byteLength;
  }

  async sync(): Promise<void> {
    try {
      await this.handle.datasync();
    } catch (err) {
      throw ioError('fsync', err);
    }
  }

  async truncate(size: number): Promise<void> {
    try {
      await this.handle.truncate(size);
    } catch (err) {
      throw ioError('truncate', err);
    }
    this.length = size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}
