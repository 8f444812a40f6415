// Hash join. The build side is loaded into a hash table under a memory reservation; when it
// does not fit, both sides are partitioned by hash of the join key into spill runs (grace hash
// join) and each partition pair is joined on its own, re-partitioned with a new seed when still
// too large. A partition that does not shrink (one key holding most rows: skew) is joined
// block by block: chunks of the build side that fit, each against a full pass of the probe side.
import type { SpillRun } from '../storage/spill-space.js';
import { batchBytes, concatBatches, gatherBatch, valueAt, type Batch, type Vector } from './batch.js';
import { run, statsOf, throwIfAborted, type ExecContext, type Operator, type OperatorStats } from './operator.js';
import { pathVector } from './paths.js';
import { hashValue } from './hash.js';
import { decodeBatch, encodeBatch } from './spill-codec.js';
import type { Reservation } from '../storage/memory-pool.js';

const PARTITIONS = 16;
const MAX_LEVEL = 3;
let nextId = 1;

export interface JoinParams {
  readonly leftPath: string;
  readonly rightPath: string;
  readonly as: string;
  readonly type: 'inner' | 'left';
  /** Which input is hashed; 'left' is allowed for inner joins only. */
  readonly buildSide: 'left' | 'right';
}

type Source = () => AsyncIterable<Batch>;

function joinKey(v: unknown): unknown {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number') return Number.isNaN(v) ? undefined : v === 0 ? 0 : v;
  if (typeof v === 'object') return v instanceof Date ? v.getTime() : JSON.stringify(v);
  return v;
}


export class HashJoinOp implements Operator {
  readonly name = 'HashJoin';
  private readonly id = nextId++;

  constructor(readonly left: Operator, readonly right: Operator, readonly params: JoinParams) {}

  children(): readonly Operator[] { return [this.left, this.right]; }

  describe(): string {
    const p = this.params;
    return `${p.type} join on ${p.leftPath} = ${p.as}.${p.rightPath}, builds the ${p.buildSide} side; grace partitions when over budget`;
  }

  private get buildPath(): string { return this.params.buildSide === 'right' ? this.params.rightPath : this.params.leftPath; }
  private get probePath(): string { return this.params.buildSide === 'right' ? this.params.leftPath : this.params.rightPath; }

  async *execute(ctx: ExecContext): AsyncGenerator<Batch> {
    const stats = statsOf(ctx, this);
    using reservation = ctx.memory.reserve(`HashJoin#${this.id}`);
    const [buildOp, probeOp] = this.params.buildSide === 'right' ? [this.right, this.left] : [this.left, this.right];
    const loaded: Batch[] = [];
    let overflow: AsyncIterator<Batch> | null = null;
    const buildInput = run(buildOp, ctx)[Symbol.asyncIterator]();
    try {
      for (;;) {
        const next = await buildInput.next();
        if (next.done) break;
        throwIfAborted(ctx.signal);
        if (!reservation.tryGrow(batchBytes(next.value) + next.value.length * 16)) {
          loaded.push(next.value);
          overflow = buildInput;
          break;
        }
        loaded.push(next.value);
      }
      if (stats) stats.peakReservedBytes = Math.max(stats.peakReservedBytes, reservation.peakBytes);
      if (!overflow) {
        const table = buildTable(loaded, this.buildPath);
        for await (const probe of run(probeOp, ctx)) {
          throwIfAborted(ctx.signal);
          const out = this.probeBatch(table, probe, null);
          if (out) yield out;
        }
        return;
      }
      // Grace hash join: everything goes to partitions, the rows already loaded first.
      const rest = overflow;
      const buildParts = await partition(ctx, async function* () {
        yield* loaded;
        loaded.length = 0;
        for (;;) { const n = await rest.next(); if (n.done) return; yield n.value; }
      }, this.buildPath, 0, `HashJoin#${this.id}/build`, stats);
      reservation.free();
      let probeParts: SpillRun[] = [];
      try {
        probeParts = await partition(ctx, () => run(probeOp, ctx), this.probePath, 0, `HashJoin#${this.id}/probe`, stats);
        for (let p = 0; p < PARTITIONS; p++) {
          yield* this.joinPartition(ctx, buildParts[p], probeParts[p], 1, reservation, stats);
        }
      } finally {
        for (const r of [...buildParts, ...probeParts]) r.drop();
      }
    } finally {
      await buildInput.return?.(undefined);
    }
  }

