// Table scan: walks the rows tree leaf by leaf (with read-ahead), decodes only the columns the
// query needs, evaluates the pushed-down predicate on the predicate columns first and decodes
// the remaining columns only for the rows that pass. Fixed-width numeric columns are read
// through a Float64Array view of the page, never parsed cell by cell.
import { LeafView, OverflowRef, type DictColumn } from '../storage/btree-node.js';
import { readOverflow, type KeyBounds, type LeafSlice } from '../storage/btree.js';
import type { Pager } from '../storage/pager.js';
import type { Batch, Vector } from './batch.js';
import { dictOf, type DictVector } from './dict-vector.js';
import { compileSelector, exprToString, type Expr } from './expr.js';
import { throwIfAborted, type ExecContext, type Operator, type RowFilter } from './operator.js';

export type CellDecoder =
  | { readonly kind: 'f64' }
  /** UTF-8 text (string, uuid, enum): decoded straight from the page, no Buffer per cell. */
  | { readonly kind: 'utf8' }
  | { readonly kind: 'value'; decode(cell: Buffer): unknown };

export interface ScanColumn {
  readonly path: string;
  readonly column: number;
  readonly decoder: CellDecoder;
}

const f64At = (b: Buffer) => b.readDoubleLE(0);

// Buffer#utf8Slice is the binding behind toString('utf8', start, end) without its argument
// checks: about a third of the cost of a subarray + toString per cell.
type Utf8Sliceable = Buffer & { utf8Slice(start: number, end: number): string };
export const utf8Slice = (b: Buffer, start: number, end: number): string => (b as Utf8Sliceable).utf8Slice(start, end);
export const decodeUtf8Cell = (c: Uint8Array): string =>
  utf8Slice(Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength), 0, c.byteLength);

/** Per dictionary column view, its values as strings, each decoded on first use. */
const dictionaryCache = new WeakMap<DictColumn, (string | undefined)[]>();

/**
 * The strings of a dictionary column view, decoded at most once each: every cell of a leaf
 * that holds a value gets the same string, and a leaf kept in the pool keeps its strings.
 * Entries are filled by `dictionaryString` (or all at once by `dictionaryStrings`).
 */
export function dictionaryCacheOf(view: DictColumn): (string | undefined)[] {
  let strings = dictionaryCache.get(view);
  if (strings === undefined) dictionaryCache.set(view, (strings = new Array<string | undefined>(view.size)));
  return strings;
}

/** Dictionary value `code` of `view` as a string, from `strings` (its dictionaryCacheOf) or decoded into it. */
export function dictionaryString(view: DictColumn, strings: (string | undefined)[], code: number): string {
  return strings[code] ?? (strings[code] = utf8Slice(view.data, view.offsets[code], view.offsets[code + 1]));
}

/**
 * Every value of a dictionary column view as a string (what a scan of the whole leaf wants). A
 * row or two out of a leaf (a point get, an index fetch) decode only their own values, with
 * `dictionaryString`: a leaf read for four rows need not decode its twenty values.
 */
export function dictionaryStrings(view: DictColumn): string[] {
  const strings = dictionaryCacheOf(view);
  for (let k = 0; k < view.size; k++) if (strings[k] === undefined) dictionaryString(view, strings, k);
  return strings as string[];
}

/**
 * One column of an output batch being filled, leaf by leaf, at increasing offsets. Numbers
 * go to a Float64Array (absent mask made on first need), everything else to a plain array.
 * While every row so far came from dictionary columns, the strings also carry codes into a
 * dictionary of the batch's own (each leaf's codes mapped into it), so the vector is a
 * DictVector: filters test each distinct value once, the aggregate looks each one up once.
 */
