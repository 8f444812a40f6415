// Copy-on-write B+trees over binary keys (the LMDB model). Readers walk committed pages
// through the buffer pool; a writer copies each page it changes to a page of its own
// transaction, so the committed tree is never touched and readers pinned to it are undisturbed.
//
// Invariants:
// (1) Keys in a node ascend strictly; a branch's key i bounds every key of child i from below
//     (key 0 is ignored), and every child of a level-n branch has level n-1 (0 = leaf).
// (2) An encoded entry never exceeds a quarter of a page: larger cells move to overflow runs,
//     so a split into two halves always fits.
import { ModelVaultError, corruptAt } from './errors.js';
import { PAGE_HEADER_BYTES, PageType, pageBody, sealPage, type PageInfo } from './page.js';
import type { Pager, WriteTxn } from './pager.js';
import type { CachedPage } from './buffer-pool.js';
import { alignedBuffer, alignedBufferUnsafe } from './block-store.js';
import {
  AppendLeaf, BranchView, Staged, EncodedLeaf, LeafView, MutableBranch, MutableLeaf, OverflowRef, asBuffer, branchFixedBytes, childIndexFor,
  decodeNode, emptyPackedRow, entryBytes, firstAtOrAfter, writePackedCells, lastAtOrBefore, leafFixedBytes, packRow, plainCellCount, unpackRow,
  type BranchLike, type Cell, type CellSink, type LeafLike, type NodeLike, type PackedRow, type StoredCell,
} from './btree-node.js';

export type { Cell } from './btree-node.js';

/** Largest single value (after overflow) the tree stores. */
export const MAX_VALUE_BYTES = 256 * 2 ** 20;
const MAX_DEPTH = 32;
const MAX_NODE_ENTRIES = 0xffff;

export interface KeyBounds {
  gt?: Uint8Array;
  gte?: Uint8Array;
  lt?: Uint8Array;
  lte?: Uint8Array;
  reverse?: boolean;
}

/** A run of entries of one leaf that lie within the bounds: indices [start, end). */
export interface LeafSlice {
  readonly leaf: LeafLike;
  readonly start: number;
  readonly end: number;
}

/** How a tree walk gets nodes: committed pages (a reader) or a transaction's view. */
export interface NodeSource {
  readonly pager: Pager;
  node(pageNo: number): NodeLike;
  nodeAsync(pageNo: number): Promise<NodeLike>;
  /** Reads ahead pages that will be needed soon. */
  prefetch(pageNos: readonly number[]): Promise<void>;
  /** `node`, read around a full pool into `scratch`: valid until the next call with it (see CommittedSource). */
  nodeAround(pageNo: number, scratch: Buffer): NodeLike;
}

/**
 * Committed pages through the buffer pool; the decoded node is cached with the page.
 * `maxGeneration` is the reader's snapshot: a page written by a later generation can only
 * mean another process reused it under a read-only open, so the read fails instead of
 * mixing two states.
 */
export class CommittedSource implements NodeSource {
  constructor(readonly pager: Pager, readonly maxGeneration = Infinity) {}

  node(pageNo: number): NodeLike {
    return this.decoded(pageNo, this.pager.readPageSync(pageNo));
  }

  async nodeAsync(pageNo: number): Promise<NodeLike> {
    return this.decoded(pageNo, await this.pager.readPage(pageNo));
  }

  private decoded(pageNo: number, entry: CachedPage): NodeLike {
    this.checkGeneration(pageNo, entry.info.generation);
    return (entry.decoded ??= decodeNode(asBuffer(pageBody(entry.bytes, entry.info)), entry.info, pageNo * this.pager.pageSize)) as NodeLike;
  }

  prefetch(pageNos: readonly number[]): Promise<void> {
    return this.pager.prefetch(pageNos);
  }

  /**
   * A node for a caller done with it before its next call with the same `scratch` buffer (a
   * page's size): from the pool when cached or when the pool has room, otherwise read into
   * `scratch` synchronously, verified and decoded without entering the pool, so scattered
   * reads once the pool is full neither evict its pages nor leave a buffer each for the GC.
   */
  nodeAround(pageNo: number, scratch: Buffer): NodeLike {
    const pool = this.pager.pool;
    if (pool.has(pageNo) || pool.hasRoomFor(1, this.pager.pageSize)) return this.node(pageNo);
    const info = this.pager.readPageAroundSync(pageNo, scratch);
    this.checkGeneration(pageNo, info.generation);
    return decodeNode(asBuffer(pageBody(scratch, info)), info, pageNo * this.pager.pageSize);
  }

  /** @internal A page written after the snapshot: another process reused it under this read-only open. */
  checkGeneration(pageNo: number, generation: number): void {
    if (generation > this.maxGeneration) {
      throw new ModelVaultError('ABORTED', `the file was changed by another process during this read (page ${pageNo} is of generation ${generation}, the snapshot of ${this.maxGeneration}); reopen to read the new state`, { pageNo, generation });
    }
  }
}

/** A write transaction's view: its modified nodes first, then committed pages. */
export class TxnSource extends CommittedSource {
  constructor(readonly txn: WriteTxn) {
    super(txn.pager);
  }
  override node(pageNo: number): NodeLike {
    return this.dirtyNode(pageNo) ?? super.node(pageNo);
  }
  override async nodeAsync(pageNo: number): Promise<NodeLike> {
    return this.dirtyNode(pageNo) ?? super.nodeAsync(pageNo);
  }
  private dirtyNode(pageNo: number): NodeLike | undefined {
    const dirty = this.txn.getDirty(pageNo) as MutableLeaf | MutableBranch | EncodedLeaf | AppendLeaf | undefined;
    return dirty instanceof EncodedLeaf ? dirty.view : dirty;
  }
  override nodeAround(pageNo: number, scratch: Buffer): NodeLike {
    return this.dirtyNode(pageNo) ?? super.nodeAround(pageNo, scratch);
  }
  /** Modified pages are not in the file yet (or hold stale bytes there): never read them ahead. */
  override prefetch(pageNos: readonly number[]): Promise<void> {
    return super.prefetch(pageNos.filter((p) => !this.txn.getDirty(p)));
  }
}

