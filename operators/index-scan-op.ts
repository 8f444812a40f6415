// Index scan: walks an index tree within key bounds, takes each entry's primary key (the key
// suffix after the index components) and fetches the rows from the rows tree. A residual
// predicate (the part of the filter the index bounds do not cover) runs on the fetched rows.
//
// Rows are fetched a chunk of keys at a time, in primary-key order: one sweep through the rows
// tree per chunk, which stays on the current leaf while the next key falls inside it (no
// descent per row) and decodes the needed columns straight from that leaf's column views into
// vectors at each row's index-order position. Successive sweeps alternate direction, so an
// LRU buffer pool smaller than the range still holds the leaves the previous sweep touched
// last instead of evicting each one just before it is needed again.
import { LeafView, OverflowRef, childIndexFor, firstAtOrAfter, type BranchLike, type DictColumn, type LeafLike } from '../storage/btree-node.js';
import { alignedBufferUnsafe } from '../storage/block-store.js';
import { readOverflow, type KeyBounds, type NodeSource } from '../storage/btree.js';
import { ModelVaultError } from '../storage/errors.js';
import { decodeKeyParts, keyPart, keySuffixStart, type KeyPart } from '../storage/keys.js';
import type { Pager } from '../storage/pager.js';
import { gatherBatch, sliceBatch, type Batch, type Vector } from './batch.js';
import { compileSelector, exprToString, type Expr } from './expr.js';
import { throwIfAborted, type ExecContext, type Operator } from './operator.js';
import { decodeUtf8Cell, dictionaryCacheOf, dictionaryString, utf8Slice, type ScanColumn } from './scan-op.js';

/** Largest chunk of keys fetched in one sweep (bounds the vectors a sweep holds). */
const MAX_CHUNK = 16_384;
const MAX_DEPTH = 32;

/** Direction of the next sweep per pager: flipped after every sweep, across queries too. */
const sweepDirection = new WeakMap<Pager, { descending: boolean }>();

export class IndexScanOp implements Operator {
  readonly name = 'IndexScan';

  constructor(
    readonly indexTree: string,
    readonly rowsTree: string,
    readonly label: string,
    readonly indexParts: number,
    readonly bounds: KeyBounds,
    readonly boundsText: string,
    readonly columns: readonly ScanColumn[],
    readonly residual: Expr | null,
    /**
     * Keys of the first chunk. A query that may stop early (limit, first()) starts small so it
     * fetches few rows; otherwise the planner passes the estimated range size so one sweep
     * fetches everything. Later chunks grow fourfold up to MAX_CHUNK.
     */
    readonly firstChunk = 16,
  ) {}

  children(): readonly Operator[] { return []; }

  describe(): string {
    const parts = [this.label, `bounds ${this.boundsText}`];
    if (this.bounds.reverse) parts.push('reverse');
    if (this.residual) parts.push(`residual filter: ${exprToString(this.residual)}`);
    return parts.join(', ');
  }

  async *execute(ctx: ExecContext): AsyncGenerator<Batch> {
    const rowsRoot = await ctx.reader.treeRoot(this.rowsTree);
    const src = ctx.reader.nodeSource;
    const selector = this.residual ? compileSelector(this.residual) : null;
    const direction = sweepDirection.get(src.pager) ?? { descending: false };
    sweepDirection.set(src.pager, direction);
    // Primary keys of the current chunk, back to back in one buffer; both grow as chunks do
    // (a small query's few keys fit Node's shared pool instead of a fresh 64 KiB allocation).
    let keyBytes = Buffer.allocUnsafe(2048);
    let keyEnds = new Uint32Array(64);
    let n = 0;
    let want = Math.max(1, Math.min(MAX_CHUNK, Math.floor(this.firstChunk)));
    const self = this;
    async function* flush(): AsyncGenerator<Batch> {
      const count = n;
      n = 0;
      const batch = await self.fetch(src, rowsRoot, keyBytes, keyEnds, count, direction.descending);
      direction.descending = !direction.descending;
      let out = batch;
      if (selector && out.length > 0) {
        const sel = new Uint32Array(out.length);
        const kept = selector(out, sel, -1);
        if (kept < out.length) out = gatherBatch(out, sel, kept);
      }
      for (let at = 0; at < out.length; at += ctx.batchSize) yield sliceBatch(out, at, Math.min(out.length, at + ctx.batchSize));
    }
    for await (const slice of ctx.reader.slices(this.indexTree, this.bounds)) {
      throwIfAborted(ctx.signal);
      for (let k = 0; k < slice.end - slice.start; k++) {
        const i = this.bounds.reverse ? slice.end - 1 - k : slice.start + k;
        const key = slice.leaf.key(i);
        const pkAt = keySuffixStart(key, this.indexParts), pkBytes = key.byteLength - pkAt;
        const from = n === 0 ? 0 : keyEnds[n - 1];
        if (from + pkBytes > keyBytes.byteLength) {
          const grown = Buffer.allocUnsafe(Math.max(keyBytes.byteLength * 2, from + pkBytes));
          keyBytes.copy(grown, 0, 0, from);
          keyBytes = grown;
        }
        if (n >= keyEnds.length) { const e = new Uint32Array(keyEnds.length * 2); e.set(keyEnds); keyEnds = e; }
        key.copy(keyBytes, from, pkAt);
        keyEnds[n++] = from + pkBytes;
        if (n >= want) {
          want = Math.min(want * 4, MAX_CHUNK);
          yield* flush();
        }
      }
    }
    if (n > 0) yield* flush();
  }

