// The storage engine: a pager over a file or memory store, the process lock, a queue of
// writers, and a catalog tree that names every other tree. Upper layers see named trees,
// snapshots and write transactions; pages, superblocks and free space stay in here.
//
// Invariants:
// (1) One write transaction at a time per engine; the others wait in `writeQueue` order.
// (2) A tree's root is recorded in the catalog by the same commit that wrote the tree's pages.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { BlockStore } from './block-store.js';
import {
  BTreeWriter, CommittedSource, checkTree, leafSlices, treeEntries, treeFindSync, treeGet, treeGetSync,
  type Cell, type KeyBounds, type LeafEntry, type LeafSlice, type NodeSource, type SliceOptions,
} from './btree.js';
import { ModelVaultError, corruptAt, ioError } from './errors.js';
import { FileLock, isProcessAlive, liveLockHolder, removeLeftovers } from './file-lock.js';
import { FileStore } from './file-store.js';
import { MemoryStore } from './memory-store.js';
import { PAGE_HEADER_BYTES, PageType, verifyPage } from './page.js';
import { Pager, type PagerOptions, type RecoveryInfo, type Snapshot, type WriteTxn } from './pager.js';
import { FilePages, SpillSpace, type SpillPages } from './spill-space.js';
import { ScratchPages } from './scratch-pages.js';
import { hasModelVaultMagic } from './superblock.js';

export interface EngineOptions extends PagerOptions {
  /** Create the file when missing (default true). */
  create?: boolean;
  /** Wait this long for another process's write lock before failing with LOCKED (default 0). */
  lockTimeoutMs?: number;
}

export interface TreeInfo {
  readonly root: number;
  readonly columns: number;
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly pageSize: number;
  readonly pageCount: number;
  readonly generation: number;
  readonly trees: number;
  readonly entries: number;
  readonly reachablePages: number;
  readonly freePages: number;
  readonly problems: readonly { offset: number; message: string }[];
}

export interface StorageStats {
  fileBytes: number;
  pageSize: number;
  pageCount: number;
  freePages: number;
  generation: number;
  commits: number;
  pagesWritten: number;
  bytesWritten: number;
  cache: { hits: number; misses: number; bytes: number; bytesRead: number; maxBytes: number; buffersReused: number };
  spill: { pagesInUse: number; pagesAllocated: number; runsWritten: number; bytesWritten: number };
  snapshots: number;
}

const CATALOG_COLUMNS = 2; // [tree root + column count, metadata bytes]
const utf8 = (s: string) => Buffer.from(s, 'utf8');

function encodeTreeInfo(info: TreeInfo): Buffer {
  const b = Buffer.alloc(6);
  b.writeUInt32LE(info.root, 0);
  b.writeUInt16LE(info.columns, 4);
  return b;
}

function decodeTreeInfo(cell: Cell, offset: number): TreeInfo | undefined {
  if (cell === null) return undefined;
  if (cell.byteLength !== 6) throw corruptAt(offset, 'catalog entry with a malformed tree reference');
  const b = Buffer.from(cell.buffer, cell.byteOffset, cell.byteLength);
  return { root: b.readUInt32LE(0), columns: b.readUInt16LE(4) };
}

/** Read access to named trees, the same for snapshots and write transactions. */
export abstract class TreeReader {
  protected abstract readonly source: NodeSource;
  protected abstract catalogRoot(): number;

  async treeInfo(name: string): Promise<TreeInfo | undefined> {
    const row = await treeGet(this.source, this.catalogRoot(), utf8(name));
    return row ? decodeTreeInfo(row[0], 0) : undefined;
  }

  /** Synchronous catalog reads, for planning (`explain()` returns text at once). */
  treeInfoSync(name: string): TreeInfo | undefined {
    const row = treeGetSync(this.source, this.catalogRoot(), utf8(name));
    return row ? decodeTreeInfo(row[0], 0) : undefined;
  }

