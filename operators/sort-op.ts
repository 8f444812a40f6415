// Sort: in memory while the buffered batches fit the reservation; otherwise sorted runs in
// spill pages and a k-way merge (several passes when there are more runs than the merge
// fan-in). Stable: ties keep their input order (runs are merged in the order written).
// Top-k (`limit` given) keeps only the best k rows seen so far and never sorts everything.
import { spillIoPages, type SpillRun } from '../storage/spill-space.js';
import { batchBytes, concatBatches, gatherBatch, sliceBatch, unionPaths, valueAt, vectorOf, type Batch, type F64Vector, type Vector } from './batch.js';
import { compareValues } from './expr.js';
import { run, statsOf, throwIfAborted, type ExecContext, type Operator, type RowFilter } from './operator.js';
import { pathVector } from './paths.js';
import { decodeBatch, encodeBatch } from './spill-codec.js';
import { keyImages, radixSortPayload } from './radix-sort.js';
import { SortBuffer, type Sorted } from './sort-buffer.js';

export interface SortKey {
  readonly path: string;
  readonly desc: boolean;
}

const MAX_FAN_IN = 64;
/**
 * Rows a spill record holds at most. A merge holds a decoded record per run for about runs x
 * record rows of output: at 1,024 rows, 19 runs' records outlived a young-generation collection
 * and were promoted, to wait as old garbage (in a probe, the old generation ended a 10M-row sort at
 * 40 MiB, and at 10 MiB with 256 rows, which also ran 8% faster).
 */
const RECORD_ROWS = 256;
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

/**
 * Buffered batches in sorted order without concatenating them: `ids[k]` names the k-th row as
 * (batch index << shift) | row, so the rows are gathered straight from the input batches, only
 * for the output batch (or spill record) at hand.
 */
export interface SortedRows {
  readonly batches: readonly Batch[];
  readonly ids: Uint32Array;
  readonly shift: number;
  /** The same rows packed row-major (see packRows), when sortRows packed them. */
  readonly packed?: PackedRows;
}

/**
 * Buffered rows packed row-major per input batch: the numeric columns of row i at
 * f[i*F .. i*F+F), the others at a[i*A .. i*A+A). Gathering rows in sorted (random) order then
 * touches one or two cache lines a row instead of one per column: with 7 columns over 1M rows
 * the columnar gather was memory-latency bound.
 */
interface PackedRows {
  readonly fPaths: readonly string[];
  readonly aPaths: readonly string[];
  readonly packs: { f: Float64Array; fAbsent: Uint8Array | null; a: unknown[] }[];
}

function packRows(batches: Batch[]): PackedRows {
  const paths = unionPaths(batches);
  const fPaths = paths.filter((p) => batches.every((b) => vectorOf(b, p).kind === 'f64'));
  const aPaths = paths.filter((p) => !fPaths.includes(p));
  const F = fPaths.length, A = aPaths.length;
  const packs: PackedRows['packs'] = [];
  for (let bi = 0; bi < batches.length; bi++) {
    const b = batches[bi], n = b.length;
    const f = new Float64Array(n * F);
    let fAbsent: Uint8Array | null = null;
    for (let c = 0; c < F; c++) {
      const v = vectorOf(b, fPaths[c]) as F64Vector;
      const values = v.values, absent = v.absent;
      for (let i = 0; i < n; i++) f[i * F + c] = values[i];
      if (absent) for (let i = 0; i < n; i++) if (absent[i]) (fAbsent ??= new Uint8Array(n * F))[i * F + c] = 1;
    }
    const a = new Array(n * A);
    for (let c = 0; c < A; c++) {
      const v = vectorOf(b, aPaths[c]);
      if (v.kind === 'any') { const values = v.values; for (let i = 0; i < n; i++) a[i * A + c] = values[i]; }
      else for (let i = 0; i < n; i++) a[i * A + c] = valueAt(v, i);
    }
    packs.push({ f, fAbsent, a });
    // The caller's array: each input batch is let go as soon as it is packed (lower peak).
    batches[bi] = EMPTY_BATCH;
  }
  return { fPaths, aPaths, packs };
}