export class ColumnBuilder {
  f64: Float64Array | null;
  absent: Uint8Array | null = null;
  any: unknown[] | null;
  /** Codes of the rows so far; null before the first dictionary rows and once a row came without. */
  codes: Int32Array | null = null;
  private coded = true;
  /** The batch's dictionary and each value's code in it; made with the first dictionary rows. */
  private dict: unknown[] | null = null;
  private dictIds: Map<unknown, number> | null = null;
  constructor(readonly col: ScanColumn, readonly capacity: number) {
    this.f64 = col.decoder.kind === 'f64' ? new Float64Array(capacity) : null;
    this.any = col.decoder.kind === 'f64' ? null : new Array(capacity);
  }
  markAbsent(at: number): void {
    (this.absent ??= new Uint8Array(this.capacity))[at] = 1;
  }
  /** Rows written without codes: the column stays a plain vector. */
  uncoded(): void {
    this.coded = false;
    this.codes = null;
  }
  /**
   * For rows coming from a dictionary of `values`: each value's code in the batch's dictionary
   * (one more entry, last, for an absent cell), or null when the column is not coded.
   */
  remap(values: readonly unknown[]): Int32Array | null {
    if (!this.coded) return null;
    this.codes ??= new Int32Array(this.capacity);
    this.dict ??= [];
    this.dictIds ??= new Map();
    const map = new Int32Array(values.length + 1);
    for (let k = 0; k < values.length; k++) map[k] = this.codeOf(values[k]);
    map[values.length] = this.codeOf(undefined);
    return map;
  }
  private codeOf(x: unknown): number {
    let c = this.dictIds!.get(x);
    if (c === undefined) {
      c = this.dict!.length;
      this.dict!.push(x);
      this.dictIds!.set(x, c);
    }
    return c;
  }
  vector(length: number): Vector {
    if (this.f64) return { kind: 'f64', values: this.f64.subarray(0, length), absent: this.absent ? this.absent.subarray(0, length) : null };
    const values = this.any!;
    if (values.length !== length) values.length = length;
    if (this.codes !== null) {
      const coded: DictVector = { kind: 'any', values, codes: this.codes.subarray(0, length), dict: [...this.dict!, undefined] };
      return coded;
    }
    return { kind: 'any', values };
  }
}

/**
 * Decodes column `out.col` of leaf rows `rows[0..count)` into `out` from offset `at`: at once
 * (null) from a page's column view, or a promise when cells need the general path.
 */
export function readColumn(pager: Pager, leaf: LeafSlice['leaf'], rows: ArrayLike<number>, count: number, out: ColumnBuilder, at: number): Promise<void> | null {
  if (leaf instanceof LeafView && readFromView(leaf, rows, count, out, at)) return null;
  return readCells(pager, leaf, rows, count, out, at);
}

/** The general path: cell by cell, overflow values read from their pages. */
async function readCells(pager: Pager, leaf: LeafSlice['leaf'], rows: ArrayLike<number>, count: number, out: ColumnBuilder, at: number): Promise<void> {
  const col = out.col;
  const c = col.column;
  if (out.f64) {
    const values = out.f64;
    for (let k = 0; k < count; k++) {
      const cell = leaf.cell(rows[k], c);
      if (cell === null || cell instanceof OverflowRef) out.markAbsent(at + k);
      else values[at + k] = f64At(cell as Buffer);
    }
    return;
  }
  out.uncoded();
  const decode = col.decoder.kind === 'utf8' ? decodeUtf8Cell : col.decoder.kind === 'value' ? col.decoder.decode : null;
  const values = out.any!;
  for (let k = 0; k < count; k++) {
    const cell = leaf.cell(rows[k], c);
    if (cell === null || decode === null) values[at + k] = undefined;
    else if (cell instanceof OverflowRef) values[at + k] = decode(await readOverflow(pager, cell));
    else values[at + k] = decode(cell as Buffer);
  }
}

/**
 * The column read straight from a page's column view; false when a cell needs the general path
 * (an overflow value, an unexpected layout). Numbers come from a Float64Array over the page,
 * strings from the page bytes: no per-cell Buffer objects.
 */