  getMetaSync(name: string): Uint8Array | undefined {
    return treeGetSync(this.source, this.catalogRoot(), utf8(name))?.[1] ?? undefined;
  }

  treeRootSync(tree: string): number {
    const info = this.treeInfoSync(tree);
    return info ? this.rootOf(tree, info) : 0;
  }

  async getMeta(name: string): Promise<Uint8Array | undefined> {
    const row = await treeGet(this.source, this.catalogRoot(), utf8(name));
    return row?.[1] ?? undefined;
  }

  /** Catalog names with `prefix`, in order. */
  async names(prefix = ''): Promise<string[]> {
    const out: string[] = [];
    const p = utf8(prefix);
    for await (const [key] of treeEntries(this.source, this.catalogRoot(), { gte: p })) {
      if (!key.subarray(0, p.byteLength).equals(p)) break;
      out.push(key.toString('utf8'));
    }
    return out;
  }

  /** The current root page of a tree (0 when empty or missing), for repeated lookups. */
  async treeRoot(tree: string): Promise<number> {
    const info = await this.treeInfo(tree);
    return info ? this.rootOf(tree, info) : 0;
  }

  /** `get` that reads missing pages synchronously. */
  getSync(tree: string, key: Uint8Array): Cell[] | undefined {
    const info = this.treeInfoSync(tree);
    return info ? treeGetSync(this.source, this.rootOf(tree, info), key) : undefined;
  }

  /** The leaf entry under `key`, pages read synchronously: for decoding it in place at once. */
  findSync(tree: string, key: Uint8Array): LeafEntry | undefined {
    const info = this.treeInfoSync(tree);
    return info ? treeFindSync(this.source, this.rootOf(tree, info), key) : undefined;
  }

  async get(tree: string, key: Uint8Array): Promise<Cell[] | undefined> {
    const info = await this.treeInfo(tree);
    return info ? treeGet(this.source, this.rootOf(tree, info), key) : undefined;
  }

  async *entries(tree: string, bounds: KeyBounds = {}): AsyncGenerator<[Buffer, Cell[]]> {
    const info = await this.treeInfo(tree);
    if (info) yield* treeEntries(this.source, this.rootOf(tree, info), bounds);
  }

  /** Leaf by leaf, for scans that read column views instead of whole entries. */
  slices(tree: string, bounds: KeyBounds = {}, opts: SliceOptions = {}): AsyncGenerator<LeafSlice> {
    // The walk itself looks the root up on its first pull: no generator wrapped around it
    // (each layer costs promises per leaf) and no work before the first pull.
    return leafSlices(this.source, () => this.treeRoot(tree), bounds, opts);
  }

  get nodeSource(): NodeSource { return this.source; }

  protected rootOf(_tree: string, info: TreeInfo): number {
    return info.root;
  }
}

/** A pinned committed state. Release it (or `using`) so its pages can be reused. */
export class EngineSnapshot extends TreeReader implements Disposable {
  protected readonly source: NodeSource;
  constructor(readonly engine: StorageEngine, private readonly snap: Snapshot) {
    super();
    this.source = new CommittedSource(engine.pager, snap.generation);
  }
  /** Tree references change only by commits, so they are cached per generation, engine-wide. */
  private get infoCache(): Map<string, TreeInfo | undefined> {
    return this.engine.treeInfoCache(this.snap.generation);
  }

  override async treeInfo(name: string): Promise<TreeInfo | undefined> {
    if (this.infoCache.has(name)) return this.infoCache.get(name);
    const info = await super.treeInfo(name);
    this.infoCache.set(name, info);
    return info;
  }

  override treeInfoSync(name: string): TreeInfo | undefined {
    if (this.infoCache.has(name)) return this.infoCache.get(name);
    const info = super.treeInfoSync(name);
    this.infoCache.set(name, info);
    return info;
  }

