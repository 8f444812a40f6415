// Sort: in memory while the buffered batches fit the reservation; otherwise sorted runs in
// spill pages and a k-way merge (several passes when there are more runs than the merge
// fan-in). Stable: ties keep their input order (runs are merged in the order written).
// Top-k (`limit` given) keeps only the best k rows seen so far and never sorts everything.
import type { SpillRun } from '../storage/spill-space.js';
import { batchBytes, concatBatches, gatherBatch, valueAt, type Batch, type F64Vector, type Vector } from './batch.js';
import { compareValues } from './expr.js';
import { run, statsOf, throwIfAborted, type ExecContext, type Operator } from './operator.js';
import { pathVector } from './paths.js';
import { decodeBatch, encodeBatch } from './spill-codec.js';

export interface SortKey {
  readonly path: string;
  readonly desc: boolean;
}

const MAX_FAN_IN = 64;
let nextId = 1;

/** Compares row i of batch a with row j of batch b; absent values sort first (last when descending). */
export function makeRowComparator(keys: readonly SortKey[]) {
  return (av: readonly Vector[], i: number, bv: readonly Vector[], j: number): number => {
    for (let k = 0; k < keys.length; k++) {
      const x = valueAt(av[k], i), y = valueAt(bv[k], j);
      let c: number;
      if (x === undefined || x === null) c = y === undefined || y === null ? 0 : -1;
      else if (y === undefined || y === null) c = 1;
      else if (typeof x === 'number' && typeof y === 'number' && (Number.isNaN(x) || Number.isNaN(y))) {
        c = Number.isNaN(x) ? (Number.isNaN(y) ? 0 : 1) : -1; // NaN after every number
      } else c = compareValues(x, y);
      if (c !== 0) return keys[k].desc ? -c : c;
    }
    return 0;
  };
}

/** The rows of one batch in sorted order (a permutation), stable. */
export function sortPermutation(b: Batch, keys: readonly SortKey[]): Uint32Array {
  const vectors = keys.map((k) => pathVector(b, k.path));
  const perm = new Uint32Array(b.length);
  for (let i = 0; i < b.length; i++) perm[i] = i;
  // Fast path: one numeric key with no absent values or NaN compares raw doubles.
  const only = vectors.length === 1 && vectors[0].kind === 'f64' ? (vectors[0] as F64Vector) : null;
  if (only && !only.absent && !only.values.some(Number.isNaN)) {
    const xs = only.values, sign = keys[0].desc ? -1 : 1;
    return perm.sort((i, j) => (xs[i] - xs[j]) * sign || i - j);
  }
  const cmp = makeRowComparator(keys);
  return perm.sort((i, j) => cmp(vectors, i, vectors, j) || i - j);
}

export function sortBatch(b: Batch, keys: readonly SortKey[]): Batch {
  return gatherBatch(b, sortPermutation(b, keys));
}

export class SortOp implements Operator {
  readonly name: string;
  private readonly id = nextId++;

  /** `limit` = rows needed from the top (offset + limit), or Infinity for a full sort. */
  constructor(readonly input: Operator, readonly keys: readonly SortKey[], readonly limit = Infinity) {
    this.name = Number.isFinite(limit) ? 'TopK' : 'Sort';
  }

  children(): readonly Operator[] { return [this.input]; }

  describe(): string {
    const keys = this.keys.map((k) => `${k.path} ${k.desc ? 'desc' : 'asc'}`).join(', ');
    return Number.isFinite(this.limit) ? `keep best ${this.limit} by ${keys}` : `by ${keys}, spills sorted runs when over budget`;
  }