function checkChild(parent: BranchLike, child: NodeLike, pageNo: number, pageSize: number): void {
  const level = child.isLeaf ? 0 : child.level;
  if (level !== parent.level - 1) {
    throw corruptAt(pageNo * pageSize, `node level ${level} under a level-${parent.level} branch`, { pageNo });
  }
}

// ── reading ──────────────────────────────────────────────────────────────────

/** The leaf that would hold `key`, found without awaiting when every page is cached. */
function findLeaf(src: NodeSource, root: number, key: Buffer): LeafLike {
  let node = src.node(root);
  for (let depth = 0; !node.isLeaf; depth++) {
    if (depth > MAX_DEPTH) throw corruptAt(root * src.pager.pageSize, 'tree deeper than any valid tree');
    const pageNo = node.child(childIndexFor(node, key));
    const child = src.node(pageNo);
    checkChild(node, child, pageNo, src.pager.pageSize);
    node = child;
  }
  return node;
}

/** The cells stored under `key`, overflow values resolved, or undefined. */
export async function treeGet(src: NodeSource, root: number, key: Uint8Array): Promise<Cell[] | undefined> {
  if (root === 0) return undefined;
  const k = asBuffer(key);
  const leaf = findLeaf(src, root, k);
  const i = firstAtOrAfter(leaf, k);
  if (i >= leaf.count || leaf.compareKey(i, k) !== 0) return undefined;
  return resolveRow(src.pager, leaf, i);
}

/** The leaf entry stored under `key` (pages read synchronously on a miss), or undefined. */
export function treeFindSync(src: NodeSource, root: number, key: Uint8Array): LeafEntry | undefined {
  if (root === 0) return undefined;
  const k = asBuffer(key);
  const leaf = findLeaf(src, root, k);
  const index = firstAtOrAfter(leaf, k);
  if (index >= leaf.count || leaf.compareKey(index, k) !== 0) return undefined;
  return { leaf, index };
}

/** One entry of a leaf: valid until the caller's next read (the page may leave the pool). */
export interface LeafEntry {
  readonly leaf: LeafLike;
  readonly index: number;
}

/** `treeGet` without awaiting: pages and overflow values are read synchronously on a miss. */
export function treeGetSync(src: NodeSource, root: number, key: Uint8Array): Cell[] | undefined {
  const found = treeFindSync(src, root, key);
  return found && resolveRowSync(src.pager, found.leaf, found.index);
}

/** The cells of entry i, overflow values read synchronously. */
export function resolveRowSync(pager: Pager, leaf: LeafLike, i: number): Cell[] {
  const row: Cell[] = [];
  for (let c = 0; c < leaf.columns; c++) {
    const cell = leaf.cell(i, c);
    row.push(cell instanceof OverflowRef ? readOverflowSync(pager, cell) : cell);
  }
  return row;
}

export function readOverflowSync(pager: Pager, ref: OverflowRef): Buffer {
  checkOverflowRef(pager, ref);
  const out = Buffer.concat(pager.readRunSync(ref.startPage, ref.pageCount, PageType.Overflow));
  if (out.byteLength !== ref.byteLength) throw corruptAt(ref.startPage * pager.pageSize, 'overflow value has the wrong length');
  return out;
}

/**
 * Counts entries within bounds, stopping once `cap` is reached (selectivity estimates):
 * whole leaves are counted from their entry counts, so the cost is one page per ~1,000 entries.
 */
export function countRangeSync(src: NodeSource, root: number, bounds: KeyBounds, cap: number): number {
  if (root === 0) return 0;
  const lower = bounds.gte ? asBuffer(bounds.gte) : bounds.gt ? asBuffer(bounds.gt) : null;
  const upper = bounds.lte ? asBuffer(bounds.lte) : bounds.lt ? asBuffer(bounds.lt) : null;
  let total = 0;
  const walk = (pageNo: number, depth: number): boolean => {
    if (depth > MAX_DEPTH) throw corruptAt(pageNo * src.pager.pageSize, 'tree deeper than any valid tree');
    const node = src.node(pageNo);
    if (node.isLeaf) {
      let start = 0, end = node.count;
      if (bounds.gte) start = firstAtOrAfter(node, asBuffer(bounds.gte));
      else if (bounds.gt) start = lastAtOrBefore(node, asBuffer(bounds.gt)) + 1;
      if (bounds.lte) end = lastAtOrBefore(node, asBuffer(bounds.lte)) + 1;
      else if (bounds.lt) end = firstAtOrAfter(node, asBuffer(bounds.lt));
      total += Math.max(0, end - start);
      return total < cap;
    }
    const from = lower ? childIndexFor(node, lower) : 0;
    const to = upper ? childIndexFor(node, upper) : node.count - 1;
    for (let i = from; i <= to; i++) if (!walk(node.child(i), depth + 1)) return false;
    return true;
  };
  walk(root, 0);
  return Math.min(total, cap);
}

export async function resolveRow(pager: Pager, leaf: LeafLike, i: number): Promise<Cell[]> {
  const row: Cell[] = [];
  for (let c = 0; c < leaf.columns; c++) {
    const cell = leaf.cell(i, c);
    row.push(cell instanceof OverflowRef ? await readOverflow(pager, cell) : cell);
  }
  return row;
}

function checkOverflowRef(pager: Pager, ref: OverflowRef): void {
  const perPage = pager.pageSize - PAGE_HEADER_BYTES;
  if (ref.byteLength > MAX_VALUE_BYTES || ref.pageCount !== Math.max(1, Math.ceil(ref.byteLength / perPage))) {
    throw corruptAt(ref.startPage * pager.pageSize, `overflow reference of ${ref.byteLength} bytes in ${ref.pageCount} pages is inconsistent`);
  }
}