  get generation(): number { return this.snap.generation; }
  get catalogRootPage(): number { return this.snap.catalogRoot; }
  protected catalogRoot(): number { return this.snap.catalogRoot; }
  release(): void { this.snap.release(); }
  [Symbol.dispose](): void { this.release(); }
}

/** The engine's write transaction: named trees, metadata, commit or rollback. */
export class EngineTxn extends TreeReader {
  protected readonly source: NodeSource;
  private readonly catalog: BTreeWriter;
  private readonly writers = new Map<string, BTreeWriter>();
  private readonly beforeCommit: (() => Promise<void>)[] = [];
  /** Set when an operation failed halfway: the transaction can only roll back. */
  poisoned: Error | null = null;

  constructor(readonly engine: StorageEngine, readonly txn: WriteTxn) {
    super();
    this.catalog = new BTreeWriter(txn, txn.catalogRoot, CATALOG_COLUMNS);
    this.source = this.catalog.src;
  }

  get generation(): number { return this.txn.generation; }
  get isActive(): boolean { return this.txn.isActive; }
  protected catalogRoot(): number { return this.catalog.root; }

  protected override rootOf(tree: string, info: TreeInfo): number {
    return this.writers.get(tree)?.root ?? info.root;
  }

  override async treeInfo(name: string): Promise<TreeInfo | undefined> {
    const open = this.writers.get(name);
    if (open) return { root: open.root, columns: open.columns };
    return super.treeInfo(name);
  }

  override treeInfoSync(name: string): TreeInfo | undefined {
    const open = this.writers.get(name);
    if (open) return { root: open.root, columns: open.columns };
    return super.treeInfoSync(name);
  }

  /** The writer for tree `name`, created empty when missing. */
  async tree(name: string, columns: number): Promise<BTreeWriter> {
    const open = this.writers.get(name);
    if (open) {
      if (open.columns > columns) throw new Error(`internal: tree ${name} has ${open.columns} columns, more than ${columns}`);
      open.columns = columns; // widened by a schema change inside this transaction
      return open;
    }
    const info = await super.treeInfo(name);
    if (info && info.columns > columns) {
      throw new Error(`internal: tree ${name} has ${info.columns} columns, more than ${columns}`);
    }
    const writer = new BTreeWriter(this.txn, info?.root ?? 0, columns);
    this.writers.set(name, writer);
    return writer;
  }

  async setMeta(name: string, meta: Uint8Array | null): Promise<void> {
    const key = utf8(name);
    const row = await this.catalog.get(key);
    await this.catalog.put(key, [row?.[0] ?? null, meta]);
  }

  /** Frees every page of a tree and removes its catalog entry (metadata included). */
  async dropTree(name: string): Promise<void> {
    const info = await this.treeInfo(name);
    if (info) {
      const writer = this.writers.get(name) ?? new BTreeWriter(this.txn, info.root, info.columns);
      await writer.destroy();
    }
    this.writers.delete(name);
    await this.catalog.delete(utf8(name));
  }

  /** Writes modified pages out early when over budget; call between operations of a big transaction. */
  maybeFlush(): Promise<void> {
    return this.txn.maybeFlush();
  }

  get needsFlush(): boolean {
    return this.txn.needsFlush;
  }

  /** Runs `fn` just before the commit (upper layers flush counters and metadata). */
  onBeforeCommit(fn: () => Promise<void>): void {
    this.beforeCommit.push(fn);
  }

  /** @internal Records tree roots in the catalog, then commits. */
  async commit(): Promise<void> {
    if (this.poisoned) throw this.poisoned;
    for (const fn of this.beforeCommit.splice(0)) await fn();
    for (const [name, writer] of this.writers) {
      const key = utf8(name);
      const row = await this.catalog.get(key);
      const before = row ? decodeTreeInfo(row[0], 0) : undefined;
      if (before && before.root === writer.root && before.columns === writer.columns) continue;
      await this.catalog.put(key, [encodeTreeInfo({ root: writer.root, columns: writer.columns }), row?.[1] ?? null]);
    }
    this.txn.catalogRoot = this.catalog.root;
    await this.txn.commit();
  }

