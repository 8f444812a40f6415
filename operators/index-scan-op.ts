// Index scan: walks an index tree within key bounds, takes each entry's primary key (the key
// suffix after the index components) and fetches the row from the rows tree. A residual
// predicate (the part of the filter the index bounds do not cover) runs on the fetched rows.
import { treeGet, type Cell, type KeyBounds } from '../storage/btree.js';
import { keySuffix } from '../storage/keys.js';
import type { Batch, Vector } from './batch.js';
import { compilePredicate, exprToString, selectRows, type Expr } from './expr.js';
import { throwIfAborted, type ExecContext, type Operator } from './operator.js';
import type { ScanColumn } from './scan-op.js';
import { gatherBatch } from './batch.js';

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
    const predicate = this.residual ? compilePredicate(this.residual) : null;
    const selection = { buf: new Uint32Array(1024) };
    let keys: Buffer[] = [];
    const flush = async (): Promise<Batch | null> => {
      // Rows are fetched in primary-key order (neighbouring keys share leaves, so the pool
      // serves them), then put back in index order.
      const order = keys.map((_, i) => i).sort((a, b) => Buffer.compare(keys[a], keys[b]));
      const fetched: (Cell[] | undefined)[] = new Array(keys.length);
      for (const i of order) fetched[i] = await treeGet(src, rowsRoot, keys[i]);
      const rows = fetched.filter((r): r is Cell[] => r !== undefined);
      keys = [];
      const n = rows.length;
      const vectors = new Map<string, Vector>();
      for (const col of this.columns) {
        if (col.decoder.kind === 'f64') {
          const values = new Float64Array(n);
          let absent: Uint8Array | null = null;
          for (let i = 0; i < n; i++) {
            const cell = rows[i][col.column] ?? null;
            if (cell === null) (absent ??= new Uint8Array(n))[i] = 1;
            else values[i] = Buffer.from(cell.buffer, cell.byteOffset, cell.byteLength).readDoubleLE(0);
          }
          vectors.set(col.path, { kind: 'f64', values, absent });
        } else {
          const decode = col.decoder.decode;
          const values = new Array(n);
          for (let i = 0; i < n; i++) {
            const cell = rows[i][col.column] ?? null;
            values[i] = cell === null ? undefined : decode(Buffer.from(cell.buffer, cell.byteOffset, cell.byteLength));
          }
          vectors.set(col.path, { kind: 'any', values });
        }
      }
      let batch: Batch = { length: n, vectors };
      if (predicate && n > 0) {
        const count = selectRows(batch, predicate(batch), selection);
        batch = count === n ? batch : gatherBatch(batch, selection.buf, count);
      }
      return batch.length > 0 ? batch : null;
    };
    // Batches grow from 16 rows to the full size, so first() or limit(5) fetches few rows.
    let want = Math.min(16, ctx.batchSize);
    for await (const slice of ctx.reader.slices(this.indexTree, this.bounds)) {
      throwIfAborted(ctx.signal);
      for (let k = 0; k < slice.end - slice.start; k++) {
        const i = this.bounds.reverse ? slice.end - 1 - k : slice.start + k;
        keys.push(Buffer.from(keySuffix(slice.leaf.key(i), this.indexParts)));
        if (keys.length >= want) {
          want = Math.min(want * 4, ctx.batchSize);
          const b = await flush();
          if (b) yield b;
        }
      }
    }
    if (keys.length > 0) {
      const b = await flush();
      if (b) yield b;
    }
  }
}