export async function readOverflow(pager: Pager, ref: OverflowRef): Promise<Buffer> {
  checkOverflowRef(pager, ref);
  const bodies = await pager.readRun(ref.startPage, ref.pageCount, PageType.Overflow);
  const out = Buffer.concat(bodies);
  if (out.byteLength !== ref.byteLength) throw corruptAt(ref.startPage * pager.pageSize, 'overflow value has the wrong length');
  return out;
}

/**
 * Walks the leaves within `bounds` in key order (or reverse), yielding index ranges of each
 * leaf. Reads ahead: when the next leaf is not cached, up to 1 MiB of the following sibling
 * leaves is fetched in one read.
 */
export interface SliceOptions {
  /**
   * The caller is done with a slice's views (keys, cells, column vectors) before it pulls the
   * next slice. Then, once the buffer pool is full (from the start, for a tree more than twice
   * the pool), the walk reads runs of leaves into one reused buffer instead of the pool: a long
   * scan neither evicts the pool's pages nor leaves a buffer per page for the GC, so memory
   * stays at cacheSize however large the scan.
   */
  transient?: boolean;
  /**
   * With `transient`: the caller reads the tree once and keeps what it needs itself (rows going
   * into a full sort), so caching its pages would only take memory beside the caller's. A tree
   * more than a quarter of the pool is then read around the pool from its first leaf (the
   * threshold of PostgreSQL's ring buffer for large sequential scans).
   */
  readOnce?: boolean;
}