  rollback(): void {
    this.txn.rollback();
  }
}

export class StorageEngine {
  private writeQueue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private infoCache = { generation: -1, byName: new Map<string, TreeInfo | undefined>() };
  private latest: { pager: Pager; snap: EngineSnapshot } | null = null;
  readonly spill: SpillSpace;

  private constructor(
    public pager: Pager,
    readonly path: string | null,
    private readonly lock: FileLock | null,
    readonly options: EngineOptions,
  ) {
    this.spill = new SpillSpace(() => this.spillPages());
  }

  private filePages: FilePages | null = null;
  private scratchPages: ScratchPages | null = null;

  /** Spill pages go into the file, or (read-only opens, which must not write it) a scratch file. */
  private spillPages(): SpillPages {
    const pager = this.pager;
    if (pager.readOnly) return (this.scratchPages ??= new ScratchPages(pager.pageSize));
    if (this.filePages?.pager !== pager) this.filePages = new FilePages(pager);
    return this.filePages;
  }

  static async open(filePath: string, opts: EngineOptions = {}): Promise<StorageEngine> {
    const readOnly = opts.readOnly ?? false;
    const create = opts.create ?? true;
    if (!readOnly && !create && !fs.existsSync(filePath)) {
      throw new ModelVaultError('IO', `no such file: ${filePath}`, { path: filePath, syscall: 'ENOENT' });
    }
    if (readOnly && !fs.existsSync(filePath)) {
      throw new ModelVaultError('IO', `no such file: ${filePath}`, { path: filePath, syscall: 'ENOENT' });
    }
    const lock = readOnly ? null : await FileLock.acquire(filePath, opts.lockTimeoutMs ?? 0);
    let store: FileStore | null = null;
    try {
      store = await FileStore.open(filePath, { readOnly, create });
      const pager = await Pager.open(store, opts);
      // Compactions run under the write lock, so the holder of the lock may remove any one's file.
      if (lock !== null) removeLeftovers(filePath, COMPACT_MARKER, [''], () => true);
      return new StorageEngine(pager, filePath, lock, opts);
    } catch (err) {
      await store?.close();
      lock?.release();
      throw err;
    }
  }

  static async openMemory(opts: PagerOptions = {}, image?: Uint8Array): Promise<StorageEngine> {
    const store = new MemoryStore(image);
    const pager = await Pager.open(store, opts);
    return new StorageEngine(pager, null, null, opts);
  }

  /** @internal An engine over a caller's store (fault-injection tests): no lock, no path; the store is closed with the engine. */
  static async openStore(store: BlockStore, opts: PagerOptions = {}): Promise<StorageEngine> {
    const pager = await Pager.open(store, opts);
    return new StorageEngine(pager, null, null, opts);
  }

  /** @internal Catalog lookups of one committed generation (the newest one asked for). */
  treeInfoCache(generation: number): Map<string, TreeInfo | undefined> {
    if (this.infoCache.generation !== generation) {
      if (generation < this.infoCache.generation) return new Map(); // an older snapshot: uncached
      this.infoCache = { generation, byName: new Map() };
    }
    return this.infoCache.byName;
  }

  get recoveryInfo(): RecoveryInfo | null { return this.pager.recoveryInfo; }
  get readOnly(): boolean { return this.pager.readOnly; }
  get pageSize(): number { return this.pager.pageSize; }
  get isClosed(): boolean { return this.closed; }

  snapshot(): EngineSnapshot {
    this.assertOpen();
    return new EngineSnapshot(this, this.pager.pinSnapshot());
  }