function readFromView(leaf: LeafView, rows: ArrayLike<number>, count: number, out: ColumnBuilder, at: number): boolean {
  const c = out.col.column;
  const kind = out.col.decoder.kind;
  if (c >= leaf.columns) { // a column added after this leaf was written: absent everywhere
    out.uncoded();
    for (let k = 0; k < count; k++) {
      if (out.f64) out.markAbsent(at + k);
      else out.any![at + k] = undefined;
    }
    return true;
  }
  const view = leaf.column(c);
  const bits = view.absent;
  if (kind !== 'f64' && (kind !== 'utf8' || view.kind !== 'dict')) out.uncoded();
  if (kind === 'f64') {
    if (view.kind !== 'fixed' || view.f64 === null) return false;
    const all = view.f64;
    const values = out.f64!;
    for (let k = 0; k < count; k++) values[at + k] = all[rows[k]];
    if (bits !== null) {
      for (let k = 0; k < count; k++) {
        const i = rows[k];
        if ((bits[i >> 3] & (1 << (i & 7))) !== 0) out.markAbsent(at + k);
      }
    }
    return true;
  }
  if (kind === 'utf8') {
    const values = out.any!;
    const data = view.data as Buffer;
    if (view.kind === 'fixed') { // every present string of this leaf has the same byte length
      const w = view.width;
      for (let k = 0; k < count; k++) {
        const i = rows[k];
        values[at + k] = bits !== null && (bits[i >> 3] & (1 << (i & 7))) !== 0 ? undefined : utf8Slice(data, i * w, i * w + w);
      }
      return true;
    }
    if (view.kind === 'dict') {
      const strings = dictionaryStrings(view), codes = view.codes;
      const map = out.remap(strings);
      if (map !== null) {
        const outCodes = out.codes!, absentCode = map[strings.length];
        for (let k = 0; k < count; k++) {
          const i = rows[k];
          const gone = bits !== null && (bits[i >> 3] & (1 << (i & 7))) !== 0;
          values[at + k] = gone ? undefined : strings[codes[i]];
          outCodes[at + k] = gone ? absentCode : map[codes[i]];
        }
        return true;
      }
      for (let k = 0; k < count; k++) {
        const i = rows[k];
        values[at + k] = bits !== null && (bits[i >> 3] & (1 << (i & 7))) !== 0 ? undefined : strings[codes[i]];
      }
      return true;
    }
    if (view.overflow !== null) return false;
    const offsets = view.offsets;
    for (let k = 0; k < count; k++) {
      const i = rows[k];
      values[at + k] = bits !== null && (bits[i >> 3] & (1 << (i & 7))) !== 0 ? undefined : utf8Slice(data, offsets[i], offsets[i + 1]);
    }
    return true;
  }
  return false;
}

/** A zero-copy Float64Array over rows [start, end) of a leaf's number column, when it has no absent cells. */
function f64Run(leaf: LeafView, col: ScanColumn, start: number, end: number): Float64Array | null {
  if (col.decoder.kind !== 'f64' || col.column >= leaf.columns) return null;
  const view = leaf.column(col.column);
  if (view.kind !== 'fixed' || view.f64 === null || view.absent !== null) return null;
  return view.f64.subarray(start, end);
}

export class TableScanOp implements Operator {
  readonly name = 'TableScan';

  constructor(
    readonly tree: string,
    readonly label: string,
    readonly columns: readonly ScanColumn[],
    readonly filter: Expr | null,
    readonly bounds: KeyBounds = {},
    /**
     * Gather the rows of several leaves into batches of about ctx.batchSize (fewer, fuller
     * batches for everything downstream). Off when a limit right above may stop the query
     * early: then each leaf's rows go out at once, so a rare match is not held back.
     */
    readonly coalesce = false,
    /**
     * A top-k above publishes its cutoff under this token (ExecContext.dynamicFilters) on
     * `paths`, all columns of this scan: rows past it are skipped before their other columns are
     * decoded.
     */
    readonly topKFilter: { readonly token: object; readonly paths: readonly string[] } | null = null,
    /** Every row goes into an operator that keeps what it needs (a full sort): pages are not worth caching (SliceOptions.readOnce). */
    readonly readOnce = false,
  ) {}

  children(): readonly Operator[] { return []; }

  describe(): string {
    const parts = [`${this.label}`, `columns (${this.columns.map((c) => c.path).join(', ') || 'none'})`];
    if (this.filter) parts.push(`filter pushed down: ${exprToString(this.filter)}`);
    if (this.bounds.gt || this.bounds.gte || this.bounds.lt || this.bounds.lte) parts.push('primary key range');
    if (this.bounds.reverse) parts.push('reverse');
    if (this.topKFilter) parts.push("skips rows past the top-k's cutoff");
    return parts.join(', ');
  }