  async *execute(ctx: ExecContext): AsyncGenerator<Batch> {
    const stats = statsOf(ctx, this);
    using buffered = ctx.memory.reserve(`${this.name}#${this.id}`);
    const runs: SpillRun[] = [];
    let pending: Batch[] = [];
    let pendingRows = 0;
    let bytesPerRow = 64;
    // Spilled chunks are sized so that a merge of several runs holds one chunk per run in budget.
    const chunkRows = () => Math.max(16, Math.min(ctx.batchSize, Math.floor(ctx.memory.limitBytes / (16 * bytesPerRow))));
    const fanIn = () => Math.max(2, Math.min(MAX_FAN_IN, Math.floor((ctx.memory.limitBytes * 0.5) / (chunkRows() * bytesPerRow))));
    const track = () => { if (stats) stats.peakReservedBytes = Math.max(stats.peakReservedBytes, buffered.peakBytes); };
    const spillSorted = async () => {
      if (pending.length === 0) return;
      const sorted = sortBatch(concatBatches(pending), this.keys);
      pending = [];
      pendingRows = 0;
      buffered.free();
      runs.push(await writeRun(ctx, `${this.name}#${this.id}`, sorted, chunkRows(), stats));
    };
    try {
      for await (const batch of run(this.input, ctx)) {
        throwIfAborted(ctx.signal);
        if (batch.length === 0) continue;
        const bytes = batchBytes(batch);
        bytesPerRow = Math.max(bytesPerRow, Math.ceil(bytes / batch.length));
        if (!buffered.tryGrow(bytes)) {
          if (Number.isFinite(this.limit) && pendingRows > this.limit) this.compactTopK(pending, buffered, (p, r) => { pending = p; pendingRows = r; });
          if (!buffered.tryGrow(bytes)) {
            await spillSorted();
            buffered.grow(bytes); // one batch must always fit: batches are small
          }
        }
        pending.push(batch);
        pendingRows += batch.length;
        track();
        // Top-k: once twice k rows are buffered, keep only the best k.
        if (Number.isFinite(this.limit) && pendingRows >= Math.max(2 * this.limit, ctx.batchSize)) {
          this.compactTopK(pending, buffered, (p, r) => { pending = p; pendingRows = r; });
        }
      }
      if (runs.length === 0) {
        if (pending.length === 0) return; // no input rows: nothing to sort (an empty batch has no key vectors)
        let sorted = sortBatch(concatBatches(pending), this.keys);
        pending = [];
        if (Number.isFinite(this.limit)) sorted = gatherBatch(sorted, range(Math.min(this.limit, sorted.length)));
        for (let from = 0; from < sorted.length; from += ctx.batchSize) {
          yield gatherBatch(sorted, range(Math.min(ctx.batchSize, sorted.length - from), from));
        }
        return;
      }
      await spillSorted();
      let produced = 0;
      for await (const batch of mergeRuns(ctx, runs, this.keys, `${this.name}#${this.id}`, fanIn(), chunkRows(), stats)) {
        const take = Math.min(batch.length, this.limit - produced);
        yield take === batch.length ? batch : gatherBatch(batch, range(take));
        produced += take;
        if (produced >= this.limit) return;
      }
    } finally {
      for (const r of runs) r.drop();
    }
  }

  private compactTopK(pending: Batch[], buffered: { free(): void; tryGrow(n: number): boolean }, set: (p: Batch[], rows: number) => void): void {
    const sorted = sortBatch(concatBatches(pending), this.keys);
    const kept = gatherBatch(sorted, range(Math.min(this.limit, sorted.length)));
    buffered.free();
    buffered.tryGrow(batchBytes(kept));
    set([kept], kept.length);
  }
}

function range(n: number, from = 0): Uint32Array {
  const r = new Uint32Array(n);
  for (let i = 0; i < n; i++) r[i] = from + i;
  return r;
}

async function writeRun(ctx: ExecContext, label: string, sorted: Batch, chunk: number, stats?: { spilledBytes: number; spillRuns: number }): Promise<SpillRun> {
  const writer = ctx.spill.createRun(label);
  try {
    for (let from = 0; from < sorted.length; from += chunk) {
      throwIfAborted(ctx.signal);
      const bytes = encodeBatch(gatherBatch(sorted, range(Math.min(chunk, sorted.length - from), from)));
      await writer.append(bytes);
      if (stats) stats.spilledBytes += bytes.byteLength;
    }
    if (stats) stats.spillRuns++;
    return await writer.finish();
  } catch (err) {
    writer.abort();
    throw err;
  }
}

/** K-way merge of sorted runs; more runs than the fan-in are first merged into longer runs. */
async function* mergeRuns(ctx: ExecContext, runs: SpillRun[], keys: readonly SortKey[], label: string, fanIn: number, chunk: number, stats?: { spilledBytes: number; spillRuns: number }): AsyncGenerator<Batch> {
  // Each pass merges consecutive groups, keeping run order so ties stay in input order.
  while (runs.length > fanIn) {
    const merged: SpillRun[] = [];
    while (runs.length > 0) {
      const group = runs.splice(0, fanIn);
      if (group.length === 1) { merged.push(group[0]); continue; }
      const writer = ctx.spill.createRun(label);
      try {
        for await (const b of mergeGroup(ctx, group, keys)) {
          // Records of `chunk` rows, like the first runs: the next merge holds one per run in budget.
          for (let from = 0; from < b.length; from += chunk) {
            const bytes = encodeBatch(gatherBatch(b, range(Math.min(chunk, b.length - from), from)));
            await writer.append(bytes);
            if (stats) stats.spilledBytes += bytes.byteLength;
          }
        }
        merged.push(await writer.finish());
        if (stats) stats.spillRuns++;
      } catch (err) {
        writer.abort();
        for (const r of merged) r.drop();
        throw err;
      } finally {
        for (const r of group) r.drop();
      }
    }
    runs.push(...merged);
  }
  yield* mergeGroup(ctx, runs, keys);
}