  /**
   * The newest commit for synchronous reads only (point gets): unpinned, so it must not be
   * used across an await. Cached per generation, so a run of gets allocates nothing here.
   */
  latestSync(): EngineSnapshot {
    this.assertOpen();
    const { pager } = this;
    if (this.latest?.pager !== pager || this.latest.snap.generation !== pager.generation) {
      this.latest = { pager, snap: new EngineSnapshot(this, pager.latestUnpinned()) };
    }
    return this.latest.snap;
  }

  /**
   * Runs `fn` in the write transaction once every earlier writer is done; commits when it
   * resolves, rolls back when it throws (the error is re-thrown as is).
   */
  write<T>(fn: (tx: EngineTxn) => Promise<T>): Promise<T> {
    this.assertOpen();
    if (this.pager.readOnly) return Promise.reject(new ModelVaultError('READ_ONLY', 'the database was opened read-only'));
    const run = async (): Promise<T> => {
      this.assertOpen();
      const tx = new EngineTxn(this, this.pager.beginWrite());
      let result: T;
      try {
        result = await fn(tx);
      } catch (err) {
        tx.rollback();
        throw err;
      }
      try {
        if (tx.isActive) await tx.commit();
      } catch (err) {
        tx.rollback(); // a failure before the pager's commit (catalog, hooks) must not leave the writer open
        throw err;
      }
      return result;
    };
    const next = this.writeQueue.then(run, run);
    this.writeQueue = next.catch(() => undefined);
    return next;
  }

  /** Waits for queued writers to finish. */
  async idle(): Promise<void> {
    await this.writeQueue;
  }

  /** The committed state as the bytes of a valid file (its superblock in slot generation % 2, the other slot blank). */
  async snapshotBytes(): Promise<Uint8Array> {
    this.assertOpen();
    const chunks: Uint8Array[] = [];
    for await (const chunk of this.pager.committedImage()) chunks.push(chunk);
    return Buffer.concat(chunks);
  }

  /** A consistent copy of the committed state at `dest`, written to a temporary name, synced, then renamed. */
  async backup(dest: string): Promise<{ bytes: number }> {
    this.assertOpen();
    this.checkBackupDestination(dest);
    // A backup to the same place that was killed left its temporary file; another process's may be running.
    removeLeftovers(dest, BACKUP_MARKER, [''], (pid) => pid !== process.pid && !isProcessAlive(pid));
    const temp = `${dest}${BACKUP_MARKER}${process.pid}`;
    let bytes = 0;
    const out = await fsp.open(temp, 'w').catch((err) => { throw ioError(`creating ${temp}`, err); });
    try {
      for await (const chunk of this.pager.committedImage()) {
        await out.write(chunk);
        bytes += chunk.byteLength;
      }
      await out.sync();
    } catch (err) {
      await out.close();
      await fsp.rm(temp, { force: true });
      throw ioError('backup', err);
    }
    await out.close();
    await fsp.rename(temp, dest).catch((err) => { throw ioError(`renaming to ${dest}`, err); });
    await syncDirectory(path.dirname(dest));
    return { bytes };
  }

  /**
   * A backup replaces `dest` by renaming a finished copy over it. That must never be this very
   * file (the open handle would go on writing to the unlinked old one, and every later commit
   * would be lost), a database open for writing (by any process, this one included), or a file
   * that is not a ModelVault file at all (someone's data): an earlier backup is all it replaces.
   */
  private checkBackupDestination(dest: string): void {
    let st: fs.Stats;
    try {
      st = fs.statSync(dest);
    } catch {
      return; // nothing there yet (a missing directory fails when the copy is created)
    }
    const refuse = (why: string) => new ModelVaultError('VALIDATION', `backup destination ${dest} ${why}`, { path: 'dest' });
    if (st.isDirectory()) throw refuse('is a directory');
    if (this.path !== null) {
      const own = fs.statSync(this.path);
      if (own.dev === st.dev && own.ino === st.ino) throw refuse('is this database itself');
    }
    const holder = liveLockHolder(dest);
    if (holder !== null) throw new ModelVaultError('LOCKED', `backup destination ${dest} is open for writing (pid ${holder})`, { path: dest, pid: holder });
    if (!st.isFile()) throw refuse('is not a regular file');
    if (st.size > 0 && !hasModelVaultMagic(dest)) throw refuse('exists and is not a ModelVault file; it is left as it is');
  }