const EMPTY_BATCH: Batch = { length: 0, vectors: new Map() };

function gatherPacked(rows: SortedRows, p: PackedRows, from: number, to: number): Batch {
  const { ids, shift } = rows;
  const n = to - from, mask = shift >= 32 ? 0xffffffff : (1 << shift) - 1;
  const F = p.fPaths.length, A = p.aPaths.length, packs = p.packs;
  const fOut = p.fPaths.map(() => new Float64Array(n));
  const fAbsent: (Uint8Array | null)[] = p.fPaths.map(() => null);
  const aOut = p.aPaths.map(() => new Array(n));
  for (let k = 0; k < n; k++) {
    const id = ids[from + k], pack = packs[id >>> shift], i = id & mask;
    const fb = i * F, f = pack.f;
    for (let c = 0; c < F; c++) fOut[c][k] = f[fb + c];
    if (pack.fAbsent !== null) for (let c = 0; c < F; c++) if (pack.fAbsent[fb + c]) (fAbsent[c] ??= new Uint8Array(n))[k] = 1;
    const ab = i * A, a = pack.a;
    for (let c = 0; c < A; c++) aOut[c][k] = a[ab + c];
  }
  const vectors = new Map<string, Vector>();
  p.fPaths.forEach((path, c) => vectors.set(path, { kind: 'f64', values: fOut[c], absent: fAbsent[c] }));
  p.aPaths.forEach((path, c) => vectors.set(path, { kind: 'any', values: aOut[c] }));
  return { length: n, vectors };
}

const bitsFor = (n: number) => Math.max(1, 32 - Math.clz32(Math.max(1, n - 1)));

/** Bytes of scratch the sort needs per buffered row (key images, ids and their radix copies). */
export const SORT_SCRATCH_BYTES_PER_ROW = 28;

/** Sorts the buffered batches; `batches` is emptied on the way (the rows move into the result). */
export function sortRows(batches: Batch[], keys: readonly SortKey[]): SortedRows {
  let total = 0, longest = 0;
  for (const b of batches) { total += b.length; longest = Math.max(longest, b.length); }
  const shift = bitsFor(longest);
  const vectors = keys.length === 1 ? batches.map((b) => pathVector(b, keys[0].path)) : null;
  if (vectors && vectors.every((v) => v.kind === 'f64') && batches.length <= 2 ** (32 - shift)) {
    // One numeric key: radix argsort of its key images, carrying the row ids along.
    const hi = new Uint32Array(total), lo = new Uint32Array(total), ids = new Uint32Array(total);
    let at = 0;
    for (let bi = 0; bi < batches.length; bi++) {
      const v = vectors[bi] as F64Vector, n = batches[bi].length;
      keyImages(v.values.length === n ? v.values : v.values.subarray(0, n), v.absent, keys[0].desc, hi, lo, at);
      const base = (bi << shift) >>> 0;
      for (let i = 0; i < n; i++) ids[at + i] = (base | i) >>> 0;
      at += n;
    }
    const sorted = radixSortPayload(hi, lo, ids, total);
    return { batches: [], ids: sorted, shift, packed: packRows(batches) };
  }
  const one = concatBatches(batches);
  batches.length = 0;
  const perm = sortPermutation(one, keys);
  const only = [one];
  return { batches: [], ids: perm, shift: bitsFor(one.length), packed: packRows(only) };
}

interface SourceColumn { path: string; f64: boolean; vals: Float64Array[]; abs: (Uint8Array | null)[]; anyAbsent: boolean; vecs: Vector[] }

/**
 * Rows ids[from, to) of a SortedRows (or of any batches with ids so encoded) as one batch.
 * `cache` keeps the per-path source vectors between calls over the same batches.
 */