interface Cursor { it: AsyncIterator<Buffer>; batch: Batch; vectors: Vector[]; row: number; order: number }

async function* mergeGroup(ctx: ExecContext, runs: readonly SpillRun[], keys: readonly SortKey[]): AsyncGenerator<Batch> {
  const cmp = makeRowComparator(keys);
  using room = ctx.memory.reserve('SortMerge');
  const cursors: Cursor[] = [];
  const advanceBatch = async (c: Cursor): Promise<boolean> => {
    const next = await c.it.next();
    if (next.done) return false;
    room.shrink(batchBytes(c.batch));
    c.batch = decodeBatch(next.value);
    room.grow(batchBytes(c.batch)); // merge needs one batch per run; refuse rather than overrun
    c.vectors = keys.map((k) => pathVector(c.batch, k.path));
    c.row = 0;
    return true;
  };
  try {
    for (let r = 0; r < runs.length; r++) {
      const c: Cursor = { it: runs[r].records()[Symbol.asyncIterator](), batch: { length: 0, vectors: new Map() }, vectors: [], row: 0, order: r };
      if (await advanceBatch(c)) cursors.push(c);
    }
    const less = (a: Cursor, b: Cursor) => {
      const c = cmp(a.vectors, a.row, b.vectors, b.row);
      return c < 0 || (c === 0 && a.order < b.order);
    };
    // Binary min-heap of cursors.
    const heap = cursors.slice();
    const sift = (i: number) => {
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < heap.length && less(heap[l], heap[m])) m = l;
        if (r < heap.length && less(heap[r], heap[m])) m = r;
        if (m === i) return;
        [heap[i], heap[m]] = [heap[m], heap[i]];
        i = m;
      }
    };
    for (let i = (heap.length >> 1) - 1; i >= 0; i--) sift(i);
    let out = new OutputBuilder(ctx.batchSize);
    while (heap.length > 0) {
      throwIfAborted(ctx.signal);
      const top = heap[0];
      out.push(top.batch, top.row);
      if (out.length >= ctx.batchSize) {
        yield out.build();
        out = new OutputBuilder(ctx.batchSize);
      }
      top.row++;
      if (top.row >= top.batch.length && !(await advanceBatch(top))) {
        heap[0] = heap[heap.length - 1];
        heap.pop();
      }
      if (heap.length > 0) sift(0);
    }
    if (out.length > 0) yield out.build();
  } finally {
    for (const c of cursors) await c.it.return?.(undefined);
  }
}

/** Collects rows taken from different batches into one batch. */
export class OutputBuilder {
  length = 0;
  private readonly columns = new Map<string, { f64: Float64Array | null; absent: Uint8Array | null; any: unknown[] | null }>();
  constructor(private readonly capacity: number) {}

  push(b: Batch, i: number): void {
    for (const [path, v] of b.vectors) {
      let col = this.columns.get(path);
      if (!col) {
        col = v.kind === 'f64' ? { f64: new Float64Array(this.capacity), absent: null, any: null } : { f64: null, absent: null, any: [] };
        this.columns.set(path, col);
      }
      if (col.f64 && v.kind === 'f64') {
        if (this.length >= col.f64.length) { const g = new Float64Array(col.f64.length * 2); g.set(col.f64); col.f64 = g; }
        col.f64[this.length] = v.values[i];
        if (v.absent && v.absent[i]) {
          if (!col.absent || col.absent.length < col.f64.length) { const a = new Uint8Array(col.f64.length); if (col.absent) a.set(col.absent); col.absent = a; }
          col.absent[this.length] = 1;
        }
      } else {
        col.any ??= [];
        col.any[this.length] = valueAt(v, i);
      }
    }
    this.length++;
  }

  build(): Batch {
    const vectors = new Map<string, Vector>();
    for (const [path, col] of this.columns) {
      vectors.set(path, col.f64
        ? { kind: 'f64', values: col.f64.subarray(0, this.length), absent: col.absent ? col.absent.subarray(0, this.length) : null }
        : { kind: 'any', values: col.any!.length === this.length ? col.any! : Array.from({ length: this.length }, (_, k) => col.any![k]) });
    }
    return { length: this.length, vectors };
  }
}