  private async *joinPartition(ctx: ExecContext, build: SpillRun, probe: SpillRun, level: number, reservation: Reservation, stats?: OperatorStats): AsyncGenerator<Batch> {
    const loaded: Batch[] = [];
    let fits = true;
    for await (const record of build.records()) {
      const b = decodeBatch(record);
      if (!reservation.tryGrow(batchBytes(b) + b.length * 16)) { fits = false; break; }
      loaded.push(b);
    }
    if (stats) stats.peakReservedBytes = Math.max(stats.peakReservedBytes, reservation.peakBytes);
    if (fits) {
      const table = buildTable(loaded, this.buildPath);
      for await (const record of probe.records()) {
        throwIfAborted(ctx.signal);
        const out = this.probeBatch(table, decodeBatch(record), null);
        if (out) yield out;
      }
      reservation.free();
      return;
    }
    loaded.length = 0;
    reservation.free();
    if (level < MAX_LEVEL) {
      const seed = level;
      const subBuild = await partition(ctx, () => batchesOf(build), this.buildPath, seed, `HashJoin#${this.id}/build`, stats);
      const subProbe = await partition(ctx, () => batchesOf(probe), this.probePath, seed, `HashJoin#${this.id}/probe`, stats);
      try {
        // A partition that did not shrink holds one dominant key: splitting again cannot help.
        const largest = Math.max(...subBuild.map((r) => r.byteLength));
        if (largest < build.byteLength * 0.9) {
          for (let p = 0; p < PARTITIONS; p++) yield* this.joinPartition(ctx, subBuild[p], subProbe[p], level + 1, reservation, stats);
          return;
        }
      } finally {
        for (const r of [...subBuild, ...subProbe]) r.drop();
      }
    }
    yield* this.blockJoin(ctx, build, probe, reservation);
  }

  /** Skewed partition: build chunks that fit, each probed by a full pass; unmatched left rows last. */
  private async *blockJoin(ctx: ExecContext, build: SpillRun, probe: SpillRun, reservation: Reservation): AsyncGenerator<Batch> {
    const outer = this.params.type === 'left';
    let matchedBits: Uint8Array | null = outer ? new Uint8Array(1024) : null;
    const buildIt = build.records()[Symbol.asyncIterator]();
    let pendingBatch: Batch | null = null;
    try {
      for (;;) {
        const chunk: Batch[] = [];
        if (pendingBatch) { chunk.push(pendingBatch); reservation.grow(batchBytes(pendingBatch) + pendingBatch.length * 16); pendingBatch = null; }
        for (;;) {
          const n = await buildIt.next();
          if (n.done) break;
          const b = decodeBatch(n.value);
          if (!reservation.tryGrow(batchBytes(b) + b.length * 16)) {
            if (chunk.length === 0) reservation.grow(batchBytes(b) + b.length * 16); // one batch must fit
            else { pendingBatch = b; break; }
          }
          chunk.push(b);
        }
        if (chunk.length === 0) break;
        const table = buildTable(chunk, this.buildPath);
        let ordinal = 0;
        for await (const record of probe.records()) {
          throwIfAborted(ctx.signal);
          const p = decodeBatch(record);
          if (outer) {
            const need = ordinal + p.length;
            if (matchedBits!.length < need) { const g = new Uint8Array(Math.max(need, matchedBits!.length * 2)); g.set(matchedBits!); matchedBits = g; }
          }
          const out = this.probeBatch(table, p, outer ? { bits: matchedBits!, base: ordinal } : null, true);
          ordinal += p.length;
          if (out) yield out;
        }
        reservation.free();
        if (!pendingBatch) {
          const peek = await buildIt.next();
          if (peek.done) break;
          pendingBatch = decodeBatch(peek.value);
        }
      }
      if (outer) {
        let ordinal = 0;
        for await (const record of probe.records()) {
          const p = decodeBatch(record);
          const probeIdx: number[] = [];
          for (let i = 0; i < p.length; i++) if (!matchedBits![ordinal + i]) probeIdx.push(i);
          ordinal += p.length;
          if (probeIdx.length) yield this.output(p, probeIdx, null, new Array(probeIdx.length).fill(-1));
        }
      }
    } finally {
      await buildIt.return?.(undefined);
      reservation.free();
    }
  }