export function gatherRows(rows: SortedRows, from: number, to: number, cache?: { columns?: SourceColumn[] }): Batch {
  if (rows.packed) return gatherPacked(rows, rows.packed, from, to);
  const { batches, ids, shift } = rows;
  const n = to - from;
  const mask = shift >= 32 ? 0xffffffff : (1 << shift) - 1;
  const vectors = new Map<string, Vector>();
  if (batches.length === 0) return { length: n, vectors };
  let columns = cache?.columns;
  if (!columns) {
    columns = unionPaths(batches).map((path) => {
      const vecs = batches.map((b) => vectorOf(b, path));
      const f64 = vecs.every((v) => v.kind === 'f64');
      const vals = f64 ? vecs.map((v) => (v as F64Vector).values) : [];
      const abs = f64 ? vecs.map((v) => (v as F64Vector).absent) : [];
      return { path, f64, vals, abs, anyAbsent: abs.some((x) => x !== null), vecs };
    });
    if (cache) cache.columns = columns;
  }
  for (const col of columns) {
    if (col.f64) {
      const vals = col.vals, abs = col.abs;
      const values = new Float64Array(n);
      let absent: Uint8Array | null = null;
      for (let k = 0; k < n; k++) {
        const id = ids[from + k];
        values[k] = vals[id >>> shift][id & mask];
      }
      if (col.anyAbsent) {
        for (let k = 0; k < n; k++) {
          const id = ids[from + k], a = abs[id >>> shift];
          if (a !== null && a[id & mask]) (absent ??= new Uint8Array(n))[k] = 1;
        }
      }
      vectors.set(col.path, { kind: 'f64', values, absent });
    } else {
      const vecs = col.vecs;
      const values = new Array(n);
      for (let k = 0; k < n; k++) {
        const id = ids[from + k], v = vecs[id >>> shift], i = id & mask;
        values[k] = v.kind === 'any' ? v.values[i] : valueAt(v, i);
      }
      vectors.set(col.path, { kind: 'any', values });
    }
  }
  return { length: n, vectors };
}

export class SortOp implements Operator {
  readonly name: string;
  private readonly id = nextId++;

