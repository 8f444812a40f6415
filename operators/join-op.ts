// Hash join. The build side is loaded into a hash table under a memory reservation; when it
// does not fit, both sides are partitioned by hash of the join key into spill runs (grace hash
// join) and each partition pair is joined on its own, re-partitioned with a new seed when still
// too large. A partition that does not shrink (one key holding most rows: skew) is joined
// block by block: chunks of the build side that fit, each against a full pass of the probe side.
import type { SpillRun } from '../storage/spill-space.js';
import { batchBytes, concatBatches, gather, gatherBatch, sliceBatch, valueAt, type Batch, type Vector } from './batch.js';
import {
  growLeavingPartitionIo, holdPartitionIo, partitionPlan, reservePartitionIo, run, statsOf, throwIfAborted, type ExecContext, type Operator, type OperatorStats, type PartitionPlan,
} from './operator.js';
import { pathVector } from './paths.js';
import { hashValue } from './hash.js';
import { F64HashTable } from './hash-table.js';
import { encodeDict, type DictVector } from './dict-vector.js';
import { decodeBatch, encodeBatch } from './spill-codec.js';
import type { Reservation } from '../storage/memory-pool.js';

const MAX_LEVEL = 3;
/** Build columns with at most this many distinct values carry dictionary codes into the output. */
const DICT_MAX = 4096;
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
    // The partition writers' buffers: reserved (or, under a budget of a few pages, kept free)
    // while the build side loads, since the loaded rows are still held when they are written to
    // partitions; given back once the build side is in memory, kept through the grace join.
    using io = ctx.memory.reserve(`HashJoin#${this.id} spill I/O`);
    const plan = partitionPlan(ctx);
    holdPartitionIo(ctx, io, plan);
    const [buildOp, probeOp] = this.params.buildSide === 'right' ? [this.right, this.left] : [this.left, this.right];
    const loaded: Batch[] = [];
    let overflow: AsyncIterator<Batch> | null = null;
    const buildInput = run(buildOp, ctx)[Symbol.asyncIterator]();
    try {
      for (;;) {
        const next = await buildInput.next();
        if (next.done) break;
        throwIfAborted(ctx.signal);
        if (!growLeavingPartitionIo(ctx, plan, reservation, batchBytes(next.value) + next.value.length * 16, io)) {
          loaded.push(next.value);
          overflow = buildInput;
          break;
        }
        loaded.push(next.value);
      }
      if (stats) stats.peakReservedBytes = Math.max(stats.peakReservedBytes, reservation.peakBytes);
      if (!overflow) {
        io.free(); // the build side is in memory: nothing will be partitioned
        const table = new BuildTable(concatBatches(loaded), this.buildPath);
        for await (const probe of run(probeOp, ctx)) {
          throwIfAborted(ctx.signal);
          yield* this.probeBatch(table, probe, ctx.batchSize, null);
        }
        return;
      }
      // Grace hash join: everything goes to partitions, the rows already loaded first.
      const rest = overflow;
      const buildParts = await partition(ctx, plan, io, reservation, async function* () {
        yield* loaded;
        loaded.length = 0;
        for (;;) { const n = await rest.next(); if (n.done) return; yield n.value; }
      }, this.buildPath, 0, `HashJoin#${this.id}/build`, stats);
      reservation.free();
      let probeParts: SpillRun[] = [];
      try {
        probeParts = await partition(ctx, plan, io, reservation, () => run(probeOp, ctx), this.probePath, 0, `HashJoin#${this.id}/probe`, stats);
        for (let p = 0; p < plan.partitions; p++) {
          yield* this.joinPartition(ctx, plan, io, buildParts[p], probeParts[p], 1, reservation, stats);
        }
      } finally {
        for (const r of [...buildParts, ...probeParts]) r.drop();
      }
    } finally {
      await buildInput.return?.(undefined);
    }
  }

  private async *joinPartition(ctx: ExecContext, plan: PartitionPlan, io: Reservation, build: SpillRun, probe: SpillRun, level: number,
    reservation: Reservation, stats?: OperatorStats): AsyncGenerator<Batch> {
    const loaded: Batch[] = [];
    let fits = true;
    for await (const record of build.records()) {
      const b = decodeBatch(record);
      if (!reservation.tryGrow(batchBytes(b) + b.length * 16)) { fits = false; break; }
      loaded.push(b);
    }
    if (stats) stats.peakReservedBytes = Math.max(stats.peakReservedBytes, reservation.peakBytes);
    if (fits) {
      const table = new BuildTable(concatBatches(loaded), this.buildPath);
      for await (const record of probe.records()) {
        throwIfAborted(ctx.signal);
        yield* this.probeBatch(table, decodeBatch(record), ctx.batchSize, null);
      }
      reservation.free();
      return;
    }
    loaded.length = 0;
    reservation.free();
    if (level < MAX_LEVEL) {
      const seed = level;
      const subBuild = await partition(ctx, plan, io, reservation, () => batchesOf(build), this.buildPath, seed, `HashJoin#${this.id}/build`, stats);
      let subProbe: SpillRun[] = [];
      try {
        subProbe = await partition(ctx, plan, io, reservation, () => batchesOf(probe), this.probePath, seed, `HashJoin#${this.id}/probe`, stats);
        // A partition that did not shrink holds one dominant key: splitting again cannot help.
        const largest = Math.max(...subBuild.map((r) => r.byteLength));
        if (largest < build.byteLength * 0.9) {
          for (let p = 0; p < plan.partitions; p++) yield* this.joinPartition(ctx, plan, io, subBuild[p], subProbe[p], level + 1, reservation, stats);
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
        const table = new BuildTable(concatBatches(chunk), this.buildPath);
        let ordinal = 0;
        for await (const record of probe.records()) {
          throwIfAborted(ctx.signal);
          const p = decodeBatch(record);
          if (outer) {
            const need = ordinal + p.length;
            if (matchedBits!.length < need) { const g = new Uint8Array(Math.max(need, matchedBits!.length * 2)); g.set(matchedBits!); matchedBits = g; }
          }
          yield* this.probeBatch(table, p, ctx.batchSize, outer ? { bits: matchedBits!, base: ordinal } : null, true);
          ordinal += p.length;
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
   * `deferOuter` leaves unmatched rows for the final pass instead of emitting them now. The
   * pairs go out in batches of at most `maxRows` (or the probe batch's length, if larger): a
   * key matching many build rows would otherwise make one batch of probe rows x matches.
   */
  private *probeBatch(table: BuildTable, probe: Batch, maxRows: number, matched: { bits: Uint8Array; base: number } | null, deferOuter = false): Generator<Batch> {
    // At least a pair a probe row, so the unique-key paths of matchPairs need no bound check.
    const cap = Math.max(maxRows, probe.length);
    const at = { row: 0, chain: -1 };
    for (;;) {
      const done = this.matchPairs(table, probe, cap, matched, deferOuter, at);
      const out = this.pairs;
      if (out.count > 0) yield this.output(probe, out.probe, table, out.build, out.count);
      if (done) return;
    }
  }

  /**
   * Fills `pairs` with the pairs of `probe` from `at` on (a probe row, and the build row of its
   * chain to go on with, or -1 to start the row), until `cap` pairs; true when the batch is done,
   * else `at` says where to go on. A plain function, not a generator, so its loops stay tight.
   */
  private matchPairs(table: BuildTable, probe: Batch, cap: number, matched: { bits: Uint8Array; base: number } | null, deferOuter: boolean,
    at: { row: number; chain: number }): boolean {
    const keys = pathVector(probe, this.probePath);
    const emitUnmatched = this.params.type === 'left' && !deferOuter;
    const out = this.pairs;
    out.reset(probe.length);
    const first = table.first, next = table.next;
    const numeric = table.numeric;
    const f64 = numeric && keys.kind === 'f64' ? keys : null;
    const direct = table.direct;
    if (f64 && direct) {
      const values = f64.values, absent = f64.absent, min = table.directMin, len = direct.length, unique = table.unique;
      for (let i = at.row; i < probe.length; i++) {
        let j: number;
        if (at.chain >= 0) { j = at.chain; at.chain = -1; } else {
          const x = values[i] - min;
          j = (absent && absent[i]) || !(x >= 0 && x < len) || (x | 0) !== x ? -1 : direct[x];
          if (j < 0) { if (emitUnmatched) out.push(i, -1); continue; }
          if (matched) matched.bits[matched.base + i] = 1;
          if (unique) { out.probe[out.count] = i; out.build[out.count++] = j; continue; } // reset() left room for one pair a row
        }
        for (; j >= 0; j = next[j]) {
          if (out.count >= cap) { at.row = i; at.chain = j; return false; }
          out.push(i, j);
        }
      }
      return true;
    }
    for (let i = at.row; i < probe.length; i++) {
      let j: number;
      if (at.chain >= 0) { j = at.chain; at.chain = -1; } else {
        let id: number;
        if (f64) {
          // The common case (numeric keys on both sides): a typed-array probe, no boxing.
          const k = f64.values[i];
          id = (f64.absent && f64.absent[i]) || k !== k ? -1 : numeric!.get(k);
        } else id = table.idOf(joinKey(valueAt(keys, i)));
        if (id < 0) { if (emitUnmatched) out.push(i, -1); continue; }
        if (matched) matched.bits[matched.base + i] = 1;
        j = first[id];
        if (next[j] < 0 && out.count < out.probe.length) { out.probe[out.count] = i; out.build[out.count++] = j; continue; }
      }
      for (; j >= 0; j = next[j]) {
        if (out.count >= cap) { at.row = i; at.chain = j; return false; }
        out.push(i, j);
      }
    }
    return true;
  }

  private readonly pairs = new Pairs();

  private output(probe: Batch, probeIdx: Int32Array | number[], table: BuildTable | null, buildIdx: Int32Array | number[], n = probeIdx.length): Batch {
    const build = table ? table.batch : null;
    // Every probe row once, in order (an inner join on a unique build key): no gather needed.
    let identity = n === probe.length;
    for (let k = 0; identity && k < n; k++) identity = probeIdx[k] === k;
    const vectors = new Map<string, Vector>();
    const buildPrefix = this.params.buildSide === 'right' ? `${this.params.as}.` : '';
    const probePrefix = this.params.buildSide === 'right' ? '' : `${this.params.as}.`;
    for (const [path, v] of probe.vectors) vectors.set(probePrefix + path, identity ? v : gather(v, probeIdx, n));
    let unmatched = false;
    for (let k = 0; k < n; k++) if (buildIdx[k] < 0) { unmatched = true; break; }
    const buildVectors = build ? build.vectors : new Map<string, Vector>();
    const probeKeys = build ? pathVector(probe, this.probePath) : null;
    for (const [path, v] of buildVectors) {
      if (v.kind === 'f64' && path === this.buildPath && probeKeys?.kind === 'f64') {
        // The build key of a matched row equals the probe key: read it sequentially from the
        // probe side instead of at random from the build side (only ±0 can differ: take those
        // from the build side).
        const values = new Float64Array(n);
        let absent: Uint8Array | null = null;
        const src = v.values, pk = probeKeys.values;
        for (let k = 0; k < n; k++) {
          const j = buildIdx[k];
          if (j < 0) { (absent ??= new Uint8Array(n))[k] = 1; continue; }
          const x = pk[probeIdx[k]];
          values[k] = x !== 0 ? x : src[j];
        }
        vectors.set(buildPrefix + path, { kind: 'f64', values, absent });
      } else if (v.kind === 'f64') {
        const values = new Float64Array(n);
        let absent: Uint8Array | null = null;
        const src = v.values, srcAbsent = v.absent;
        if (!unmatched && !srcAbsent) {
          for (let k = 0; k < n; k++) values[k] = src[buildIdx[k]];
        } else {
          for (let k = 0; k < n; k++) {
            const j = buildIdx[k];
            if (j < 0 || (srcAbsent && srcAbsent[j])) (absent ??= new Uint8Array(n))[k] = 1;
            else values[k] = src[j];
          }
        }
        vectors.set(buildPrefix + path, { kind: 'f64', values, absent });
      } else {
        const values = new Array(n);
        const encoded = table?.dicts.get(path);
        if (encoded) {
          // One random read (the code) a row; the value comes from the small dictionary, which
          // holds exactly the build values (encodeDict refuses -0, the one value SameValueZero
          // would merge with another).
          const codes = new Int32Array(n), srcCodes = encoded.codes, dict = encoded.dict, missing = dict.length - 1;
          for (let k = 0; k < n; k++) { const j = buildIdx[k]; const c = j < 0 ? missing : srcCodes[j]; codes[k] = c; values[k] = dict[c]; }
          const coded: DictVector = { kind: 'any', values, codes, dict };
          vectors.set(buildPrefix + path, coded);
        } else {
          const src = v.values;
          for (let k = 0; k < n; k++) { const j = buildIdx[k]; values[k] = j < 0 ? undefined : src[j]; }
          vectors.set(buildPrefix + path, { kind: 'any', values });
        }
      }
    }
    // Presence marker of the joined row: absent for a left join without a match.
    const marker = new Array(n);
    if (unmatched) for (let k = 0; k < n; k++) marker[k] = buildIdx[k] < 0 ? undefined : true;
    else marker.fill(true);
    vectors.set(this.params.as, { kind: 'any', values: marker });
    return { length: n, vectors };
  }
}

/** (probe row, build row) pairs of one probe batch, in reused growable typed arrays. */
class Pairs {
  probe = new Int32Array(1024);
  build = new Int32Array(1024);
  count = 0;

  /** Empties the pairs, with room for at least `n`. */
  reset(n: number): void {
    this.count = 0;
    if (this.probe.length < n) { this.probe = new Int32Array(n); this.build = new Int32Array(n); }
  }

  push(i: number, j: number): void {
    if (this.count === this.probe.length) {
      const p = new Int32Array(this.count * 2), b = new Int32Array(this.count * 2);
      p.set(this.probe); b.set(this.build);
      this.probe = p; this.build = b;
    }
    this.probe[this.count] = i;
    this.build[this.count++] = j;
  }
}

/**
 * The build side: its rows in one batch, and the rows of each distinct key chained in input
 * order (first[id] → row, next[row] → next row with that key, -1 at the end). Numeric keys
 * (a f64 key vector) go through an F64HashTable, anything else through a Map of joinKey().
 */
export class BuildTable {
  numeric: F64HashTable | null = null;
  private map: Map<unknown, number> | null = null;
  first: Int32Array;
  readonly next: Int32Array;

  /** Dictionary codes of the build side's low-cardinality 'any' columns (see dict-vector.ts). */
  readonly dicts = new Map<string, { codes: Int32Array; dict: unknown[] }>();

  constructor(readonly batch: Batch, path: string) {
    const n = batch.length;
    for (const [p, v] of batch.vectors) {
      if (v.kind !== 'any' || n < 64) continue;
      const encoded = encodeDict(v.values, Math.min(DICT_MAX, n >> 3));
      if (encoded) this.dicts.set(p, encoded);
    }
    this.next = new Int32Array(n).fill(-1);
    this.first = new Int32Array(16);
    let last = new Int32Array(16);
    const keys = n ? pathVector(batch, path) : null;
    let ids = 0;
    const link = (id: number, i: number) => {
      if (id === ids) {
        ids++;
        if (id >= this.first.length) {
          const f = new Int32Array(this.first.length * 2), l = new Int32Array(this.first.length * 2);
          f.set(this.first); l.set(last);
          this.first = f; last = l;
        }
        this.first[id] = i;
      } else this.next[last[id]] = i;
      last[id] = i;
    };
    if (keys && keys.kind === 'f64') {
      const table = (this.numeric = new F64HashTable(Math.min(n, 1 << 20)));
      const values = keys.values, absent = keys.absent;
      let linked = 0;
      for (let i = 0; i < n; i++) {
        const k = values[i];
        if ((absent && absent[i]) || k !== k) continue;
        link(table.add(k), i);
        linked++;
      }
      this.unique = linked === table.size;
      this.makeDirect(table);
      return;
    }
    const map = (this.map = new Map());
    for (let i = 0; i < n; i++) {
      const k = joinKey(valueAt(keys!, i));
      if (k === undefined) continue;
      let id = map.get(k);
      if (id === undefined) map.set(k, (id = map.size));
      link(id, i);
    }
  }

  /**
   * Integer keys over a dense range (ids, mostly): direct[k - directMin] is the first build row
   * of key k, or -1. One array read a probe row instead of a hash probe (on this machine each
   * random read of a cold line is the cost that matters).
   */
  direct: Int32Array | null = null;
  directMin = 0;
  /** Every build key occurs once: no chains to follow. */
  unique = false;

  private makeDirect(table: F64HashTable): void {
    if (table.size === 0) return;
    let min = Infinity, max = -Infinity;
    for (let id = 0; id < table.size; id++) {
      const k = table.keys[id];
      if (!Number.isSafeInteger(k)) return;
      if (k < min) min = k;
      if (k > max) max = k;
    }
    const range = max - min + 1;
    if (range > 2 * table.size + 1024 || range > 1 << 26) return;
    const direct = new Int32Array(range).fill(-1);
    for (let id = 0; id < table.size; id++) direct[table.keys[id] - min] = this.first[id];
    this.direct = direct;
    this.directMin = min;
  }

  /** Bytes of the key structures (next, first, hash table, direct array). */
  get byteLength(): number {
    return this.next.byteLength + this.first.byteLength + (this.numeric?.byteLength ?? 0) + (this.direct?.byteLength ?? 0);
  }

  /** The key id of a join key (joinKey() form), or -1. */
  idOf(k: unknown): number {
    if (k === undefined) return -1;
    if (this.numeric) return typeof k === 'number' ? this.numeric.get(k) : -1;
    return this.map!.get(k) ?? -1;
  }
}

async function* batchesOf(runIn: SpillRun): AsyncGenerator<Batch> {
  for await (const record of runIn.records()) yield decodeBatch(record);
}

/**
 * Splits a stream of batches into `plan.partitions` spill runs by hash of `path`, the writers'
 * buffers reserved in `io` (kept when done); `held` is what the operator holds meanwhile (for the stats).
 */
async function partition(ctx: ExecContext, plan: PartitionPlan, io: Reservation, held: Reservation, source: Source, path: string, seed: number, label: string,
  stats?: OperatorStats): Promise<SpillRun[]> {
  const P = plan.partitions;
  const ioPages = reservePartitionIo(ctx, io, plan);
  if (stats) stats.peakReservedBytes = Math.max(stats.peakReservedBytes, held.size + io.size);
  const writers = Array.from({ length: P }, (_, p) => ctx.spill.createRun(`${label}/S${seed}P${p}`, ioPages));
  const maxRecordBytes = Math.max(4096, ctx.memory.limitBytes / 16);
  try {
    for await (const b of source()) {
      throwIfAborted(ctx.signal);
      const keys = pathVector(b, path);
      const buckets: number[][] = Array.from({ length: P }, () => []);
      for (let i = 0; i < b.length; i++) {
        const k = joinKey(valueAt(keys, i));
        buckets[k === undefined ? 0 : hashValue(k, seed * 0x9e3779b9) % P].push(i);
      }
      for (let p = 0; p < P; p++) {
        if (buckets[p].length === 0) continue;
        const rows = gatherBatch(b, buckets[p]);
        // Records small against the budget: a skewed partition is read back a record at a time
        // (blockJoin), and each record must fit beside what the rest of the query holds.
        const step = Math.max(1, Math.floor(maxRecordBytes / Math.max(1, batchBytes(rows) / rows.length)));
        for (let from = 0; from < rows.length; from += step) {
          const bytes = encodeBatch(step >= rows.length ? rows : sliceBatch(rows, from, from + step));
          await writers[p].append(bytes);
          if (stats) stats.spilledBytes += bytes.byteLength;
        }
      }
    }
    const runs: SpillRun[] = [];
    for (const w of writers) runs.push(await w.finish());
    if (stats) { stats.spillRuns += P; stats.partitions += P; }
    return runs;
  } catch (err) {
    for (const w of writers) w.abort();
    throw err;
  }
  // `io` stays reserved: a partition too large for memory is partitioned again.
}
