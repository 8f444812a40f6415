// Spill pages for a read-only open, which must not write its database file: a scratch file in
// the OS temp directory, made at the first spill. On POSIX systems it is unlinked as soon as it
// is open, so it vanishes when the process ends however it ends (a crash leaves nothing); where
// an open file cannot be unlinked (Windows) it is removed at close. Pages are checksummed and
// numbered like the file's own spill pages, and read back verified.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FileStore } from './file-store.js';
import { ModelVaultError, ioError } from './errors.js';
import { FreeSpace } from './free-space.js';
import { PageType, verifyPage, type PageInfo } from './page.js';
import type { SpillPages } from './spill-space.js';

export class ScratchPages implements SpillPages {
  private store: FileStore | null = null;
  private opening: Promise<FileStore> | null = null;
  /** Where the file is, until unlinked (kept only where it cannot be unlinked while open). */
  private pathToRemove: string | null = null;
  private free = new FreeSpace();
  private readonly runs = new Map<number, number>();
  private highWater = 0;
  private inUse = 0;
  private closed = false;

  constructor(readonly pageSize: number, private readonly dir: string = os.tmpdir()) {}

  get pagesInUse(): number { return this.inUse; }

  /** The scratch file's size (0 before the first spill). */
  get fileBytes(): number { return this.store?.size() ?? 0; }

  allocate(count: number): number {
    let start = this.free.takeRun(count);
    if (start < 0) {
      start = this.highWater;
      this.highWater += count;
    }
    this.runs.set(start, count);
    this.inUse += count;
    return start;
  }

  release(start: number): void {
    const count = this.runs.get(start);
    if (count === undefined) return;
    this.runs.delete(start);
    this.inUse -= count;
    this.free.add(start, count);
    if (this.runs.size === 0) {
      // Nothing in use: later runs start again from page 0, and the file gives its disk space
      // back (an unlinked file shows in no listing, only in the free space it takes).
      this.free = new FreeSpace();
      this.highWater = 0;
      if (this.store) this.emptied = this.store.truncate(0).catch(() => undefined);
    }
  }

  /** The truncation after the last release; a write waits for it, so it cannot land first. */
  private emptied: Promise<void> | null = null;

  async write(start: number, image: Uint8Array): Promise<void> {
    const store = await this.open();
    await this.emptied;
    await store.write(start * this.pageSize, image);
  }

  async readInto(start: number, count: number, target: Buffer): Promise<PageInfo[]> {
    const store = await this.open();
    const bytes = target.subarray(0, count * this.pageSize);
    await store.readInto(start * this.pageSize, bytes);
    const infos: PageInfo[] = [];
    for (let k = 0; k < count; k++) {
      infos.push(verifyPage(bytes.subarray(k * this.pageSize, (k + 1) * this.pageSize), start + k, (start + k) * this.pageSize, PageType.Spill));
    }
    return infos;
  }

  async close(): Promise<void> {
    this.closed = true;
    const store = this.store ?? (this.opening ? await this.opening.catch(() => null) : null);
    this.store = null;
    await store?.close();
    if (this.pathToRemove) fs.rmSync(path.dirname(this.pathToRemove), { recursive: true, force: true });
  }

  private open(): Promise<FileStore> {
    if (this.store) return Promise.resolve(this.store);
    this.opening ??= (async () => {
      let dir: string;
      try {
        dir = fs.mkdtempSync(path.join(this.dir, 'modelvault-spill-'));
      } catch (err) {
        throw ioError(`creating a spill scratch file in ${this.dir}`, err);
      }
      const file = path.join(dir, 'spill');
      let store: FileStore;
      try {
        store = await FileStore.open(file, { readOnly: false, create: true });
      } catch (err) {
        fs.rmSync(dir, { recursive: true, force: true });
        throw err;
      }
      if (process.platform === 'win32') {
        this.pathToRemove = file;
      } else {
        fs.rmSync(dir, { recursive: true, force: true }); // the open handle keeps the file
      }
      if (this.closed) {
        await store.close();
        throw new ModelVaultError('CLOSED', 'the database is closed');
      }
      this.store = store;
      return store;
    })();
    // A failed open (a full or missing temp directory) is tried again at the next spill.
    this.opening.catch(() => { this.opening = null; });
    return this.opening;
  }
}