  /**
   * The rows of `count` primary keys (in index order), fetched in key order. Keys with no row
   * are dropped (an index entry always has its row within one snapshot; this is only defence).
   */
  private async fetch(src: NodeSource, root: number, keyBytes: Buffer, keyEnds: Uint32Array, count: number, descending: boolean): Promise<Batch> {
    const keyAt = (p: number) => keyBytes.subarray(p === 0 ? 0 : keyEnds[p - 1], keyEnds[p]);
    const order = sortKeys(keyBytes, keyEnds, count);

    const cols = this.columns;
    const f64: (Float64Array | null)[] = cols.map((c) => (c.decoder.kind === 'f64' ? new Float64Array(count) : null));
    const anyv: (unknown[] | null)[] = cols.map((c) => (c.decoder.kind === 'f64' ? null : new Array(count).fill(undefined)));
    const absent: (Uint8Array | null)[] = cols.map(() => null);
    const found = new Uint8Array(count);
    let missing = 0;
    const overflow: { col: number; pos: number; ref: OverflowRef }[] = [];

    // Per column, how to read it from the current leaf (set up once per leaf, not per row).
    const mode = new Uint8Array(cols.length);
    const f64Views: (Float64Array | null)[] = cols.map(() => null);
    const bits: (Uint8Array | null)[] = cols.map(() => null);
    const datas: (Buffer | null)[] = cols.map(() => null);
    const offsets: (Uint32Array | null)[] = cols.map(() => null);
    const widths = new Uint32Array(cols.length);
    const dicts: ((string | undefined)[] | null)[] = cols.map(() => null);
    const dictViews: (DictColumn | null)[] = cols.map(() => null);
    const codes: (Uint8Array | null)[] = cols.map(() => null);
    const bind = (leaf: LeafLike) => {
      for (let c = 0; c < cols.length; c++) {
        const col = cols[c];
        mode[c] = CELL;
        if (!(leaf instanceof LeafView)) continue;
        if (col.column >= leaf.columns) { mode[c] = ABSENT; continue; }
        const view = leaf.column(col.column);
        bits[c] = view.absent;
        if (col.decoder.kind === 'f64' && view.kind === 'fixed' && view.f64 !== null) {
          mode[c] = F64;
          f64Views[c] = view.f64;
        } else if (col.decoder.kind === 'utf8' && view.kind === 'fixed') {
          mode[c] = UTF8_FIXED;
          datas[c] = view.data as Buffer;
          widths[c] = view.width;
        } else if (col.decoder.kind === 'utf8' && view.kind === 'dict') {
          mode[c] = UTF8_DICT;
          dictViews[c] = view;
          dicts[c] = dictionaryCacheOf(view);
          codes[c] = view.codes;
        } else if (col.decoder.kind === 'utf8' && view.kind === 'variable' && view.overflow === null) {
          mode[c] = UTF8_VAR;
          datas[c] = view.data;
          offsets[c] = view.offsets;
        }
      }
    };

    // Pass 1: the leaf page of every key, in sweep order, through the (cached) branch pages
    // only. Pass 2 then reads the leaves in that order, a window of distinct pages at a time.
    const sweep = new Uint32Array(count);
    const pages = new Float64Array(count);
    const distinct: number[] = [];
    let lastPage = -1;
    let lastBranch: BranchLike | null = null;
    for (let s = 0; s < count; s++) {
      const pos = order[descending ? count - 1 - s : s];
      sweep[s] = pos;
      const key = keyAt(pos);
      // Neighbouring keys share a level-1 branch: look there first.
      let page = -1;
      if (lastBranch !== null && lastBranch.count > 1) {
        const idx = childIndexFor(lastBranch, key);
        if (idx > 0 && idx < lastBranch.count - 1) page = lastBranch.child(idx);
      }
      if (page < 0) {
        const found = leafPageOf(src, root, key);
        page = found.page;
        lastBranch = found.parent;
      }
      pages[s] = page;
      if (page !== lastPage) { distinct.push(page); lastPage = page; }
    }
    // Missing leaves: from the OS page cache, synchronous reads (a few µs each, with a yield to
    // the event loop every so often) into one reused buffer once the pool is full, like a
    // table scan's; from a disk, read-ahead of a window at a time into the pool, reads in
    // flight together (see Pager.syncReadsAreFast). Every 32nd window is read synchronously
    // again, so the choice follows the cache as it warms.
    const READ_AHEAD = 16;
    let readAheadTo = 0;
    let d = -1;
    let windows = 0;
    let readAround = true;
    let scratch: Buffer | null = null;

    let leaf: LeafLike | null = null;
    lastPage = -1;
    for (let s = 0; s < count; s++) {
      const pos = sweep[s];
      const key = keyAt(pos);
      if (pages[s] !== lastPage) {
        lastPage = pages[s];
        d++;
        if (d >= readAheadTo - READ_AHEAD / 2 && readAheadTo < distinct.length) {
          const to = Math.min(distinct.length, Math.max(readAheadTo, d) + READ_AHEAD);
          readAround = src.pager.syncReadsAreFast || ++windows % 32 === 0;
          if (readAround) await yieldToEventLoop();
          else await src.prefetch(distinct.slice(Math.max(readAheadTo, d), to));
          readAheadTo = to;
        }
        // Each leaf is done with before the next is read: misses may be read around a full pool.
        leaf = (readAround ? src.nodeAround(lastPage, (scratch ??= alignedBufferUnsafe(src.pager.pageSize))) : src.node(lastPage)) as LeafLike;
        if (!leaf.isLeaf) throw new ModelVaultError('CORRUPT', 'a branch where a leaf was expected', { offset: lastPage * src.pager.pageSize });
        bind(leaf);
      }
      if (leaf === null) continue;
      const i = firstAtOrAfter(leaf, key);
      if (i >= leaf.count || leaf.compareKey(i, key) !== 0) { missing++; continue; }
      found[pos] = 1;
      for (let c = 0; c < cols.length; c++) {
        const m = mode[c];
        const b = bits[c];
        if (m === ABSENT || (m !== CELL && b !== null && (b[i >> 3] & (1 << (i & 7))) !== 0)) {
          if (f64[c] !== null) (absent[c] ??= new Uint8Array(count))[pos] = 1;
          continue;
        }
        if (m === F64) { f64[c]![pos] = f64Views[c]![i]; continue; }
        if (m === UTF8_VAR) { const o = offsets[c]!; anyv[c]![pos] = utf8Slice(datas[c]!, o[i], o[i + 1]); continue; }
        if (m === UTF8_DICT) { anyv[c]![pos] = dictionaryString(dictViews[c]!, dicts[c]!, codes[c]![i]); continue; }
        if (m === UTF8_FIXED) { const w = widths[c]; anyv[c]![pos] = utf8Slice(datas[c]!, i * w, i * w + w); continue; }
        const col = cols[c];
        const cell = leaf.cell(i, col.column);
        if (f64[c] !== null) {
          if (cell === null || cell instanceof OverflowRef) (absent[c] ??= new Uint8Array(count))[pos] = 1;
          else f64[c]![pos] = Buffer.from(cell.buffer, cell.byteOffset, cell.byteLength).readDoubleLE(0);
        } else if (cell instanceof OverflowRef) overflow.push({ col: c, pos, ref: cell });
        else if (cell !== null) anyv[c]![pos] = decodeCell(col, cell);
      }
    }
    for (const o of overflow) {
      const col = cols[o.col];
      const bytes = await readOverflow(src.pager, o.ref);
      anyv[o.col]![o.pos] = decodeCell(col, bytes);
    }
    const vectors = new Map<string, Vector>();
    cols.forEach((col, c) => {
      vectors.set(col.path, f64[c] !== null ? { kind: 'f64', values: f64[c]!, absent: absent[c] } : { kind: 'any', values: anyv[c]! });
    });
    const batch: Batch = { length: count, vectors };
    if (missing === 0) return batch;
    const keep = new Uint32Array(count - missing);
    let k = 0;
    for (let p = 0; p < count; p++) if (found[p]) keep[k++] = p;
    return gatherBatch(batch, keep, k);
  }
}

