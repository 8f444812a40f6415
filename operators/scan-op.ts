// Table scan: walks the rows tree leaf by leaf (with read-ahead), decodes only the columns the
// query needs, evaluates the pushed-down predicate on the predicate columns first and decodes
// the remaining columns only for the rows that pass. Fixed-width numeric columns are read
// through a Float64Array view of the page, never parsed cell by cell.
import { LeafView, OverflowRef, bitSet } from '../storage/btree-node.js';
import { readOverflow, type KeyBounds, type LeafSlice } from '../storage/btree.js';
import type { Pager } from '../storage/pager.js';
import { gather, type Batch, type Vector } from './batch.js';
import { compilePredicate, exprToString, selectRows, type BoundPredicate, type Expr } from './expr.js';
import { throwIfAborted, type ExecContext, type Operator } from './operator.js';

export type CellDecoder =
  | { readonly kind: 'f64' }
  | { readonly kind: 'value'; decode(cell: Buffer): unknown };

export interface ScanColumn {
  readonly path: string;
  readonly column: number;
  readonly decoder: CellDecoder;
}

const f64At = (b: Buffer) => b.readDoubleLE(0);

/** Decodes column `col` of rows `rows` (leaf indices) of one leaf into a vector. */
export async function leafVector(pager: Pager, leaf: LeafSlice['leaf'], col: ScanColumn, rows: ArrayLike<number>, count: number): Promise<Vector> {
  const c = col.column;
  if (col.decoder.kind === 'f64') {
    const values = new Float64Array(count);
    let absent: Uint8Array | null = null;
    const view = leaf instanceof LeafView && c < leaf.columns ? leaf.column(c) : null;
    if (view && view.kind === 'fixed' && view.width === 8) {
      const all = new Float64Array(view.data.buffer, view.data.byteOffset, leaf.count);
      for (let k = 0; k < count; k++) {
        const i = rows[k];
        values[k] = all[i];
        if (bitSet(view.absent, i)) (absent ??= new Uint8Array(count))[k] = 1;
      }
      return { kind: 'f64', values, absent };
    }
    for (let k = 0; k < count; k++) {
      const cell = leaf.cell(rows[k], c);
      if (cell === null || cell instanceof OverflowRef) (absent ??= new Uint8Array(count))[k] = 1;
      else values[k] = f64At(cell as Buffer);
    }
    return { kind: 'f64', values, absent };
  }
  const values = new Array(count);
  for (let k = 0; k < count; k++) {
    const cell = leaf.cell(rows[k], c);
    if (cell === null) values[k] = undefined;
    else if (cell instanceof OverflowRef) values[k] = col.decoder.decode(await readOverflow(pager, cell));
    else values[k] = col.decoder.decode(cell as Buffer);
  }
  return { kind: 'any', values };
}

export class TableScanOp implements Operator {
  readonly name = 'TableScan';
  private readonly predicate: BoundPredicate | null;

  constructor(
    readonly tree: string,
    readonly label: string,
    readonly columns: readonly ScanColumn[],
    readonly filter: Expr | null,
    readonly bounds: KeyBounds = {},
  ) {
    this.predicate = filter ? compilePredicate(filter) : null;
  }

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
    const selection = { buf: new Uint32Array(1024) };
    let rows = new Uint32Array(1024);
    for await (const slice of ctx.reader.slices(this.tree, this.bounds)) {
      throwIfAborted(ctx.signal);
      const n = slice.end - slice.start;
      if (rows.length < n) rows = new Uint32Array(n * 2);
      for (let k = 0; k < n; k++) rows[k] = this.bounds.reverse ? slice.end - 1 - k : slice.start + k;
      const vectors = new Map<string, Vector>();
      for (const col of first) vectors.set(col.path, await leafVector(pager, slice.leaf, col, rows, n));
      let count = n;
      let picked: Uint32Array = rows;
      if (this.predicate) {
        const test = this.predicate({ length: n, vectors });
        count = selectRows({ length: n, vectors }, test, selection);
        if (count === 0) continue;
        picked = new Uint32Array(count);
        for (let k = 0; k < count; k++) picked[k] = rows[selection.buf[k]];
        if (count < n) {
          for (const [path, v] of vectors) vectors.set(path, gather(v, selection.buf, count));
        }
      }
      for (const col of rest) vectors.set(col.path, await leafVector(pager, slice.leaf, col, picked, count));
      yield { length: count, vectors };
    }
  }

  private usesPath(path: string): boolean {
    const walk = (e: Expr): boolean => e.kind === 'cmp' ? e.path === path || e.path.startsWith(`${path}.`) : e.kind === 'not' ? walk(e.item) : e.items.some(walk);
    return this.filter ? walk(this.filter) : false;
  }
}