export async function* leafSlices(src: NodeSource, rootOrLookup: number | (() => Promise<number>), bounds: KeyBounds = {}, opts: SliceOptions = {}): AsyncGenerator<LeafSlice> {
  const root = typeof rootOrLookup === 'number' ? rootOrLookup : await rootOrLookup();
  if (root === 0) return;
  const reverse = bounds.reverse ?? false;
  const lower = bounds.gte ? asBuffer(bounds.gte) : bounds.gt ? asBuffer(bounds.gt) : null;
  const upper = bounds.lte ? asBuffer(bounds.lte) : bounds.lt ? asBuffer(bounds.lt) : null;
  if (lower && upper) {
    const c = lower.compare(upper);
    if (c > 0 || (c === 0 && (bounds.gt || bounds.lt))) return;
  }
  const seek = reverse ? upper : lower;
  const stack: { node: BranchLike; idx: number }[] = [];
  const pageSize = src.pager.pageSize;
  // Read-ahead grows like an OS readahead window: a scan that stops early (limit 5) reads a
  // page or two; a long scan reaches 1 MiB reads after a few leaves.
  const maxReadAhead = Math.max(1, Math.floor((1 << 20) / pageSize));
  let readAheadPages = 1;
  // A write transaction's own pages are not in the file yet: only committed readers read around the pool.
  const transient = (opts.transient ?? false) && !(src instanceof TxnSource) && src instanceof CommittedSource;
  let runBuffer: Buffer | null = null;
  /**
   * The last run read around the pool: page runStart + k is at runBuffer[k * pageSize], valid
   * until the next run is read. Its leaves are decoded one at a time, as the walk reaches them,
   * and only the current one is kept: a run's views all alive at once were what each scavenge
   * found live (a Map of them, cleared per run, even got them promoted), and V8 grew its young
   * generation by 25 MiB of RSS over a 2 GiB scan (measured with --trace-gc).
   */
  let runInfos: PageInfo[] = [];
  let runStart = 0;
  let current: { pageNo: number; leaf: LeafLike } | null = null;
  const runLeaf = (pageNo: number): LeafLike | null => {
    if (current !== null && current.pageNo === pageNo) return current.leaf;
    const k = pageNo - runStart;
    if (k < 0 || k >= runInfos.length) return null;
    const info = runInfos[k];
    (src as CommittedSource).checkGeneration(pageNo, info.generation);
    const page = runBuffer!.subarray(k * pageSize, (k + 1) * pageSize);
    const leaf = decodeNode(asBuffer(pageBody(page, info)), info, pageNo * pageSize) as LeafLike;
    current = { pageNo, leaf };
    return leaf;
  };
  const inRun = (pageNo: number) => pageNo - runStart >= 0 && pageNo - runStart < runInfos.length;
  /**
   * Bulk read (a scan-resistant strategy, as PostgreSQL's ring buffer for large sequential
   * scans): a transient walk over a tree more than twice the pool reads around the pool from
   * its first leaf instead of filling the pool's free room. The pool could keep under half of
   * such a tree, so a later scan would still read most of it around the pool, while the leaves
   * kept would hold up to cacheSize of memory. Below that, filling pays: a 10% filter over 1M
   * orders (95 MiB) ran 26% faster per repeated scan with 64 MiB of them in the pool than
   * reading all of them around it. Not so for a walk read once (SliceOptions.readOnce): a full
   * sort of the same orders ran as fast with bulk reads and peaked about 70 MiB lower. Judged
   * once, at the first level-1 branch, from the fan-outs on the path down (about the tree's
   * leaf count).
   */
  let bulk: boolean | null = null;
  const isBulk = (): boolean => {
    if (bulk === null) {
      let leaves = 1;
      for (const s of stack) leaves *= s.node.count;
      bulk = leaves * pageSize > (opts.readOnce ? 0.25 : 2) * src.pager.pool.capacityBytes;
    }
    return bulk;
  };

  const descend = async (pageNo: number, parent: BranchLike | null, edge: boolean): Promise<LeafLike> => {
    for (;;) {
      if (stack.length > MAX_DEPTH) throw corruptAt(pageNo * pageSize, 'tree deeper than any valid tree');
      const node = runLeaf(pageNo) ?? (await src.nodeAsync(pageNo));
      if (parent) checkChild(parent, node, pageNo, pageSize);
      if (node.isLeaf) return node;
      const idx = !edge && seek ? childIndexFor(node, seek) : reverse ? node.count - 1 : 0;
      stack.push({ node, idx });
      if (node.level === 1) await prefetchFrom(node, idx);
      parent = node;
      pageNo = node.child(idx);
    }
  };
  const prefetchFrom = async (node: BranchLike, idx: number) => {
    if (inRun(node.child(idx)) || src.pager.pool.has(node.child(idx))) return;
    const pages: number[] = [];
    readAheadPages = Math.min(maxReadAhead, readAheadPages * 2);
    for (let k = 0; k < readAheadPages; k++) {
      const i = reverse ? idx - k : idx + k;
      if (i < 0 || i >= node.count) break;
      pages.push(node.child(i));
    }
    if (!transient || (!isBulk() && src.pager.pool.hasRoomFor(pages.length, pageSize))) {
      await src.prefetch(pages);
      return;
    }
    await readAround(pages);
    readAhead(node, idx);
  };
  /** The run of consecutive, uncached pages of `pages` around pages[0] (the leaf needed first). */
  const runAround = (pages: readonly number[]): { start: number; count: number } => {
    const sorted = [...pages].sort((a, b) => a - b);
    const first = sorted.indexOf(pages[0]);
    let lo = first, hi = first;
    const usable = (p: number) => !src.pager.pool.has(p) && p > 0;
    while (lo > 0 && sorted[lo - 1] === sorted[lo] - 1 && usable(sorted[lo - 1])) lo--;
    while (hi + 1 < sorted.length && sorted[hi + 1] === sorted[hi] + 1 && usable(sorted[hi + 1])) hi++;
    return { start: sorted[lo], count: hi - lo + 1 };
  };
  /**
   * The next run, being read into a second buffer while the walk goes through the current one,
   * so the scan does not stand idle waiting for each read (it did for a sixth of a scan's time).
   */
  let ahead: { start: number; buffer: Buffer; read: Promise<PageInfo[]> } | null = null;
  let spare: Buffer | null = null;
  /** Makes the run around pages[0] the current one: the run read ahead if it is that one, else a read now. */
  const readAround = async (pages: readonly number[]) => {
    const { start, count } = runAround(pages);
    runInfos = []; // the caller is past every slice of the previous run (SliceOptions.transient)
    current = null;
    const next = ahead;
    ahead = null;
    if (next !== null) {
      if (next.start === start) {
        const infos = await next.read; // its failure is this read's
        spare = runBuffer;
        runBuffer = next.buffer;
        runStart = start;
        runInfos = infos;
        return;
      }
      await next.read.catch(() => undefined); // not the run needed: only its buffer is
      spare = next.buffer;
    }
    const buffer = (runBuffer ??= alignedBufferUnsafe(maxReadAhead * pageSize));
    const infos = await src.pager.readRunInto(start, count, buffer, PageType.Leaf);
    runStart = start;
    runInfos = infos;
  };
  /** Starts reading the run after the current one under the same branch (walk order), if it is not in the pool. */
  const readAhead = (node: BranchLike, idx: number) => {
    const step = reverse ? -1 : 1;
    let i = idx;
    while (i >= 0 && i < node.count && inRun(node.child(i))) i += step;
    const pages: number[] = [];
    for (let k = 0; k < readAheadPages; k++, i += step) {
      if (i < 0 || i >= node.count) break;
      pages.push(node.child(i));
    }
    if (pages.length === 0 || src.pager.pool.has(pages[0])) return;
    const { start, count } = runAround(pages);
    const buffer = spare ?? alignedBufferUnsafe(maxReadAhead * pageSize);
    spare = null;
    const read = src.pager.readRunInto(start, count, buffer, PageType.Leaf);
    read.catch(() => undefined); // awaited when the walk gets there; a walk that stops first never needs it
    ahead = { start, buffer, read };
  };

  let leaf = await descend(root, null, false);
  for (;;) {
    let start = 0, end = leaf.count;
    if (bounds.gte) start = firstAtOrAfter(leaf, asBuffer(bounds.gte));
    else if (bounds.gt) start = lastAtOrBefore(leaf, asBuffer(bounds.gt)) + 1;
    if (bounds.lte) end = lastAtOrBefore(leaf, asBuffer(bounds.lte)) + 1;
    else if (bounds.lt) end = firstAtOrAfter(leaf, asBuffer(bounds.lt));
    if (start < end) yield { leaf, start, end };
    if (reverse ? start > 0 : end < leaf.count) return; // a bound falls inside this leaf
    // Next leaf: climb to the nearest branch with a further child, then down its edge.
    let top: { node: BranchLike; idx: number } | undefined;
    while ((top = stack[stack.length - 1])) {
      const next = top.idx + (reverse ? -1 : 1);
      if (next >= 0 && next < top.node.count) { top.idx = next; break; }
      stack.pop();
    }
    if (!top) return;
    if (top.node.level === 1) await prefetchFrom(top.node, top.idx);
    leaf = await descend(top.node.child(top.idx), top.node, true);
  }
}

/** Every entry within bounds, overflow values resolved. Convenience over `leafSlices`. */
export async function* treeEntries(src: NodeSource, root: number, bounds: KeyBounds = {}): AsyncGenerator<[Buffer, Cell[]]> {
  const reverse = bounds.reverse ?? false;
  for await (const { leaf, start, end } of leafSlices(src, root, bounds)) {
    for (let k = 0; k < end - start; k++) {
      const i = reverse ? end - 1 - k : start + k;
      yield [Buffer.from(leaf.key(i)), await resolveRow(src.pager, leaf, i)];
    }
  }
}

export async function treeCount(src: NodeSource, root: number, bounds: KeyBounds = {}): Promise<number> {
  let n = 0;
  for await (const s of leafSlices(src, root, bounds)) n += s.end - s.start;
  return n;
}

// ── writing ──────────────────────────────────────────────────────────────────

export type PutMode = 'upsert' | 'insert' | 'update';
export type PutResult = 'inserted' | 'replaced' | 'exists' | 'missing';

/** What merging needs of either mutable node kind (siblings are always of one kind). */
interface Mergeable { bytes: number; count: number; absorb(right: Mergeable): void }