/**
 * The number of index entries within bounds, as batches of that many rows with no columns: what
 * count() needs when the index bounds decide every condition (the planner checks), so no row is
 * fetched and no cell decoded.
 */
export class IndexCountOp implements Operator {
  readonly name = 'IndexCount';

  constructor(readonly indexTree: string, readonly label: string, readonly bounds: KeyBounds, readonly boundsText: string) {}

  children(): readonly Operator[] { return []; }

  describe(): string {
    return `${this.label}, bounds ${this.boundsText}, counts index entries without reading rows`;
  }

  async *execute(ctx: ExecContext): AsyncGenerator<Batch> {
    for await (const slice of ctx.reader.slices(this.indexTree, this.bounds)) {
      throwIfAborted(ctx.signal);
      yield { length: slice.end - slice.start, vectors: new Map() };
    }
  }
}

/** A column an index-only scan reads from the index keys: the key part at `part`. */
export interface KeyColumn {
  readonly path: string;
  readonly part: number;
  /** Number-valued parts (int, timestamp) go in an f64 vector. */
  readonly numeric: boolean;
}

/**
 * An index scan whose columns are all parts of the index keys (the index fields, then the
 * primary key): the rows come from the index entries in bounds, decoded from the keys, with no
 * fetch from the rows tree. A residual filter, when the bounds do not decide every condition,
 * runs on the decoded columns.
 */