  /**
   * `limit` = rows needed from the top (offset + limit), or Infinity for a full sort.
   * `filterToken`: a top-k publishes its cutoff under it (ExecContext.dynamicFilters) for the scan below.
   * `inputRows`: the planner's estimate of the rows to come (at most), when it has one.
   */
  constructor(readonly input: Operator, readonly keys: readonly SortKey[], readonly limit = Infinity, readonly filterToken: object | null = null,
    readonly inputRows: number | null = null) {
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
    // Spill I/O buffers come out of the budget too: a run writer's extent (reserved for the
    // sort's life, so a spill never finds the budget full) and, in the merge, each input's read
    // and join buffers (reserved per input by mergeGroup). A memoryLimit too small to hold even
    // one page each (a few pages in all) gets those minimum buffers outside its reservations.
    const ioPages = spillIoPages(ctx.memory.limitBytes / 16, ctx.spill.pageSize), ioBytes = ioPages * ctx.spill.pageSize;
    using io = ctx.memory.reserve(`${this.name}#${this.id} spill I/O`);
    // Top-k keeps few rows and seldom spills: it keeps room for the writer's extent and reserves
    // it only when it spills.
    const full = !Number.isFinite(this.limit);
    const headroom = ioBytes <= ctx.memory.limitBytes / 4 ? ioBytes : 0;
    if (full) io.tryGrow(ioBytes);
    const grow = (n: number) => (io.size > 0 || ctx.memory.reservedBytes + n + headroom <= ctx.memory.limitBytes) && buffered.tryGrow(n);
    const runs: SpillRun[] = [];
    const cutoff = new TopKCutoff(this.keys, this.limit);
    if (this.filterToken !== null) ctx.dynamicFilters?.set(this.filterToken, cutoff);
    let pending: Batch[] = [];
    let pendingRows = 0;
    let bytesPerRow = 64;
    // Spilled chunks are sized so that a merge of several runs holds one chunk per run in budget.
    const chunkRows = () => Math.max(16, Math.min(ctx.batchSize, RECORD_ROWS, Math.floor(ctx.memory.limitBytes / (16 * bytesPerRow))));
    // Counted with the smallest reads (a page an input): mergeGroup gives the inputs of a merge
    // larger reads when fewer of them share the budget.
    const fanIn = () => Math.max(2, Math.min(MAX_FAN_IN, Math.floor((ctx.memory.limitBytes * 0.5) / (chunkRows() * bytesPerRow + mergeInputIoBytes(1, ctx.spill.pageSize)))));
    const track = () => { if (stats) stats.peakReservedBytes = Math.max(stats.peakReservedBytes, buffered.peakBytes + io.size); };
    const label = `${this.name}#${this.id}`;
    // A full sort buffers into a SortBuffer (rows packed as they come); top-k keeps batches.
    const buf = full ? new SortBuffer(this.keys, (bs) => {
      const one = concatBatches(bs);
      bs.length = 0;
      return { batch: one, perm: sortPermutation(one, this.keys) };
    }) : null;
    const spillSorted = async () => {
      if (buf) {
        if (buf.rows === 0) return;
        runs.push(await writeRun(ctx, label, buf.sort(), chunkRows(), ioPages, stats));
        buffered.free();
        return;
      }
      if (pending.length === 0) return;
      // When the budget cannot give the writer its extent, it writes a page at a time.
      const pages = io.size > 0 || io.tryGrow(ioBytes) ? ioPages : 1;
      const sorted = sortedView(sortRows(pending, this.keys));
      pending = [];
      pendingRows = 0;
      // Only the best k rows of a top-k's run can reach the output, and no later row that
      // does not sort before its k-th.
      const rows = Math.min(this.limit, sorted.length);
      const written = await writeRun(ctx, label, { length: rows, gather: sorted.gather }, chunkRows(), pages, stats);
      runs.push(written);
      cutoff.addRun(written, sorted.gather(rows - 1, rows), rows);
      buffered.free();
      if (runs.length >= fanIn()) await mergeTopKRuns(pages);
    };
    // A top-k whose k rows do not fit spills at every compaction. Once its runs reach the merge
    // fan-in, the earliest of them are merged into one run of their best k rows, in their
    // place: the disk holds about a fan-in of runs, and the k-th row of a merged run tightens the
    // cutoff. Its inputs read a page at a time, and it merges as many runs (two at least) as
    // leave a quarter more than their records and reads need free: a merge refused memory would
    // fail the query.
    const mergeTopKRuns = async (pages: number) => {
      const perInput = chunkRows() * bytesPerRow + mergeInputIoBytes(1, ctx.spill.pageSize);
      const m = Math.min(runs.length, Math.floor((ctx.memory.limitBytes - ctx.memory.reservedBytes) / (1.25 * perInput)));
      if (m < 2) return;
      const inputs = runs.slice(0, m);
      const merged = await mergeToRun(ctx, inputs, this.keys, label, chunkRows(), 1, pages, stats, this.limit);
      for (const r of inputs) r.drop();
      runs.splice(0, m, merged.run);
      const last = merged.last;
      if (last !== null) cutoff.replaceRuns(inputs, merged.run, sliceBatch(last, last.length - 1, last.length), merged.rows);
    };
    try {
      for await (const batch of run(this.input, ctx)) {
        throwIfAborted(ctx.signal);
        if (batch.length === 0) continue;
        const estimate = batchBytes(batch);
        if (buf) {
          if (buf.rows === 0 && runs.length === 0 && this.inputRows !== null && this.inputRows * (estimate / batch.length) > ctx.memory.limitBytes) buf.expectSpill();
          bytesPerRow = Math.max(bytesPerRow, Math.ceil(estimate / batch.length) + SORT_SCRATCH_BYTES_PER_ROW);
          const held = buf.add(batch);
          // Over budget: this batch goes into the run with the rest (it is in memory anyway).
          if (!buffered.tryGrow((buf.isPlain ? estimate : held) + SORT_SCRATCH_BYTES_PER_ROW * batch.length)) await spillSorted();
          track();
          continue;
        }
        const rows = cutoff.filter(batch);
        if (rows.length === 0) continue;
        const bytes = rows === batch ? estimate : batchBytes(rows);
        bytesPerRow = Math.max(bytesPerRow, Math.ceil(bytes / rows.length));
        if (!grow(bytes)) {
          // No room to hold the batch: keep the best k of it and of what is held (the batch is
          // in memory anyway; only the kept rows stay), and spill those if even they do not fit,
          // or at once when there are no more than k of them. A batch of wide rows can be a
          // large part of a small budget, or larger than what another operator leaves free.
          pending.push(rows);
          pendingRows += rows.length;
          if (pendingRows <= this.limit || !this.compactTopK(pending, buffered, cutoff, (p, r) => { pending = p; pendingRows = r; })) await spillSorted();
          track();
          continue;
        }
        pending.push(rows);
        pendingRows += rows.length;
        track();
        // Top-k: once twice k rows are buffered, keep only the best k. Until the first
        // compaction sets the cutoff, at 2k rows already: over a sparse input (a selective join)
        // a batch's worth of rows took thousands of scanned rows that the cutoff would have skipped.
        if (pendingRows >= (cutoff.active() ? Math.max(2 * this.limit, ctx.batchSize) : 2 * this.limit)) {
          if (!this.compactTopK(pending, buffered, cutoff, (p, r) => { pending = p; pendingRows = r; })) await spillSorted();
        }
      }
      if (runs.length === 0) {
        let sorted: Sorted;
        if (buf) {
          if (buf.rows === 0) return; // no input rows: nothing to sort
          sorted = buf.sort();
        } else {
          if (pending.length === 0) return; // no input rows: nothing to sort (an empty batch has no key vectors)
          sorted = sortedView(sortRows(pending, this.keys));
          pending = [];
        }
        const total = Math.min(this.limit, sorted.length);
        for (let from = 0; from < total; from += ctx.batchSize) yield sorted.gather(from, Math.min(total, from + ctx.batchSize));
        return;
      }
      await spillSorted();
      buf?.release();
      let produced = 0;
      for await (const batch of mergeRuns(ctx, runs, this.keys, `${this.name}#${this.id}`, fanIn(), chunkRows(), chunkRows() * bytesPerRow, ioPages, stats)) {
        const take = Math.min(batch.length, this.limit - produced);
        yield take === batch.length ? batch : gatherBatch(batch, range(take));
        produced += take;
        if (produced >= this.limit) return;
      }
    } finally {
      if (this.filterToken !== null) ctx.dynamicFilters?.delete(this.filterToken);
      buf?.release(); // the output batches are copies: the packs' memory can go at once
      for (const r of runs) r.drop();
    }
  }

