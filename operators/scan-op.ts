// Table scan: walks the rows tree leaf by leaf (with read-ahead), decodes only the columns the
// query needs, evaluates the pushed-down predicate on the predicate columns first and decodes
// the remaining columns only for the rows that pass. Fixed-width numeric columns are read
// through a Float64Array view of the page, never parsed cell by cell.
import { LeafView, OverflowRef } from '../storage/btree-node.js';
import { readOverflow, type KeyBounds, type LeafSlice } from '../storage/btree.js';
import type { Pager } from '../storage/pager.js';
import { gather, type Batch, type Vector } from './batch.js';
import { compileSelector, exprToString, type Expr } from './expr.js';
import { throwIfAborted, type ExecContext, type Operator } from './operator.js';

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

/** Decodes column `col` of rows `rows` (leaf indices) of one leaf into a vector. */
export async function leafVector(pager: Pager, leaf: LeafSlice['leaf'], col: ScanColumn, rows: ArrayLike<number>, count: number): Promise<Vector> {
  if (leaf instanceof LeafView) {
    const fast = viewVector(leaf, col, rows, count);
    if (fast) return fast;
  }
  const c = col.column;
  if (col.decoder.kind === 'f64') {
    const values = new Float64Array(count);
    let absent: Uint8Array | null = null;
    for (let k = 0; k < count; k++) {
      const cell = leaf.cell(rows[k], c);
      if (cell === null || cell instanceof OverflowRef) (absent ??= new Uint8Array(count))[k] = 1;
      else values[k] = f64At(cell as Buffer);
    }
    return { kind: 'f64', values, absent };
  }
  const decode = col.decoder.kind === 'utf8' ? decodeUtf8Cell : col.decoder.decode;
  const values = new Array(count);
  for (let k = 0; k < count; k++) {
    const cell = leaf.cell(rows[k], c);
    if (cell === null) values[k] = undefined;
    else if (cell instanceof OverflowRef) values[k] = decode(await readOverflow(pager, cell));
    else values[k] = decode(cell as Buffer);
  }
  return { kind: 'any', values };
}

/**
 * The vector read straight from a page's column view, or null when a cell needs the general
 * path (an overflow value, an unexpected layout). Numbers come from a Float64Array over the
 * page, strings from the page bytes: no per-cell Buffer objects.
 */
export function viewVector(leaf: LeafView, col: ScanColumn, rows: ArrayLike<number>, count: number): Vector | null {
  const c = col.column;
  const kind = col.decoder.kind;
  if (c >= leaf.columns) { // a column added after this leaf was written: absent everywhere
    if (kind === 'f64') return { kind: 'f64', values: new Float64Array(count), absent: new Uint8Array(count).fill(1) };
    return { kind: 'any', values: new Array(count).fill(undefined) };
  }
  const view = leaf.column(c);
  const bits = view.absent;
  if (kind === 'f64') {
    if (view.kind !== 'fixed' || view.width !== 8) return null;
    const all = new Float64Array(view.data.buffer, view.data.byteOffset, leaf.count);
    const values = new Float64Array(count);
    let absent: Uint8Array | null = null;
    for (let k = 0; k < count; k++) values[k] = all[rows[k]];
    if (bits !== null) {
      for (let k = 0; k < count; k++) {
        const i = rows[k];
        if ((bits[i >> 3] & (1 << (i & 7))) !== 0) (absent ??= new Uint8Array(count))[k] = 1;
      }
    }
    return { kind: 'f64', values, absent };
  }
  if (kind === 'utf8') {
    const values = new Array<string | undefined>(count);
    const data = view.data as Buffer;
    if (view.kind === 'fixed') { // every present string of this leaf has the same byte length
      const w = view.width;
      for (let k = 0; k < count; k++) {
        const i = rows[k];
        values[k] = bits !== null && (bits[i >> 3] & (1 << (i & 7))) !== 0 ? undefined : utf8Slice(data, i * w, i * w + w);
      }
      return { kind: 'any', values };
    }
    if (view.overflow !== null) return null;
    const offsets = view.offsets;
    for (let k = 0; k < count; k++) {
      const i = rows[k];
      values[k] = bits !== null && (bits[i >> 3] & (1 << (i & 7))) !== 0 ? undefined : utf8Slice(data, offsets[i], offsets[i + 1]);
    }
    return { kind: 'any', values };
  }
  return null;
}