  /**
   * Matches one probe batch. `matched` (block join) records which probe rows found a partner;
   * `deferOuter` leaves unmatched rows for the final pass instead of emitting them now.
   */
  private probeBatch(table: BuildTable, probe: Batch, matched: { bits: Uint8Array; base: number } | null, deferOuter = false): Batch | null {
    const keys = pathVector(probe, this.probePath);
    const probeIdx: number[] = [];
    const buildIdx: number[] = [];
    const outer = this.params.type === 'left';
    for (let i = 0; i < probe.length; i++) {
      const k = joinKey(valueAt(keys, i));
      let j = k === undefined ? -1 : table.first.get(k) ?? -1;
      if (j < 0) {
        if (outer && !deferOuter) { probeIdx.push(i); buildIdx.push(-1); }
        continue;
      }
      if (matched) matched.bits[matched.base + i] = 1;
      for (; j >= 0; j = table.next[j]) { probeIdx.push(i); buildIdx.push(j); }
    }
    if (probeIdx.length === 0) return null;
    return this.output(probe, probeIdx, table.batch, buildIdx);
  }

  private output(probe: Batch, probeIdx: number[], build: Batch | null, buildIdx: number[]): Batch {
    const n = probeIdx.length;
    const probeOut = gatherBatch(probe, probeIdx);
    const vectors = new Map<string, Vector>();
    const buildPrefix = this.params.buildSide === 'right' ? `${this.params.as}.` : '';
    const probePrefix = this.params.buildSide === 'right' ? '' : `${this.params.as}.`;
    for (const [path, v] of probeOut.vectors) vectors.set(probePrefix + path, v);
    const buildVectors = build ? build.vectors : new Map<string, Vector>();
    for (const [path, v] of buildVectors) {
      if (v.kind === 'f64') {
        const values = new Float64Array(n);
        let absent: Uint8Array | null = null;
        for (let k = 0; k < n; k++) {
          const j = buildIdx[k];
          if (j < 0 || (v.absent && v.absent[j])) (absent ??= new Uint8Array(n))[k] = 1;
          else values[k] = v.values[j];
        }
        vectors.set(buildPrefix + path, { kind: 'f64', values, absent });
      } else {
        const values = new Array(n);
        for (let k = 0; k < n; k++) values[k] = buildIdx[k] < 0 ? undefined : v.values[buildIdx[k]];
        vectors.set(buildPrefix + path, { kind: 'any', values });
      }
    }
    // Presence marker of the joined row: absent for a left join without a match.
    vectors.set(this.params.as, { kind: 'any', values: buildIdx.map((j) => (j < 0 ? undefined : true)) });
    return { length: n, vectors };
  }
}

interface BuildTable { batch: Batch; first: Map<unknown, number>; next: Int32Array }

/** Rows chained by key: first[key] → row, next[row] → row with the same key, -1 at the end (input order). */
function buildTable(batches: Batch[], path: string): BuildTable {
  const batch = concatBatches(batches);
  const keys = batch.length ? pathVector(batch, path) : null;
  const first = new Map<unknown, number>();
  const next = new Int32Array(batch.length).fill(-1);
  const last = new Map<unknown, number>();
  for (let i = 0; i < batch.length; i++) {
    const k = joinKey(valueAt(keys!, i));
    if (k === undefined) continue;
    const tail = last.get(k);
    if (tail === undefined) first.set(k, i);
    else next[tail] = i;
    last.set(k, i);
  }
  return { batch, first, next };
}

async function* batchesOf(runIn: SpillRun): AsyncGenerator<Batch> {
  for await (const record of runIn.records()) yield decodeBatch(record);
}

/** Splits a stream of batches into PARTITIONS spill runs by hash of `path`. */
async function partition(ctx: ExecContext, source: Source, path: string, seed: number, label: string, stats?: OperatorStats): Promise<SpillRun[]> {
  const writers = Array.from({ length: PARTITIONS }, (_, p) => ctx.spill.createRun(`${label}/S${seed}P${p}`));
  try {
    for await (const b of source()) {
      throwIfAborted(ctx.signal);
      const keys = pathVector(b, path);
      const buckets: number[][] = Array.from({ length: PARTITIONS }, () => []);
      for (let i = 0; i < b.length; i++) {
        const k = joinKey(valueAt(keys, i));
        buckets[k === undefined ? 0 : hashValue(k, seed * 0x9e3779b9) % PARTITIONS].push(i);
      }
      for (let p = 0; p < PARTITIONS; p++) {
        if (buckets[p].length === 0) continue;
        const bytes = encodeBatch(gatherBatch(b, buckets[p]));
        await writers[p].append(bytes);
        if (stats) stats.spilledBytes += bytes.byteLength;
      }
    }
    const runs: SpillRun[] = [];
    for (const w of writers) runs.push(await w.finish());
    if (stats) { stats.spillRuns += PARTITIONS; stats.partitions += PARTITIONS; }
    return runs;
  } catch (err) {
    for (const w of writers) w.abort();
    throw err;
  }
}