  /** Keeps only the best `limit` rows of `pending`; false when they do not fit in the budget (unreserved: spill them). */
  private compactTopK(pending: Batch[], buffered: { free(): void; tryGrow(n: number): boolean }, cutoff: TopKCutoff, set: (p: Batch[], rows: number) => void): boolean {
    const sorted = sortBatch(concatBatches(pending), this.keys);
    const kept = gatherBatch(sorted, range(Math.min(this.limit, sorted.length)));
    if (kept.length > 0) cutoff.setHeld(gatherBatch(kept, [kept.length - 1]), kept.length);
    buffered.free();
    const fits = buffered.tryGrow(batchBytes(kept));
    set([kept], kept.length);
    return fits;
  }
}

/**
 * A bound on the k-th best row a top-k has seen: the last row of the fewest spilled runs (and
 * held rows) that together hold k rows. A later row that does not sort before it cannot be
 * among the best k — ties keep input order, so it would come after k others — and is dropped on
 * arrival, or by the scan below before it decodes the row's other columns (a RowFilter), so
 * most of a long input is never built, buffered or sorted.
 */
class TopKCutoff implements RowFilter {
  readonly paths: readonly string[];
  private cut: Vector[] | null = null;
  /** Spilled runs: how many rows each wrote and the keys of its last. */
  private runs: { run: object; keys: Vector[]; rows: number }[] = [];
  private held: { keys: Vector[]; rows: number } | null = null;
  private readonly cmp: ReturnType<typeof makeRowComparator>;
  /** The cut's first key when it is a plain number (compared without the general comparator). */
  private cutNumber: number | null = null;