export class IndexOnlyScanOp implements Operator {
  readonly name = 'IndexOnlyScan';

  constructor(
    readonly indexTree: string,
    readonly label: string,
    readonly bounds: KeyBounds,
    readonly boundsText: string,
    readonly columns: readonly KeyColumn[],
    readonly residual: Expr | null,
  ) {}

  children(): readonly Operator[] { return []; }

  describe(): string {
    const parts = [this.label, `bounds ${this.boundsText}`, `columns (${this.columns.map((c) => c.path).join(', ')}) from the index keys`];
    if (this.bounds.reverse) parts.push('reverse');
    if (this.residual) parts.push(`residual filter: ${exprToString(this.residual)}`);
    return parts.join(', ');
  }

  async *execute(ctx: ExecContext): AsyncGenerator<Batch> {
    const selector = this.residual ? compileSelector(this.residual) : null;
    const reverse = this.bounds.reverse ?? false;
    const wanted: boolean[] = [];
    for (const c of this.columns) wanted[c.part] = true;
    for (let i = 0; i < wanted.length; i++) wanted[i] ??= false;
    const parts: KeyPart[] = [];
    for await (const slice of ctx.reader.slices(this.indexTree, this.bounds)) {
      throwIfAborted(ctx.signal);
      const n = slice.end - slice.start;
      const f64 = this.columns.map((c) => (c.numeric ? new Float64Array(n) : null));
      const any = this.columns.map((c) => (c.numeric ? null : new Array<unknown>(n)));
      const absent: (Uint8Array | null)[] = this.columns.map(() => null);
      for (let k = 0; k < n; k++) {
        decodeKeyParts(slice.leaf.key(reverse ? slice.end - 1 - k : slice.start + k), wanted, parts);
        for (let c = 0; c < this.columns.length; c++) {
          const v = parts[this.columns[c].part];
          if (f64[c] !== null) {
            if (typeof v === 'number') f64[c]![k] = v;
            else (absent[c] ??= new Uint8Array(n))[k] = 1;
          } else {
            any[c]![k] = v === null ? undefined : v;
          }
        }
      }
      const vectors = new Map<string, Vector>();
      this.columns.forEach((col, c) => vectors.set(col.path, f64[c] !== null ? { kind: 'f64', values: f64[c]!, absent: absent[c] } : { kind: 'any', values: any[c]! }));
      let batch: Batch = { length: n, vectors };
      if (selector) {
        const sel = new Uint32Array(n);
        const kept = selector(batch, sel, -1);
        if (kept < n) batch = gatherBatch(batch, sel, kept);
      }
      if (batch.length > 0) yield batch;
    }
  }
}

/** One min() or max() read from the edge of an index range: the key part at `part`. */
export interface IndexEdge {
  readonly name: string;
  readonly tree: string;
  readonly label: string;
  readonly bounds: KeyBounds;
  readonly part: number;
  readonly max: boolean;
  /** Number-valued parts (int, timestamp) go in an f64 vector. */
  readonly numeric: boolean;
}

/**
 * min()/max() without groups from index edges: the first entry in bounds (the planner starts the
 * bounds past absent values' null parts) or the last one; one result row, null where the range
 * is empty. Reads a root-to-leaf path per aggregate instead of every row.
 */