  /**
   * Rewrites every tree into a fresh image with no free space, then swaps it in: the file
   * shrinks to its live pages. Waits for the writer queue; readers must have finished.
   */
  async compact(): Promise<{ bytesBefore: number; bytesAfter: number }> {
    return this.exclusive(async () => {
      if (this.pager.pinnedSnapshots > 0) {
        throw new ModelVaultError('LOCKED', 'compact needs every open query and snapshot to finish first');
      }
      const bytesBefore = this.pager.pageCount * this.pager.pageSize;
      const target = this.path ? await StorageEngine.openFresh(`${this.path}${COMPACT_MARKER}${process.pid}`, this.pager.pageSize) : await StorageEngine.openMemory({ pageSize: this.pager.pageSize });
      try {
        using snap = this.snapshot();
        const names = await snap.names();
        await target.write(async (tx) => {
          for (const name of names) {
            const info = await snap.treeInfo(name);
            if (info) {
              const writer = await tx.tree(name, info.columns);
              for await (const [key, cells] of snap.entries(name)) {
                await writer.put(key, cells, 'upsert');
                await tx.maybeFlush();
              }
            }
            await tx.setMeta(name, (await snap.getMeta(name)) ?? null);
          }
        });
      } catch (err) {
        await target.close();
        if (target.path) await fsp.rm(target.path, { force: true });
        throw err;
      }
      if (this.path && target.path) {
        await target.close();
        await fsp.rename(target.path, this.path).catch((err) => { throw ioError('replacing the file', err); });
        await syncDirectory(path.dirname(this.path));
        await this.pager.close();
        this.pager = await Pager.open(await FileStore.open(this.path, { readOnly: false, create: false }), this.options);
      } else {
        const image = await target.snapshotBytes();
        await target.close();
        await this.pager.close();
        this.pager = await Pager.open(new MemoryStore(image), this.options);
      }
      return { bytesBefore, bytesAfter: this.pager.pageCount * this.pager.pageSize };
    });
  }

  /** Reads every reachable page, checks checksums and tree structure, and accounts for every page. */
  async verify(): Promise<VerifyReport> {
    this.assertOpen();
    using snap = this.snapshot();
    const pager = this.pager;
    const problems: { offset: number; message: string }[] = [];
    const seen = new Uint8Array(pager.pageCount);
    const visit = (pageNo: number) => {
      if (pageNo < 1 || pageNo >= pager.pageCount) {
        problems.push({ offset: pageNo * pager.pageSize, message: `reference to page ${pageNo} outside the file` });
      } else if (seen[pageNo]++) {
        problems.push({ offset: pageNo * pager.pageSize, message: `page ${pageNo} is referenced twice` });
      }
    };
    const src = new CommittedSource(pager);
    pager.pool.clear(); // verify reads from the store, not from pages verified earlier
    let trees = 0, entries = 0;
    const guard = async (what: string, fn: () => Promise<void>) => {
      try {
        await fn();
      } catch (err) {
        if (!(err instanceof ModelVaultError)) throw err;
        problems.push({ offset: Number(err.details.offset ?? -1), message: `${what}: ${err.message}` });
      }
    };
    await guard('catalog', async () => {
      await checkTree(src, snap.catalogRootPage, visit);
      for (const name of await snap.names()) {
        const info = await snap.treeInfo(name);
        if (!info) continue;
        trees++;
        await guard(`tree ${name}`, async () => { entries += await checkTree(src, info.root, visit); });
      }
    });
    for (const p of pager.committedFreeListPages()) visit(p);
    // Every page is reachable, a free-list page, or free; free pages are checked only for being listed.
    const free = await this.committedFreePages();
    let unaccounted = 0;
    for (let p = 1; p < pager.pageCount; p++) {
      const listed = free.has(p);
      if (listed && seen[p]) problems.push({ offset: p * pager.pageSize, message: `page ${p} is both free and in use` });
      if (!listed && !seen[p]) unaccounted++;
    }
    if (unaccounted > 0) problems.push({ offset: -1, message: `${unaccounted} pages are neither reachable nor free (leaked)` });
    return {
      ok: problems.length === 0,
      pageSize: pager.pageSize,
      pageCount: pager.pageCount,
      generation: snap.generation,
      trees,
      entries,
      reachablePages: seen.reduce((n, v) => n + (v ? 1 : 0), 0),
      freePages: free.size,
      problems,
    };
  }