  constructor(private readonly sortKeys: readonly SortKey[], private readonly k: number) {
    this.cmp = makeRowComparator(sortKeys);
    this.paths = sortKeys.map((key) => key.path);
  }

  /** `run` of `rows` sorted rows was written; `last` is a batch of its last row. */
  addRun(run: object, last: Batch, rows: number): void {
    this.runs.push({ run, keys: this.keysOf(last), rows });
    this.held = null; // the held rows are what was written
    this.update();
  }

  /** Runs `old` were merged into `run`, of `rows` rows; `last` is a batch of its last row. */
  replaceRuns(old: readonly object[], run: object, last: Batch, rows: number): void {
    this.runs = this.runs.filter((r) => !old.includes(r.run));
    this.addRun(run, last, rows);
  }

  /** The rows held after a compaction: `rows` of them, `last` the worst. */
  setHeld(last: Batch, rows: number): void {
    this.held = { keys: this.keysOf(last), rows };
    this.update();
  }

  active(): boolean {
    return this.cut !== null;
  }

  select(vectors: ReadonlyMap<string, Vector>, sel: Uint32Array, count: number): number {
    const cut = this.cut;
    if (cut === null) return count;
    const vs = this.sortKeys.map((key) => vectors.get(key.path)!);
    const first = vs[0], c0 = this.cutNumber;
    let n = 0;
    if (c0 !== null && first.kind === 'f64' && first.absent === null) {
      // Most rows are decided by the first key alone; ties and NaN go to the comparator.
      const xs = first.values, desc = this.sortKeys[0].desc;
      for (let j = 0; j < count; j++) {
        const i = sel[j], x = xs[i];
        if (desc ? x > c0 : x < c0) sel[n++] = i;
        else if (!(desc ? x < c0 : x > c0) && this.cmp(vs, i, cut, 0) < 0) sel[n++] = i;
      }
      return n;
    }
    for (let j = 0; j < count; j++) if (this.cmp(vs, sel[j], cut, 0) < 0) sel[n++] = sel[j];
    return n;
  }

  /** The rows of `b` that sort before the cutoff (`b` itself when all do). */
  filter(b: Batch): Batch {
    if (this.cut === null) return b;
    const vectors = new Map(this.sortKeys.map((key) => [key.path, pathVector(b, key.path)] as const));
    const sel = range(b.length);
    const n = this.select(vectors, sel, b.length);
    return n === b.length ? b : gatherBatch(b, sel, n);
  }

  private keysOf(row: Batch): Vector[] {
    return this.sortKeys.map((key) => pathVector(row, key.path));
  }

  private update(): void {
    const parts = this.held ? [...this.runs, this.held] : this.runs.slice();
    parts.sort((x, y) => this.cmp(x.keys, 0, y.keys, 0));
    let rows = 0;
    for (let i = 0; i < parts.length; i++) {
      rows += parts[i].rows;
      if (rows >= this.k) {
        const cut = parts[i].keys;
        if (this.cut !== null && this.cmp(cut, 0, this.cut, 0) >= 0) return; // only ever tightened
        this.cut = cut;
        const c0 = valueAt(cut[0], 0);
        this.cutNumber = typeof c0 === 'number' && !Number.isNaN(c0) ? c0 : null;
        // Runs ending after the cutoff can never tighten it again.
        this.runs = this.runs.filter((r) => this.cmp(r.keys, 0, cut, 0) <= 0);
        return;
      }
    }
  }
}

function range(n: number): Uint32Array {
  const r = new Uint32Array(n);
  for (let i = 0; i < n; i++) r[i] = i;
  return r;
}