export class IndexEdgesOp implements Operator {
  readonly name = 'IndexMinMax';

  constructor(readonly edges: readonly IndexEdge[]) {}

  children(): readonly Operator[] { return []; }

  describe(): string {
    return this.edges.map((e) => `${e.name} = ${e.max ? 'max' : 'min'} from the ${e.max ? 'last' : 'first'} entry of ${e.label}`).join('; ');
  }

  async *execute(ctx: ExecContext): AsyncGenerator<Batch> {
    const vectors = new Map<string, Vector>();
    for (const e of this.edges) {
      throwIfAborted(ctx.signal);
      let value: unknown;
      for await (const slice of ctx.reader.slices(e.tree, { ...e.bounds, reverse: e.max })) {
        const part = keyPart(slice.leaf.key(e.max ? slice.end - 1 : slice.start), e.part);
        value = part === null ? undefined : part; // a null last part: every value in range is absent
        break;
      }
      vectors.set(e.name, e.numeric
        ? { kind: 'f64', values: Float64Array.of(typeof value === 'number' ? value : 0), absent: typeof value === 'number' ? null : Uint8Array.of(1) }
        : { kind: 'any', values: [value] });
    }
    yield { length: 1, vectors };
  }
}

/**
 * Positions 0..count-1 ordered by their keys' bytes. Keys are mostly told apart by the four
 * bytes after the prefix they all share, so (those bytes, position) packed into one number
 * sort natively without a comparator; only runs that tie there are compared byte by byte.
 */
function sortKeys(keyBytes: Buffer, keyEnds: Uint32Array, count: number): Uint32Array {
  const startOf = (p: number) => (p === 0 ? 0 : keyEnds[p - 1]);
  let common = count > 0 ? keyEnds[0] : 0;
  for (let p = 1; p < count && common > 0; p++) {
    const s = startOf(p);
    const n = Math.min(common, keyEnds[p] - s);
    let i = 0;
    while (i < n && keyBytes[s + i] === keyBytes[i]) i++;
    common = i;
  }
  const packed = new Float64Array(count);
  for (let p = 0; p < count; p++) {
    const s = startOf(p) + common, e = keyEnds[p];
    let pre = 0;
    for (let k = 0; k < 4; k++) pre = pre * 256 + (s + k < e ? keyBytes[s + k] : 0);
    packed[p] = pre * MAX_CHUNK + p;
  }
  packed.sort();
  const order = new Uint32Array(count);
  for (let j = 0; j < count; j++) order[j] = packed[j] % MAX_CHUNK;
  const compare = (a: number, b: number) => {
    let i = startOf(a), j = startOf(b);
    const ei = keyEnds[a], ej = keyEnds[b];
    for (; i < ei && j < ej; i++, j++) if (keyBytes[i] !== keyBytes[j]) return keyBytes[i] - keyBytes[j];
    return (ei - i) - (ej - j);
  };
  for (let j = 0; j < count;) {
    const pre = Math.floor(packed[j] / MAX_CHUNK);
    let k = j + 1;
    while (k < count && Math.floor(packed[k] / MAX_CHUNK) === pre) k++;
    if (k - j > 1) order.subarray(j, k).sort(compare);
    j = k;
  }
  return order;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

// How fetch() reads a column from the current leaf.
const CELL = 0, F64 = 1, UTF8_VAR = 2, UTF8_FIXED = 3, ABSENT = 4, UTF8_DICT = 5;

function decodeCell(col: ScanColumn, cell: Uint8Array): unknown {
  return col.decoder.kind === 'utf8' ? decodeUtf8Cell(cell) : col.decoder.kind === 'value' ? col.decoder.decode(cell as Buffer) : undefined;
}

/** The page of the leaf that would hold `key`, and the level-1 branch above it (null when the root is a leaf). */
function leafPageOf(src: NodeSource, root: number, key: Buffer): { page: number; parent: BranchLike | null } {
  let node = src.node(root);
  if (node.isLeaf) return { page: root, parent: null };
  for (let depth = 0; ; depth++) {
    if (depth > MAX_DEPTH) throw new ModelVaultError('CORRUPT', 'tree deeper than any valid tree', { offset: root * src.pager.pageSize });
    const child = node.child(childIndexFor(node, key));
    if (node.level === 1) return { page: child, parent: node };
    const next = src.node(child);
    if (next.isLeaf) throw new ModelVaultError('CORRUPT', `a leaf under a level-${node.level} branch`, { offset: child * src.pager.pageSize });
    node = next;
  }
}