interface PathStep { pageNo: number; node: NodeLike; idx: number }

/**
 * A tree being modified by a write transaction. `root` changes as pages are copied; the
 * caller stores the final root (in the catalog) before committing.
 */
/** Room one entry of a `columns`-column tree may take in a leaf of a `pageSize`-byte page. */
function maxEntryBytesFor(pageSize: number, columns: number): number {
  return Math.floor((pageSize - PAGE_HEADER_BYTES) / 4) - leafFixedBytes(Math.max(columns, 64));
}

/**
 * The most columns a tree of `pageSize` pages can hold in a row at all: a row of that many
 * absent cells and a 16-byte key just fits its leaf share. Wider rows could never be stored.
 */
export function maxRowColumns(pageSize: number): number {
  const fits = (columns: number) => entryBytes(SHORT_KEY, packRow(new Array<null>(columns).fill(null))) <= maxEntryBytesFor(pageSize, columns);
  // Fitting only gets harder with more columns: a binary search below the row format's limit.
  let lo = 64, hi = Math.min(pageSize, 0xffff);
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

const SHORT_KEY = Buffer.alloc(16);

export class BTreeWriter {
  readonly src: TxnSource;
  private readonly capacity: number;
  private readonly maxEntryBytes: number;
  readonly maxKeyBytes: number;
  /** The tree's rightmost leaf while entries arrive in key order (see appendPackedSync); null otherwise. */
  private appendTarget: { pageNo: number; leaf: AppendLeaf } | null = null;

  constructor(readonly txn: WriteTxn, public root: number, public columns: number) {
    this.src = new TxnSource(txn);
    this.capacity = txn.pager.pageSize - PAGE_HEADER_BYTES;
    this.maxEntryBytes = maxEntryBytesFor(txn.pager.pageSize, columns);
    this.maxKeyBytes = Math.floor(txn.pager.pageSize / 16);
  }

  get(key: Uint8Array): Promise<Cell[] | undefined> {
    return treeGet(this.src, this.root, key);
  }

  /** Rejects a key over the size limit; writers check every key of a change before making it. */
  checkKey(key: Uint8Array): void {
    if (key.byteLength > this.maxKeyBytes) {
      throw new ModelVaultError('VALIDATION', `key of ${key.byteLength} bytes exceeds the ${this.maxKeyBytes}-byte limit`, { path: 'key' });
    }
  }

  async put(key: Uint8Array, cells: readonly Cell[], mode: PutMode = 'upsert'): Promise<PutResult> {
    if (cells.length !== this.columns) throw new Error(`internal: ${cells.length} cells for a ${this.columns}-column tree`);
    const k = asBuffer(key); // keys and cells are taken over, not copied: callers pass fresh buffers
    this.checkKey(k);
    const packed = packRow(cells as readonly StoredCell[]);
    if (entryBytes(k, packed) <= this.maxEntryBytes) return this.putPackedSync(k, packed, mode)!;
    if (this.root !== 0) {
      // Look before writing overflow pages, so a refused put leaves none behind.
      const leaf = this.descend(k).at(-1)!.node as LeafLike;
      const pos = firstAtOrAfter(leaf, k);
      const found = pos < leaf.count && leaf.compareKey(pos, k) === 0;
      if (found && mode === 'insert') return 'exists';
      if (!found && mode === 'update') return 'missing';
    } else if (mode === 'update') return 'missing';
    return this.place(k, await this.pack(k, cells), mode);
  }

  /**
   * `put` of an already packed row, without awaiting; null when the entry is too large for a
   * leaf (its cells go to overflow pages: use `put`). Pages not cached are read synchronously.
   * The tree keeps `key` and `packed` unless `scratch` says they are reused buffers: then it
   * copies what it keeps.
   */
  putPackedSync(key: Buffer, packed: PackedRow, mode: PutMode = 'upsert', scratch = false): PutResult | null {
    this.checkKey(key);
    if (entryBytes(key, packed) > this.maxEntryBytes) return null;
    if (mode !== 'update' && this.appendPackedSync(key, packed)) return 'inserted';
    return scratch ? this.place(Buffer.from(key), Buffer.from(packed), mode) : this.place(key, packed, mode);
  }

  /**
   * Puts entries of a zero-column tree (an index) that arrive in ascending order, in chunks as
   * KeySorter.sortedChunks yields them: appended while they stay above every key of the tree, put
   * otherwise (keys are copied), modified pages written out as the transaction's budget asks.
   */
  async putSortedKeys(chunks: AsyncIterable<readonly Buffer[]>): Promise<void> {
    const empty = emptyPackedRow();
    let k = 0;
    for await (const chunk of chunks) {
      for (const key of chunk) this.putPackedSync(key, empty, 'upsert', true); // appended when above every key; copied where kept
      if ((k += chunk.length) >= 1024) {
        k = 0;
        await this.txn.maybeFlush();
      }
    }
    await this.txn.maybeFlush();
  }

  /**
   * The fast path of loads in key order: adds an entry whose key is above every key of the
   * tree to its rightmost leaf, with no search and no per-entry objects (AppendLeaf). `row` is
   * copied, so a scratch buffer will do. Returns false, changing nothing, when the path does
   * not apply (no append leaf yet, a key out of order, an entry needing overflow pages): the
   * caller then puts the entry the general way, which starts a new append leaf when it splits
   * the tree's right edge.
   */
  appendPackedSync(key: Buffer, row: PackedRow): boolean {
    return plainCellCount(row) === this.columns && this.appendCellsSync(key, writePackedCells, row);
  }

  /**
   * appendPackedSync for a row the caller writes cell by cell: `write(sink, arg)` makes one
   * CellSink call per column, straight into the rightmost leaf's column runs (no packed row,
   * no second copy). Returns false, changing nothing, where the path does not apply, and for
   * an entry too large for a leaf: the caller then takes the general path.
   */
  appendCellsSync<T>(key: Buffer, write: (sink: CellSink, arg: T) => void, arg: T): boolean {
    const target = this.appendTarget;
    if (target === null) return false;
    const leaf = target.leaf;
    if (leaf.columns !== this.columns) return false;
    if (leaf.count > 0 && leaf.compareKey(leaf.count - 1, key) >= 0) return false;
    this.checkKey(key);
    // A leaf at its entry limit still stages the entry, to learn whether it is too large.
    const capacity = leaf.count + 1 < MAX_NODE_ENTRIES ? this.capacity : -1;
    const staged = this.stage(leaf, key, write, arg, capacity);
    if (staged === Staged.TooLarge || staged === Staged.WrongColumns) return false;
    let into = target;
    if (staged === Staged.Full) {
      into = this.startAppendLeaf(key);
      if (this.stage(into.leaf, key, write, arg, this.capacity) !== Staged.Appended) throw new Error('internal: an entry did not fit an empty leaf');
    }
    // A flush wrote the leaf out since it was last changed: it is the transaction's page still.
    if (this.txn.getDirty(into.pageNo) !== into.leaf) this.txn.setDirty(into.pageNo, into.leaf);
    return true;
  }

  private stage<T>(leaf: AppendLeaf, key: Buffer, write: (sink: CellSink, arg: T) => void, arg: T, capacity: number): Staged {
    const sink = leaf.beginStaged();
    try {
      write(sink, arg);
    } catch (err) {
      leaf.dropStaged();
      throw err;
    }
    return leaf.commitStaged(key, capacity, this.maxEntryBytes);
  }

  /** A new, empty rightmost leaf after the full one, linked into the right edge of the branches. */
  private startAppendLeaf(firstKey: Buffer): { pageNo: number; leaf: AppendLeaf } {
    const full = this.appendTarget!;
    // The full leaf waits in page form: its exact bytes, without the per-entry offsets.
    if (this.txn.getDirty(full.pageNo) === full.leaf) this.txn.setDirty(full.pageNo, EncodedLeaf.of(full.leaf));
    const next = { pageNo: this.txn.allocatePage(), leaf: new AppendLeaf(this.columns, full.leaf) };
    this.txn.setDirty(next.pageNo, next.leaf);
    const separator = Buffer.from(firstKey);
    const path = this.descend(separator); // the right edge: the key is above every key
    if (path.pop()!.pageNo !== full.pageNo) throw new Error('internal: the append leaf is not the rightmost leaf');
    if (path.length === 0) {
      const root = new MutableBranch(1, [Buffer.from(full.leaf.key(0)), separator], [full.pageNo, next.pageNo]);
      this.root = this.txn.allocatePage();
      this.txn.setDirty(this.root, root);
    } else {
      this.makeWritable(path);
      const parent = path[path.length - 1].node as MutableBranch;
      parent.insert(parent.count, separator, next.pageNo);
      this.splitUp(path, true, false);
    }
    this.appendTarget = next;
    return next;
  }

  private place(k: Buffer, stored: PackedRow, mode: PutMode): PutResult {
    if (this.root === 0) {
      if (mode === 'update') return 'missing';
      this.root = this.txn.allocatePage();
      const leaf = this.newRightmostLeaf(this.root, k, stored);
      this.txn.setDirty(this.root, leaf);
      return 'inserted';
    }
    const path = this.descend(k);
    const leaf = path[path.length - 1].node as LeafLike;
    const pos = firstAtOrAfter(leaf, k);
    const found = pos < leaf.count && leaf.compareKey(pos, k) === 0;
    if (found && mode === 'insert') return 'exists';
    if (!found && mode === 'update') return 'missing';
    const rightEdge = path.every((step) => step.node.isLeaf || step.idx === step.node.count - 1);
    this.makeWritable(path);
    const target = path[path.length - 1].node as MutableLeaf;
    if (found) {
      this.freeOverflow(target.rows[pos]);
      target.replace(pos, stored);
    } else {
      target.insert(pos, k, stored);
    }
    this.splitUp(path, !found && pos === target.count - 1, rightEdge);
    return found ? 'replaced' : 'inserted';
  }

  /**
   * The rightmost leaf of the tree, holding one entry: an append leaf (and the append target)
   * when the entry has no overflow reference, else a MutableLeaf.
   */
  private newRightmostLeaf(pageNo: number, key: Buffer, row: PackedRow): MutableLeaf | AppendLeaf {
    if (plainCellCount(row) !== this.columns) {
      const leaf = new MutableLeaf(this.columns);
      leaf.insert(0, key, row);
      return leaf;
    }
    const leaf = new AppendLeaf(this.columns);
    leaf.append(key, row);
    this.appendTarget = { pageNo, leaf };
    return leaf;
  }

  async delete(key: Uint8Array): Promise<boolean> {
    if (this.root === 0) return false;
    const k = asBuffer(key);
    const path = this.descend(k);
    const leaf = path[path.length - 1].node as LeafLike;
    const pos = firstAtOrAfter(leaf, k);
    if (pos >= leaf.count || leaf.compareKey(pos, k) !== 0) return false;
    this.makeWritable(path);
    const target = path[path.length - 1].node as MutableLeaf;
    this.freeOverflow(target.rows[pos]);
    target.remove(pos);
    this.rebalanceUp(path);
    return true;
  }

  /** Frees every page of the tree (dropping a collection or index). */
  async destroy(): Promise<void> {
    const walk = async (pageNo: number): Promise<void> => {
      const node = await this.src.nodeAsync(pageNo);
      if (node.isLeaf) {
        for (let i = 0; i < node.count; i++) {
          for (let c = 0; c < node.columns; c++) {
            const cell = node.cell(i, c);
            if (cell instanceof OverflowRef) this.txn.freePage(cell.startPage, cell.pageCount);
          }
        }
      } else {
        for (let i = 0; i < node.count; i++) await walk(node.child(i));
      }
      this.txn.freePage(pageNo);
    };
    this.appendTarget = null;
    if (this.root !== 0) await walk(this.root);
    this.root = 0;
  }

  private descend(key: Buffer): PathStep[] {
    const path: PathStep[] = [];
    let pageNo = this.root;
    let node = this.src.node(pageNo);
    for (;;) {
      if (path.length > MAX_DEPTH) throw corruptAt(pageNo * this.txn.pager.pageSize, 'tree deeper than any valid tree');
      if (node.isLeaf) {
        path.push({ pageNo, node, idx: -1 });
        return path;
      }
      const idx = childIndexFor(node, key);
      path.push({ pageNo, node, idx });
      const childNo = node.child(idx);
      const child = this.src.node(childNo);
      checkChild(node, child, childNo, this.txn.pager.pageSize);
      pageNo = childNo;
      node = child;
    }
  }

  /** Copies every node on the path into the transaction (once), relinking parents. */
  private makeWritable(path: PathStep[]): void {
    for (let l = 0; l < path.length; l++) {
      const step = path[l];
      const w = this.writable(step.pageNo, step.node);
      step.pageNo = w.pageNo;
      step.node = w.node;
      if (l === 0) this.root = w.pageNo;
      else (path[l - 1].node as MutableBranch).children[path[l - 1].idx] = w.pageNo;
    }
  }

  private writable(pageNo: number, node?: NodeLike): { pageNo: number; node: MutableLeaf | MutableBranch } {
    // Any change but an append makes the append leaf an ordinary one (and ends the fast path).
    if (this.appendTarget?.pageNo === pageNo) this.appendTarget = null;
    const dirty = this.txn.getDirty(pageNo) as MutableLeaf | MutableBranch | EncodedLeaf | AppendLeaf | undefined;
    if (dirty && !(dirty instanceof EncodedLeaf) && !(dirty instanceof AppendLeaf)) {
      if (dirty.isLeaf) dirty.widen(this.columns); // written before a column was added in this transaction
      return { pageNo, node: dirty };
    }
    const current = dirty instanceof EncodedLeaf ? dirty.view : dirty ?? node ?? this.src.node(pageNo);
    const copy = current.isLeaf ? MutableLeaf.from(current, this.columns) : MutableBranch.from(current);
    if (this.txn.owns(pageNo)) {
      this.txn.setDirty(pageNo, copy);
      return { pageNo, node: copy };
    }
    const fresh = this.txn.allocatePage();
    this.txn.freePage(pageNo);
    this.txn.setDirty(fresh, copy);
    return { pageNo: fresh, node: copy };
  }

  private tooBig(node: MutableLeaf | MutableBranch): boolean {
    if (node.count >= MAX_NODE_ENTRIES) return true;
    return node.bytes > this.capacity && (!node.isLeaf || node.tightBytes() > this.capacity);
  }

  /**
   * Splits overfull nodes from the leaf upwards; `appended` keeps left halves full for sorted
   * loads, and at the tree's `rightEdge` makes the new rightmost leaf an append leaf.
   */
  private splitUp(path: PathStep[], appended: boolean, rightEdge: boolean): void {
    for (let l = path.length - 1; l >= 0; l--) {
      const node = path[l].node as MutableLeaf | MutableBranch;
      if (!this.tooBig(node)) return;
      const at = appended ? node.count - 1 : this.splitPoint(node);
      const right = node.splitOff(at);
      const rightPage = this.txn.allocatePage();
      this.txn.setDirty(rightPage, appended && rightEdge && right.isLeaf ? this.newRightmostLeaf(rightPage, right.keys[0], right.rows[0]) : right);
      // A sorted load never comes back to a leaf it split off at the right edge: page form now.
      if (appended && node.isLeaf) this.txn.setDirty(path[l].pageNo, EncodedLeaf.of(node));
      const separator = Buffer.from(right.key(0));
      if (l === 0) {
        const level = node.isLeaf ? 1 : node.level + 1;
        const root = new MutableBranch(level, [Buffer.from(node.key(0)), separator], [path[0].pageNo, rightPage]);
        this.root = this.txn.allocatePage();
        this.txn.setDirty(this.root, root);
        return;
      }
      const parent = path[l - 1].node as MutableBranch;
      const at2 = path[l - 1].idx + 1;
      parent.insert(at2, separator, rightPage);
      appended = appended && at2 === parent.count - 1;
    }
  }

  private splitPoint(node: MutableLeaf | MutableBranch): number {
    const half = node.bytes / 2;
    let acc = node.isLeaf ? leafFixedBytes(node.columns) : branchFixedBytes;
    for (let i = 0; i < node.count - 1; i++) {
      acc += node.isLeaf ? entryBytes(node.keys[i], node.rows[i]) : 8 + node.keys[i].byteLength;
      if (acc >= half) return Math.max(1, i + 1);
    }
    return node.count - 1;
  }

  /** After a removal: drops empty nodes, merges small ones with a sibling, shrinks the root. */
  private rebalanceUp(path: PathStep[]): void {
    for (let l = path.length - 1; l >= 1; l--) {
      const node = path[l].node as MutableLeaf | MutableBranch;
      const parent = path[l - 1].node as MutableBranch;
      const idx = path[l - 1].idx;
      if (node.count === 0) {
        this.txn.freePage(path[l].pageNo);
        parent.remove(idx);
        continue;
      }
      if (node.bytes >= this.capacity / 4 || parent.count < 2) break;
      const sibIdx = idx + 1 < parent.count ? idx + 1 : idx - 1;
      const sib = this.writable(parent.children[sibIdx]);
      parent.children[sibIdx] = sib.pageNo;
      const [leftIdx, rightIdx] = sibIdx > idx ? [idx, sibIdx] : [sibIdx, idx];
      const left = (leftIdx === idx ? node : sib.node) as Mergeable;
      const right = (rightIdx === idx ? node : sib.node) as Mergeable;
      const fixed = node.isLeaf ? leafFixedBytes(node.columns) : branchFixedBytes;
      // A branch's key 0 is no bound; once merged, right's first child is bounded by the parent's separator.
      const bound = node.isLeaf ? null : parent.keys[rightIdx];
      const grow = bound ? bound.byteLength - (right as unknown as MutableBranch).keys[0].byteLength : 0;
      if (left.bytes + right.bytes + grow - fixed > this.capacity || left.count + right.count >= MAX_NODE_ENTRIES) break;
      if (bound) (right as unknown as MutableBranch).setKey(0, bound);
      left.absorb(right);
      this.txn.freePage(parent.children[rightIdx]);
      parent.remove(rightIdx);
    }
    // Shrink the root while it is a branch with a single child, or an empty leaf.
    for (;;) {
      const root = this.src.node(this.root);
      if (!root.isLeaf && root.count === 1) {
        this.txn.freePage(this.root);
        this.root = root.child(0);
      } else if (!root.isLeaf && root.count === 0) {
        this.txn.freePage(this.root);
        this.root = 0;
        return;
      } else if (root.isLeaf && root.count === 0) {
        this.txn.freePage(this.root);
        this.root = 0;
        return;
      } else {
        return;
      }
    }
  }

  /** Packs cells for a leaf, moving the largest to overflow runs until the entry fits. */
  private async pack(key: Buffer, cells: readonly Cell[]): Promise<PackedRow> {
    const stored: StoredCell[] = cells.map((c) => (c === null ? null : asBuffer(c)));
    let packed = packRow(stored);
    while (entryBytes(key, packed) > this.maxEntryBytes) {
      let largest = -1;
      for (let c = 0; c < stored.length; c++) {
        const cell = stored[c];
        if (cell instanceof Buffer && cell.byteLength > OverflowRef.BYTES * 4 && (largest < 0 || cell.byteLength > (stored[largest] as Buffer).byteLength)) largest = c;
      }
      if (largest < 0) {
        // Every cell left is too small to move out: the row's columns alone overflow the leaf.
        throw new ModelVaultError('VALIDATION', `a row of ${cells.length} columns takes ${Math.ceil(entryBytes(key, packed))} bytes of a leaf, more than the `
          + `${Math.max(0, this.maxEntryBytes)} that ${this.txn.pager.pageSize}-byte pages leave for one row of that many columns: use fewer fields or a larger pageSize`, { path: '' });
      }
      stored[largest] = await this.writeOverflow(stored[largest] as Buffer);
      packed = packRow(stored);
    }
    return packed;
  }

  private async writeOverflow(value: Buffer): Promise<OverflowRef> {
    if (value.byteLength > MAX_VALUE_BYTES) {
      throw new ModelVaultError('VALIDATION', `value of ${value.byteLength} bytes exceeds the ${MAX_VALUE_BYTES}-byte limit`, {});
    }
    const pageSize = this.txn.pager.pageSize;
    const perPage = pageSize - PAGE_HEADER_BYTES;
    const pages = Math.max(1, Math.ceil(value.byteLength / perPage));
    const start = this.txn.allocateRun(pages);
    const image = alignedBuffer(pages * pageSize);
    for (let p = 0; p < pages; p++) {
      const chunk = value.subarray(p * perPage, (p + 1) * perPage);
      const page = image.subarray(p * pageSize, (p + 1) * pageSize);
      page.set(chunk, PAGE_HEADER_BYTES);
      sealPage(page, PageType.Overflow, start + p, this.txn.generation, chunk.byteLength);
    }
    await this.txn.writeRaw(start, image);
    return new OverflowRef(start, pages, value.byteLength);
  }

  private freeOverflow(row: PackedRow): void {
    for (const cell of unpackRow(row)) if (cell instanceof OverflowRef) this.txn.freePage(cell.startPage, cell.pageCount);
  }
}

/** Structural check of one tree for verify(): order, levels, bounds; returns pages visited. */
export async function checkTree(src: NodeSource, root: number, visit: (pageNo: number) => void): Promise<number> {
  if (root === 0) return 0;
  let entries = 0;
  const pageSize = src.pager.pageSize;
  const walk = async (pageNo: number, low: Buffer | null, high: Buffer | null, level: number | null, depth: number): Promise<void> => {
    if (depth > MAX_DEPTH) throw corruptAt(pageNo * pageSize, 'tree deeper than any valid tree');
    visit(pageNo);
    const node = await src.nodeAsync(pageNo);
    const nodeLevel = node.isLeaf ? 0 : node.level;
    if (level !== null && nodeLevel !== level) throw corruptAt(pageNo * pageSize, `node level ${nodeLevel}, expected ${level}`);
    const first = node.isLeaf ? 0 : 1; // a branch's key 0 is no bound (see childIndexFor): not checked
    for (let i = first; i < node.count; i++) {
      const key = node.key(i);
      if (i > first && node.compareKey(i - 1, key) >= 0) throw corruptAt(pageNo * pageSize, `keys out of order at entry ${i}`);
      if (low && low.compare(key) > 0) throw corruptAt(pageNo * pageSize, `key ${i} below its parent's bound`);
      if (high && high.compare(key) <= 0) throw corruptAt(pageNo * pageSize, `key ${i} above its parent's bound`);
    }
    if (node.isLeaf) {
      entries += node.count;
      for (let i = 0; i < node.count; i++) {
        for (let c = 0; c < node.columns; c++) {
          const cell = node.cell(i, c);
          if (cell instanceof OverflowRef) {
            for (let p = cell.startPage; p < cell.startPage + cell.pageCount; p++) visit(p);
            await readOverflow(src.pager, cell);
          }
        }
      }
      return;
    }
    for (let i = 0; i < node.count; i++) {
      const lo = i === 0 ? low : Buffer.from(node.key(i));
      const hi = i + 1 < node.count ? Buffer.from(node.key(i + 1)) : high;
      await walk(node.child(i), lo, hi, nodeLevel - 1, depth + 1);
    }
  };
  await walk(root, null, null, null, 0);
  return entries;
}

export { LeafView, BranchView };