async function writeRun(ctx: ExecContext, label: string, sorted: Sorted, chunk: number, ioPages: number, stats?: { spilledBytes: number; spillRuns: number }): Promise<SpillRun> {
  const writer = ctx.spill.createRun(label, ioPages);
  const total = sorted.length;
  try {
    for (let from = 0; from < total; from += chunk) {
      throwIfAborted(ctx.signal);
      const to = Math.min(total, from + chunk);
      const bytes = sorted.encode ? sorted.encode(from, to) : encodeBatch(sorted.gather(from, to));
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

/** A SortedRows as a Sorted (gathers with its source columns cached). */
function sortedView(rows: SortedRows): Sorted {
  const cache = {};
  return { length: rows.ids.length, gather: (from, to) => gatherRows(rows, from, to, cache) };
}

/** A merge input's I/O: its read buffer and the buffer joining page bodies (a read's bodies plus a record carried over). */
const mergeInputIoBytes = (readPages: number, pageSize: number) => 2 * readPages * pageSize;

/**
 * Pages each of `inputs` merge inputs reads at a time: as many as keep their I/O and one
 * record of `chunkBytes` each within half the budget, between one page and `ioPages`.
 */
function mergeReadPages(ctx: ExecContext, inputs: number, chunkBytes: number, ioPages: number): number {
  const share = (ctx.memory.limitBytes * 0.5) / inputs - chunkBytes;
  return Math.max(1, Math.min(ioPages, Math.floor(share / mergeInputIoBytes(1, ctx.spill.pageSize))));
}

/** K-way merge of sorted runs; more runs than the fan-in are first merged into longer runs. */
async function* mergeRuns(ctx: ExecContext, runs: SpillRun[], keys: readonly SortKey[], label: string, fanIn: number, chunk: number, chunkBytes: number, ioPages: number, stats?: { spilledBytes: number; spillRuns: number }): AsyncGenerator<Batch> {
  // Each pass merges consecutive groups, keeping run order so ties stay in input order.
  while (runs.length > fanIn) {
    const merged: SpillRun[] = [];
    while (runs.length > 0) {
      const group = runs.splice(0, fanIn);
      if (group.length === 1) { merged.push(group[0]); continue; }
      try {
        merged.push((await mergeToRun(ctx, group, keys, label, chunk, mergeReadPages(ctx, group.length, chunkBytes, ioPages), ioPages, stats)).run);
      } catch (err) {
        for (const r of merged) r.drop();
        throw err;
      } finally {
        for (const r of group) r.drop();
      }
    }
    runs.push(...merged);
  }
  yield* mergeGroup(ctx, runs, keys, mergeReadPages(ctx, runs.length, chunkBytes, ioPages));
}

/**
 * Merges `group` into one new run, in records of `chunk` rows like the first runs (the next
 * merge holds one per run in budget), keeping at most `maxRows` rows; with the rows kept and the
 * last record written (null when none). The inputs are left to the caller.
 */
async function mergeToRun(ctx: ExecContext, group: readonly SpillRun[], keys: readonly SortKey[], label: string, chunk: number, readPages: number, ioPages: number,
  stats: { spilledBytes: number; spillRuns: number } | undefined, maxRows = Infinity): Promise<{ run: SpillRun; rows: number; last: Batch | null }> {
  const writer = ctx.spill.createRun(label, ioPages);
  let rows = 0, last: Batch | null = null;
  try {
    for await (const b of mergeGroup(ctx, group, keys, readPages)) {
      const take = Math.min(b.length, maxRows - rows);
      for (let from = 0; from < take; from += chunk) {
        last = sliceBatch(b, from, Math.min(take, from + chunk));
        const bytes = encodeBatch(last);
        await writer.append(bytes);
        if (stats) stats.spilledBytes += bytes.byteLength;
      }
      rows += take;
      if (rows >= maxRows) break;
    }
    const run = await writer.finish();
    if (stats) stats.spillRuns++;
    return { run, rows, last };
  } catch (err) {
    writer.abort();
    throw err;
  }
}

interface Cursor {
  it: AsyncIterator<Buffer>; batch: Batch; vectors: Vector[]; row: number; order: number;
  /** Key images of the batch (one numeric key), else null. */
  hi: Uint32Array | null; lo: Uint32Array | null;
  /** Index of the batch among the current output batch's sources, -1 when not yet one. */
  seg: number;
}

/** Row bits of a merge output id; the rest name the source batch. */
const SEG_SHIFT = 20;
const MAX_SEGS = 2 ** (32 - SEG_SHIFT);

async function* mergeGroup(ctx: ExecContext, runs: readonly SpillRun[], keys: readonly SortKey[], readPages: number): AsyncGenerator<Batch> {
  const cmp = makeRowComparator(keys);
  using room = ctx.memory.reserve('SortMerge');
  room.tryGrow(runs.length * mergeInputIoBytes(readPages, ctx.spill.pageSize)); // refused only under a budget of a few pages
  const cursors: Cursor[] = [];
  const advanceBatch = async (c: Cursor): Promise<boolean> => {
    const next = await c.it.next();
    if (next.done) return false;
    room.shrink(batchBytes(c.batch) + (c.hi ? 8 * c.batch.length : 0));
    c.batch = decodeBatch(next.value);
    if (c.batch.length >= 2 ** SEG_SHIFT) throw new Error('internal: spill record too long to merge');
    c.vectors = keys.map((k) => pathVector(c.batch, k.path));
    c.row = 0;
    c.seg = -1;
    const v = c.vectors.length === 1 && c.vectors[0].kind === 'f64' ? (c.vectors[0] as F64Vector) : null;
    if (v) {
      // Comparing key images is two integer compares instead of the general comparator.
      if (!c.hi || c.hi.length < c.batch.length) { c.hi = new Uint32Array(c.batch.length); c.lo = new Uint32Array(c.batch.length); }
      keyImages(v.values, v.absent, keys[0].desc, c.hi, c.lo!, 0);
    } else c.hi = c.lo = null;
    room.grow(batchBytes(c.batch) + (c.hi ? 8 * c.batch.length : 0)); // merge needs one batch per run; refuse rather than overrun
    return true;
  };
  try {
    for (let r = 0; r < runs.length; r++) {
      const c: Cursor = { it: runs[r].records(readPages)[Symbol.asyncIterator](), batch: { length: 0, vectors: new Map() }, vectors: [], row: 0, order: r, hi: null, lo: null, seg: -1 };
      if (await advanceBatch(c)) cursors.push(c);
    }
    const less = (a: Cursor, b: Cursor) => {
      if (a.hi !== null && b.hi !== null) {
        const x = a.hi[a.row], y = b.hi[b.row];
        if (x !== y) return x < y;
        const p = a.lo![a.row], q = b.lo![b.row];
        if (p !== q) return p < q;
        return a.order < b.order;
      }
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
        const t = heap[i]; heap[i] = heap[m]; heap[m] = t;
        i = m;
      }
    };
    for (let i = (heap.length >> 1) - 1; i >= 0; i--) sift(i);
    // Output rows are collected as (source batch, row) ids and gathered column by column.
    let segs: Batch[] = [];
    const ids = new Uint32Array(ctx.batchSize);
    let count = 0;
    const flush = (): Batch => {
      const out = gatherRows({ batches: segs, ids, shift: SEG_SHIFT }, 0, count);
      segs = [];
      count = 0;
      for (const c of cursors) c.seg = -1;
      return out;
    };
    while (heap.length > 0) {
      throwIfAborted(ctx.signal);
      const top = heap[0];
      if (top.seg < 0) { top.seg = segs.length; segs.push(top.batch); }
      ids[count++] = ((top.seg << SEG_SHIFT) | top.row) >>> 0;
      if (count >= ctx.batchSize || segs.length >= MAX_SEGS) yield flush();
      top.row++;
      if (top.row >= top.batch.length && !(await advanceBatch(top))) {
        heap[0] = heap[heap.length - 1];
        heap.pop();
      }
      if (heap.length > 0) sift(0);
    }
    if (count > 0) yield flush();
  } finally {
    for (const c of cursors) await c.it.return?.(undefined);
  }
}