  stats(): StorageStats {
    const pager = this.pager;
    const cache = pager.cacheStats();
    return {
      fileBytes: pager.store.size(),
      pageSize: pager.pageSize,
      pageCount: pager.pageCount,
      freePages: pager.freePageCount,
      generation: pager.generation,
      commits: pager.stats.commits,
      pagesWritten: pager.stats.pagesWritten,
      bytesWritten: pager.stats.bytesWritten,
      cache: { hits: cache.hits, misses: cache.misses, bytes: cache.bytes, bytesRead: cache.bytesRead, maxBytes: cache.maxBytes, buffersReused: cache.buffersReused },
      spill: { pagesInUse: this.spillPages().pagesInUse, pagesAllocated: pager.stats.spillPagesAllocated, runsWritten: this.spill.runsWritten, bytesWritten: this.spill.bytesWritten },
      snapshots: pager.pinnedSnapshots,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.writeQueue;
    this.closed = true;
    try {
      await this.scratchPages?.close();
      await this.pager.close();
    } finally {
      this.lock?.release();
    }
  }

  private async committedFreePages(): Promise<Set<number>> {
    const out = new Set<number>();
    const pager = this.pager;
    {
      let pageNo = pager.superblock.freeListRoot;
      while (pageNo !== 0) {
        const bytes = await pager.store.read(pageNo * pager.pageSize, pager.pageSize);
        const info = verifyPage(bytes, pageNo, pageNo * pager.pageSize, PageType.FreeList);
        const view = new DataView(bytes.buffer, bytes.byteOffset + PAGE_HEADER_BYTES, info.bodyLength);
        const count = view.getUint32(4, true);
        for (let i = 0; i < count; i++) {
          const start = view.getUint32(8 + i * 8, true), len = view.getUint32(12 + i * 8, true);
          for (let p = start; p < start + len; p++) out.add(p);
        }
        pageNo = view.getUint32(0, true);
      }
    }
    return out;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    this.assertOpen();
    if (this.pager.readOnly) return Promise.reject(new ModelVaultError('READ_ONLY', 'the database was opened read-only'));
    const next = this.writeQueue.then(fn, fn);
    this.writeQueue = next.catch(() => undefined);
    return next;
  }

  private static async openFresh(filePath: string, pageSize: number): Promise<StorageEngine> {
    await fsp.rm(filePath, { force: true });
    const store = await FileStore.open(filePath, { readOnly: false, create: true });
    return new StorageEngine(await Pager.open(store, { pageSize }), filePath, null, {});
  }

  private assertOpen(): void {
    if (this.closed) throw new ModelVaultError('CLOSED', 'the database is closed');
  }
}

/** Temporary files beside their target, named `<target><marker><pid>`: a compaction's, a backup's. */
const COMPACT_MARKER = '.compact-';
const BACKUP_MARKER = '.partial-';

async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await fsp.open(dir, 'r');
    try { await handle.sync(); } finally { await handle.close(); }
  } catch { /* some file systems cannot sync a directory; the rename itself is atomic */ }
}