/** A zero-copy Float64Array over rows [start, end) of a leaf's number column, when it has no absent cells. */
function f64Run(leaf: LeafView, col: ScanColumn, start: number, end: number): Float64Array | null {
  if (col.decoder.kind !== 'f64' || col.column >= leaf.columns) return null;
  const view = leaf.column(col.column);
  if (view.kind !== 'fixed' || view.width !== 8 || view.absent !== null) return null;
  return new Float64Array(view.data.buffer, view.data.byteOffset + start * 8, end - start);
}

export class TableScanOp implements Operator {
  readonly name = 'TableScan';

  constructor(
    readonly tree: string,
    readonly label: string,
    readonly columns: readonly ScanColumn[],
    readonly filter: Expr | null,
    readonly bounds: KeyBounds = {},
  ) {}

  children(): readonly Operator[] { return []; }

  describe(): string {
    const parts = [`${this.label}`, `columns (${this.columns.map((c) => c.path).join(', ') || 'none'})`];
    if (this.filter) parts.push(`filter pushed down: ${exprToString(this.filter)}`);
    if (this.bounds.gt || this.bounds.gte || this.bounds.lt || this.bounds.lte) parts.push('primary key range');
    if (this.bounds.reverse) parts.push('reverse');
    return parts.join(', ');
  }

  async *execute(ctx: ExecContext): AsyncGenerator<Batch> {
    const pager = ctx.reader.nodeSource.pager;
    const filterPaths = this.filter ? new Set(this.columns.filter((c) => this.usesPath(c.path)).map((c) => c.path)) : new Set<string>();
    const first = this.columns.filter((c) => filterPaths.has(c.path));
    const rest = this.columns.filter((c) => !filterPaths.has(c.path));
    const selector = this.filter ? compileSelector(this.filter) : null;
    const reverse = this.bounds.reverse ?? false;
    // Reused across leaves: leaf indices in output order, the selection, the picked leaf indices.
    let rows = new Uint32Array(1024);
    let sel = new Uint32Array(1024);
    let picked = new Uint32Array(1024);
    for await (const slice of ctx.reader.slices(this.tree, this.bounds)) {
      throwIfAborted(ctx.signal);
      const n = slice.end - slice.start;
      if (rows.length < n) { rows = new Uint32Array(n * 2); sel = new Uint32Array(n * 2); picked = new Uint32Array(n * 2); }
      for (let k = 0; k < n; k++) rows[k] = reverse ? slice.end - 1 - k : slice.start + k;
      const leaf = slice.leaf;
      const vectors = new Map<string, Vector>();
      let count = n;
      let out: Uint32Array = rows;
      if (selector) {
        // The predicate's columns first, as views of the page where possible (forward scans of
        // number columns: no copy at all), then the selection vector; nothing else is decoded yet.
        const probe = new Map<string, Vector>();
        for (const col of first) {
          const run = !reverse && leaf instanceof LeafView ? f64Run(leaf, col, slice.start, slice.end) : null;
          probe.set(col.path, run ? { kind: 'f64', values: run, absent: null } : await leafVector(pager, leaf, col, rows, n));
        }
        count = selector({ length: n, vectors: probe }, sel, -1);
        if (count === 0) continue;
        for (let k = 0; k < count; k++) picked[k] = rows[sel[k]];
        out = picked;
        for (const [path, v] of probe) vectors.set(path, gather(v, sel, count));
      }
      for (const col of rest) vectors.set(col.path, await leafVector(pager, leaf, col, out, count));
      yield { length: count, vectors };
    }
  }

  private usesPath(path: string): boolean {
    const walk = (e: Expr): boolean => e.kind === 'cmp' ? e.path === path || e.path.startsWith(`${path}.`) : e.kind === 'not' ? walk(e.item) : e.items.some(walk);
    return this.filter ? walk(this.filter) : false;
  }
}