  async *execute(ctx: ExecContext): AsyncGenerator<Batch> {
    const pager = ctx.reader.nodeSource.pager;
    const filterPaths = this.filter ? new Set(this.columns.filter((c) => this.usesPath(c.path)).map((c) => c.path)) : new Set<string>();
    // Looked up when the scan starts: the top-k above registers its cutoff before it pulls.
    const dynamic: RowFilter | null = this.topKFilter ? ctx.dynamicFilters?.get(this.topKFilter.token) ?? null : null;
    if (dynamic) for (const p of dynamic.paths) filterPaths.add(p);
    const first = this.columns.filter((c) => filterPaths.has(c.path));
    const rest = this.columns.filter((c) => !filterPaths.has(c.path));
    const selector = this.filter ? compileSelector(this.filter) : null;
    const reverse = this.bounds.reverse ?? false;
    const target = this.coalesce ? ctx.batchSize : 1;
    // Reused across leaves: leaf indices in output order, the selection, the picked leaf indices.
    let rows = new Uint32Array(1024);
    let sel = new Uint32Array(1024);
    let picked = new Uint32Array(1024);
    // The batch being filled; a new one after each yield, since consumers may keep batches.
    let builders: ColumnBuilder[] | null = null;
    let filled = 0, capacity = 0;
    // Page bytes the batch's rows came from (a leaf's bytes × the share of its rows taken):
    // a batch goes out once it holds about a page's worth, so wide rows make short batches
    // (downstream reservations stay small) and an unfiltered scan still yields leaf by leaf.
    let sourceBytes = 0;
    const take = (): Batch => {
      const vectors = new Map<string, Vector>();
      for (const b of builders!) vectors.set(b.col.path, b.vector(filled));
      const batch = { length: filled, vectors };
      builders = null;
      filled = 0;
      sourceBytes = 0;
      return batch;
    };
    // Transient: every value is copied out of a leaf (numbers into new vectors, strings into
    // JS strings) before the next leaf is pulled, so once the pool is full the walk may read
    // leaves around it and a scan larger than the cache neither evicts it nor makes garbage pages.
    for await (const slice of ctx.reader.slices(this.tree, this.bounds, { transient: true, readOnce: this.readOnce })) {
      throwIfAborted(ctx.signal);
      const n = slice.end - slice.start;
      if (rows.length < n) { rows = new Uint32Array(n * 2); sel = new Uint32Array(n * 2); picked = new Uint32Array(n * 2); }
      for (let k = 0; k < n; k++) rows[k] = reverse ? slice.end - 1 - k : slice.start + k;
      const leaf = slice.leaf;
      let count = n;
      let probe: Vector[] | null = null;
      if (selector || dynamic?.active()) {
        // The predicate's columns first, as views of the page where possible (forward scans of
        // number columns: no copy at all), then the selection vector; nothing else is decoded yet.
        const vectors = new Map<string, Vector>();
        probe = [];
        for (const col of first) {
          let v: Vector;
          const run = !reverse && leaf instanceof LeafView ? f64Run(leaf, col, slice.start, slice.end) : null;
          if (run) v = { kind: 'f64', values: run, absent: null };
          else {
            const b = new ColumnBuilder(col, n);
            const pending = readColumn(pager, leaf, rows, n, b, 0);
            if (pending) await pending;
            v = b.vector(n);
          }
          vectors.set(col.path, v);
          probe.push(v);
        }
        if (selector) count = selector({ length: n, vectors }, sel, -1);
        else for (let k = 0; k < n; k++) sel[k] = k;
        if (dynamic && count > 0) count = dynamic.select(vectors, sel, count);
        if (count === 0) continue;
        for (let k = 0; k < count; k++) picked[k] = rows[sel[k]];
      }
      if (builders !== null && filled + count > capacity) yield take();
      if (builders === null) {
        capacity = Math.max(target, count);
        builders = this.columns.map((col) => new ColumnBuilder(col, capacity));
      }
      const at = filled;
      if (probe !== null) {
        // Predicate columns: copied from the probe vectors at the selection.
        first.forEach((col, f) => {
          const v = probe![f];
          const b = builders![this.columns.indexOf(col)];
          if (v.kind === 'f64') {
            const values = b.f64!;
            for (let k = 0; k < count; k++) values[at + k] = v.values[sel[k]];
            if (v.absent !== null) for (let k = 0; k < count; k++) if (v.absent[sel[k]]) b.markAbsent(at + k);
          } else {
            const values = b.any!;
            for (let k = 0; k < count; k++) values[at + k] = v.values[sel[k]];
            const d = dictOf(v), map = d !== null ? b.remap(d.dict) : null;
            if (map === null) b.uncoded();
            else for (let k = 0; k < count; k++) b.codes![at + k] = map[d!.codes[sel[k]]];
          }
        });
      }
      const out = probe !== null ? picked : rows;
      for (const col of probe !== null ? rest : this.columns) {
        const pending = readColumn(pager, leaf, out, count, builders[this.columns.indexOf(col)], at);
        if (pending) await pending;
      }
      filled += count;
      sourceBytes += leaf instanceof LeafView ? (leaf.body.byteLength * count) / Math.max(1, leaf.count) : pager.pageSize;
      if (filled >= target || sourceBytes >= pager.pageSize) yield take();
    }
    if (builders !== null && filled > 0) yield take();
  }

  private usesPath(path: string): boolean {
    const walk = (e: Expr): boolean => e.kind === 'cmp' ? e.path === path || e.path.startsWith(`${path}.`) : e.kind === 'not' ? walk(e.item) : e.items.some(walk);
    return this.filter ? walk(this.filter) : false;
  }
}
