// Hash aggregate. Groups live in a hash table whose growth is reserved from the query's
// memory budget; when a reservation is refused, the table's partial states are written to
// spill partitions by hash of the group key and the table starts empty. At the end each
// partition is aggregated on its own, re-partitioned with a new hash seed when it is still
// too large. Partial states merge exactly, so results match an in-memory run.
import { Packr } from 'msgpackr/pack'; // under Node, msgpackr's JS build: its native string extractor is not loaded
import type { SpillRun, SpillRunWriter } from '../storage/spill-space.js';
import { valueAt, type Batch, type Vector } from './batch.js';
import { compareValues } from './expr.js';
import {
  growLeavingPartitionIo, holdPartitionIo, partitionPlan, reservePartitionIo, run, statsOf, throwIfAborted, type ExecContext, type Operator, type OperatorStats, type PartitionPlan,
} from './operator.js';
import { pathVector } from './paths.js';
import { hashValue } from './hash.js';
import { F64HashTable } from './hash-table.js';
import { dictOf } from './dict-vector.js';
import type { Reservation } from '../storage/memory-pool.js';
import { ModelVaultError } from '../storage/errors.js';

export type AggregateFn = 'count' | 'sum' | 'avg' | 'min' | 'max' | 'countDistinct';

export interface AggregateSpec {
  readonly fn: AggregateFn;
  readonly path?: string;
}

// copyBuffers: a spill record is a view of a buffer its run reuses (SpillRun.records), so binary
// values decoded from it must own their bytes.
const packr = new Packr({ useRecords: false, int64AsType: 'bigint', moreTypes: true, copyBuffers: true });
/**
 * Re-partitioning levels before a partition is given up as too large: enough to split the
 * groups 2^24 ways at the plan's fan-out (6 levels of 16, 24 of 2 under a budget of a few
 * pages). Every level separates distinct keys; a partition where not even one group fits
 * (a huge countDistinct, or a budget the rest of the query fills) fails at once instead.
 */
const maxLevels = (plan: PartitionPlan) => Math.max(6, Math.ceil(24 / Math.log2(plan.partitions)));
const GROUP_OVERHEAD_BYTES = 96;
let nextId = 1;
const STRING_CACHE_MASK = 1023;

/** Partial state of one aggregate in one group; merges exactly. */
interface AggState { n: number; sum: number | bigint; min: unknown; max: unknown; distinct: Set<unknown> | null }

/** A group in a spill record: its key values and partial states. */
interface Group { key: unknown[]; states: AggState[] }

function finalValue(spec: AggregateSpec, s: AggState): unknown {
  switch (spec.fn) {
    case 'count': return s.n;
    case 'sum': return s.sum;
    case 'avg': return s.n === 0 ? undefined : Number(s.sum) / s.n;
    case 'min': return s.min;
    case 'max': return s.max;
    case 'countDistinct': return s.distinct!.size;
  }
}

/** A key for the hash table: the value itself for one path, a tagged string for several. */
function groupKey(values: readonly unknown[]): unknown {
  if (values.length === 1) return singleKey(values[0]);
  return values.map((v) => `${typeof v}:${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`).join('\u0000');
}

function singleKey(v: unknown): unknown {
  return typeof v === 'object' && v !== null ? `o:${JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x))}` : v;
}

function estimateKey(values: readonly unknown[]): number {
  let n = 0;
  for (const v of values) n += typeof v === 'string' ? 40 + 2 * v.length : 16;
  return n;
}

const grow = (a: Float64Array, need: number): Float64Array => {
  if (need <= a.length) return a;
  const g = new Float64Array(Math.max(need, a.length * 2));
  g.set(a);
  return g;
};

/**
 * The hash table of one aggregation: group ids 0, 1, 2, ... in first-seen order, the key values
 * of each group, and the partial states column-wise (counts and sums in Float64Arrays indexed by
 * group id), so the per-row work of a batch is a key lookup plus typed-array updates. A numeric
 * single key goes through an F64HashTable, anything else through a Map of groupKey().
 */
export class GroupTable {
  size = 0;
  private readonly ids = new Map<unknown, number>();
  private numeric: F64HashTable | null = null;
  /** Group id of the absent key when the numeric table is in use (absent is not a double). */
  private absentId = -1;
  /** Key values of each group: keys[k][g]. */
  readonly keys: unknown[][];
  n: Float64Array[];
  sum: Float64Array[];
  /** Bigint part of a sum (bigint fields), per group; null until one appears. */
  readonly big: (bigint | undefined)[][];
  readonly min: unknown[][];
  readonly max: unknown[][];
  readonly distinct: Set<unknown>[][];
  private gids = new Int32Array(1024);
  private dictGids = new Int32Array(64);
  private readonly stringCache = new Int32Array(STRING_CACHE_MASK + 1).fill(-1);

  constructor(private readonly specs: readonly AggregateSpec[], private readonly width: number) {
    this.keys = Array.from({ length: width }, () => []);
    this.n = specs.map(() => new Float64Array(16));
    this.sum = specs.map(() => new Float64Array(16));
    this.big = specs.map(() => []);
    this.min = specs.map(() => []);
    this.max = specs.map(() => []);
    this.distinct = specs.map(() => []);
  }

  /** Bytes a new group costs, as the old row-object table estimated it. */
  private groupBytes(values: readonly unknown[]): number {
    return GROUP_OVERHEAD_BYTES + estimateKey(values) + this.specs.length * 48;
  }

  private newGroup(values: readonly unknown[]): number {
    const g = this.size++;
    for (let k = 0; k < this.width; k++) this.keys[k].push(values[k]);
    if (g >= this.n[0]?.length) {
      for (let a = 0; a < this.specs.length; a++) { this.n[a] = grow(this.n[a], g + 1); this.sum[a] = grow(this.sum[a], g + 1); }
    }
    for (let a = 0; a < this.specs.length; a++) if (this.specs[a].fn === 'countDistinct') this.distinct[a][g] = new Set();
    return g;
  }

  /** Group ids of the batch's rows (a reused buffer); `grown` gets the bytes of new groups. */
  private groupIds(keyVectors: readonly Vector[], length: number, acc: { grown: number }): Int32Array {
    if (this.gids.length < length) this.gids = new Int32Array(Math.max(length, this.gids.length * 2));
    const gids = this.gids;
    if (this.width === 0) {
      if (this.size === 0) { this.ids.set('', this.newGroup([])); acc.grown += this.groupBytes([]); }
      gids.fill(0, 0, length);
      return gids;
    }
    if (this.width === 1) {
      const v = keyVectors[0];
      if (v.kind === 'f64' && (this.numeric || this.ids.size === 0)) {
        const table = (this.numeric ??= new F64HashTable());
        const values = v.values, absent = v.absent;
        for (let i = 0; i < length; i++) {
          if (absent && absent[i]) {
            if (this.absentId < 0) { this.absentId = this.newGroup([undefined]); acc.grown += this.groupBytes([undefined]); }
            gids[i] = this.absentId;
            continue;
          }
          const before = table.size;
          const id = table.add(values[i]);
          if (table.size !== before) {
            // The numeric table hands out its own dense ids; they stay in step with group ids
            // because only this table creates groups while it is in use.
            const g = this.newGroup([values[i]]);
            acc.grown += this.groupBytes([values[i]]);
            gids[i] = g;
            this.numericIds.push(g);
          } else gids[i] = this.numericIds[id];
        }
        return gids;
      }
      if (this.numeric) this.toMap();
      const ids = this.ids;
      const one: unknown[] = [undefined];
      if (v.kind === 'f64') {
        for (let i = 0; i < length; i++) {
          const x = v.absent && v.absent[i] ? undefined : v.values[i];
          let g = ids.get(x);
          if (g === undefined) { one[0] = x; ids.set(x, (g = this.newGroup(one))); acc.grown += this.groupBytes(one); }
          gids[i] = g;
        }
        return gids;
      }
      const values = v.values;
      const d = dictOf(v);
      if (d !== null && d.dict.length <= length) {
        // Dictionary-coded (a joined low-cardinality column): one lookup per distinct value.
        if (this.dictGids.length < d.dict.length) this.dictGids = new Int32Array(d.dict.length * 2);
        const dictGids = this.dictGids.fill(-1, 0, d.dict.length), codes = d.codes;
        for (let i = 0; i < length; i++) {
          const c = codes[i];
          let g = dictGids[c];
          if (g < 0) {
            const x = d.dict[c];
            const key = typeof x === 'object' && x !== null ? singleKey(x) : x;
            let found = ids.get(key);
            if (found === undefined) { one[0] = x; ids.set(key, (found = this.newGroup(one))); acc.grown += this.groupBytes(one); }
            g = dictGids[c] = found;
          }
          gids[i] = g;
        }
        return gids;
      }
      // Strings freshly decoded by a scan are new objects every row, so a Map lookup hashes each
      // one. A small cache keyed by (length, first, middle and last char) finds the group of a
      // known string with one content comparison; the Map stays the authority.
      const cache = this.stringCache, keyCol = this.keys[0];
      for (let i = 0; i < length; i++) {
        const x = values[i];
        let slot = -1;
        if (typeof x === 'string') {
          const len = x.length;
          slot = len === 0 ? 0 : (Math.imul(len, 0x9e3779b1) ^ Math.imul(x.charCodeAt(0), 0x85ebca6b) ^ Math.imul(x.charCodeAt(len >> 1), 0xc2b2ae35) ^ x.charCodeAt(len - 1)) & STRING_CACHE_MASK;
          const cached = cache[slot];
          if (cached >= 0 && keyCol[cached] === x) { gids[i] = cached; continue; }
        }
        const key = typeof x === 'object' && x !== null ? singleKey(x) : x;
        let g = ids.get(key);
        if (g === undefined) { one[0] = x; ids.set(key, (g = this.newGroup(one))); acc.grown += this.groupBytes(one); }
        if (slot >= 0) cache[slot] = g;
        gids[i] = g;
      }
      return gids;
    }
    const values: unknown[] = new Array(this.width);
    for (let i = 0; i < length; i++) {
      for (let k = 0; k < this.width; k++) values[k] = valueAt(keyVectors[k], i);
      const key = groupKey(values);
      let g = this.ids.get(key);
      if (g === undefined) { this.ids.set(key, (g = this.newGroup(values))); acc.grown += this.groupBytes(values); }
      gids[i] = g;
    }
    return gids;
  }

  private readonly numericIds: number[] = [];

  /** Moves the numeric table's groups into the Map (a batch of the key path was not numeric). */
  private toMap(): void {
    for (let id = 0; id < this.numericIds.length; id++) this.ids.set(this.numeric!.keys[id], this.numericIds[id]);
    if (this.absentId >= 0) this.ids.set(undefined, this.absentId);
    this.numeric = null;
    this.numericIds.length = 0;
    this.absentId = -1;
  }

  /** Adds a batch; returns the bytes by which the table grew. */
  addBatch(keyVectors: readonly Vector[], aggVectors: readonly (Vector | null)[], length: number): number {
    const acc = { grown: 0 };
    const gids = this.groupIds(keyVectors, length, acc);
    for (let a = 0; a < this.specs.length; a++) {
      const spec = this.specs[a];
      const n = this.n[a], vec = aggVectors[a];
      if (spec.fn === 'count') {
        for (let i = 0; i < length; i++) n[gids[i]]++;
        continue;
      }
      if (!vec) continue;
      if ((spec.fn === 'sum' || spec.fn === 'avg') && vec.kind === 'f64') {
        const sum = this.sum[a], values = vec.values, absent = vec.absent;
        if (absent) {
          for (let i = 0; i < length; i++) if (!absent[i]) { const g = gids[i]; n[g]++; sum[g] += values[i]; }
        } else {
          for (let i = 0; i < length; i++) { const g = gids[i]; n[g]++; sum[g] += values[i]; }
        }
        continue;
      }
      for (let i = 0; i < length; i++) acc.grown += this.accumulate(a, gids[i], valueAt(vec, i));
    }
    return acc.grown;
  }

  /** One value into one group's state (the general path: bigints, min/max, distinct). */
  private accumulate(a: number, g: number, v: unknown): number {
    if (v === undefined || v === null) return 0;
    this.n[a][g]++;
    switch (this.specs[a].fn) {
      case 'sum':
      case 'avg':
        if (typeof v === 'bigint') this.big[a][g] = (this.big[a][g] ?? 0n) + v;
        else this.sum[a][g] += v as number;
        return 0;
      case 'min': {
        const cur = this.min[a][g];
        if (cur === undefined || compareValues(v, cur) < 0) this.min[a][g] = v;
        return 0;
      }
      case 'max': {
        const cur = this.max[a][g];
        if (cur === undefined || compareValues(v, cur) > 0) this.max[a][g] = v;
        return 0;
      }
      case 'countDistinct': {
        const set = this.distinct[a][g];
        const before = set.size;
        set.add(v);
        return set.size > before ? 24 + (typeof v === 'string' ? 2 * v.length : 8) : 0;
      }
    }
    return 0;
  }

  /** The group with this key (for merging spilled groups), created when new. */
  private groupOf(key: readonly unknown[], acc: { grown: number }): number {
    const mapKey = groupKey(key);
    if (this.numeric) this.toMap();
    let g = this.ids.get(mapKey);
    if (g === undefined) { this.ids.set(mapKey, (g = this.newGroup(key))); acc.grown += this.groupBytes(key); }
    return g;
  }

  /** Merges a spilled partial group; returns the bytes by which the table grew. */
  merge(group: Group): number {
    const acc = { grown: 0 };
    const g = this.groupOf(group.key, acc);
    for (let a = 0; a < this.specs.length; a++) {
      const s = group.states[a];
      this.n[a][g] += s.n;
      if (typeof s.sum === 'bigint') this.big[a][g] = (this.big[a][g] ?? 0n) + s.sum;
      else this.sum[a][g] += s.sum;
      if (s.min !== undefined && (this.min[a][g] === undefined || compareValues(s.min, this.min[a][g]) < 0)) this.min[a][g] = s.min;
      if (s.max !== undefined && (this.max[a][g] === undefined || compareValues(s.max, this.max[a][g]) > 0)) this.max[a][g] = s.max;
      if (s.distinct) {
        const set = this.distinct[a][g];
        for (const v of s.distinct) {
          const before = set.size;
          set.add(v);
          if (set.size > before) acc.grown += 24 + (typeof v === 'string' ? 2 * v.length : 8);
        }
      }
    }
    return acc.grown;
  }

  /** Group g's partial states in the spill format. */
  state(a: number, g: number): AggState {
    const big = this.big[a][g];
    return {
      n: this.n[a][g],
      sum: big === undefined ? this.sum[a][g] : big + BigInt(this.sum[a][g]),
      min: this.min[a][g],
      max: this.max[a][g],
      distinct: this.specs[a].fn === 'countDistinct' ? this.distinct[a][g] : null,
    };
  }

  keyOf(g: number): unknown[] {
    return this.keys.map((col) => col[g]);
  }

  /** The hash-table key of group g (what partitions hash). */
  mapKey(g: number): unknown {
    return groupKey(this.keyOf(g));
  }
}

export class AggregateOp implements Operator {
  readonly name = 'HashAggregate';
  private readonly id = nextId++;

  constructor(
    readonly input: Operator,
    readonly groupPaths: readonly string[],
    readonly aggregates: readonly (readonly [string, AggregateSpec])[],
  ) {}

  children(): readonly Operator[] { return [this.input]; }

  describe(): string {
    const aggs = this.aggregates.map(([n, s]) => `${n} = ${s.fn}(${s.path ?? '*'})`).join(', ');
    return `${this.groupPaths.length ? `group by ${this.groupPaths.join(', ')}` : 'no grouping'}; ${aggs}; spills partitions when over budget`;
  }

  async *execute(ctx: ExecContext): AsyncGenerator<Batch> {
    const stats = statsOf(ctx, this);
    using reservation = ctx.memory.reserve(`HashAggregate#${this.id}`);
    // The partition writers' buffers, at every level (one level writes at a time).
    using io = ctx.memory.reserve(`HashAggregate#${this.id} spill I/O`);
    const plan = partitionPlan(ctx);
    holdPartitionIo(ctx, io, plan);
    const specs = this.aggregates.map(([, s]) => s);
    const newTable = () => new GroupTable(specs, this.groupPaths.length);
    let table = newTable();
    const kinds = new Map<string, 'f64' | 'any'>();
    let partitions: SpillPartitions | null = null;
    try {
      for await (const batch of run(this.input, ctx)) {
        throwIfAborted(ctx.signal);
        const keyVectors = this.groupPaths.map((p) => pathVector(batch, p));
        const aggVectors = specs.map((s) => (s.path ? pathVector(batch, s.path) : null));
        this.groupPaths.forEach((p, i) => kinds.set(p, keyVectors[i].kind));
        specs.forEach((s, i) => { if (s.path && (s.fn === 'min' || s.fn === 'max')) kinds.set(`agg:${i}`, aggVectors[i]!.kind); });
        const grown = table.addBatch(keyVectors, aggVectors, batch.length);
        if (!growTable(ctx, plan, reservation, io, partitions, grown)) {
          partitions ??= new SpillPartitions(ctx, plan, io, `HashAggregate#${this.id}`, 0, stats);
          await partitions.write(table);
          table = newTable();
          reservation.free();
        }
        if (stats) stats.peakReservedBytes = Math.max(stats.peakReservedBytes, reservation.size + io.size);
      }
      if (!partitions) {
        io.free(); // everything fitted: the room goes to the operators above while the groups go out
        if (table.size === 0 && this.groupPaths.length === 0) table.addBatch([], specs.map(() => null), 0);
        yield* this.emit(table, specs, kinds, ctx.batchSize);
        return;
      }
      await partitions.write(table);
      table = newTable();
      reservation.free();
      yield* this.drain(ctx, plan, io, partitions, specs, kinds, reservation, stats, 1);
    } finally {
      partitions?.drop();
    }
  }

  /** Aggregates each spilled partition; one still too large is split again with a new seed. */
  private async *drain(ctx: ExecContext, plan: PartitionPlan, io: Reservation, parts: SpillPartitions, specs: readonly AggregateSpec[], kinds: Map<string, 'f64' | 'any'>, reservation: Reservation, stats: OperatorStats | undefined, level: number): AsyncGenerator<Batch> {
    const newTable = () => new GroupTable(specs, this.groupPaths.length);
    for (const runs of await parts.finish()) {
      let table = newTable();
      let sub: SpillPartitions | null = null;
      try {
        for (const r of runs) {
          for await (const record of r.records()) {
            throwIfAborted(ctx.signal);
            let grown = 0;
            for (const g of packr.unpack(record) as Group[]) {
              for (const s of g.states) if (s.distinct) s.distinct = new Set(s.distinct as unknown as unknown[]);
              grown += table.merge(g);
            }
            if (!growTable(ctx, plan, reservation, io, sub, grown)) {
              // Splitting again cannot help when not even one group fits beside the rest of the query.
              if (level >= maxLevels(plan) || table.size <= 1) {
                throw new ModelVaultError('ABORTED', `HashAggregate: a partition still exceeds memoryLimit ${ctx.memory.limitBytes} after ${level} re-partitionings${table.size <= 1 ? ' (one group does not fit)' : ''}; raise memoryLimit`, {});
              }
              sub ??= new SpillPartitions(ctx, plan, io, `HashAggregate#${this.id}`, level, stats);
              await sub.write(table);
              table = newTable();
              reservation.free();
            }
          }
          r.drop();
        }
        if (sub) {
          await sub.write(table);
          table = newTable();
          reservation.free();
          yield* this.drain(ctx, plan, io, sub, specs, kinds, reservation, stats, level + 1);
        } else {
          yield* this.emit(table, specs, kinds, ctx.batchSize);
          table = newTable();
          reservation.free();
        }
      } finally {
        for (const r of runs) r.drop();
        sub?.drop();
      }
    }
  }

  private *emit(table: GroupTable, specs: readonly AggregateSpec[], kinds: Map<string, 'f64' | 'any'>, batchSize: number): Generator<Batch> {
    for (let from = 0; from < table.size; from += batchSize) {
      const to = Math.min(table.size, from + batchSize);
      const vectors = new Map<string, Vector>();
      this.groupPaths.forEach((p, k) => vectors.set(p, toVector(table.keys[k].slice(from, to), kinds.get(p) ?? 'any')));
      this.aggregates.forEach(([name, spec], a) => {
        const values: unknown[] = [];
        for (let g = from; g < to; g++) values.push(finalValue(spec, table.state(a, g)));
        const kind = spec.fn === 'min' || spec.fn === 'max' ? kinds.get(`agg:${a}`) ?? 'any' : values.some((v) => typeof v === 'bigint') ? 'any' : 'f64';
        vectors.set(name, toVector(values, kind));
      });
      yield { length: to - from, vectors };
    }
  }
}

function toVector(values: unknown[], kind: 'f64' | 'any'): Vector {
  if (kind === 'any') return { kind: 'any', values };
  const out = new Float64Array(values.length);
  let absent: Uint8Array | null = null;
  values.forEach((v, i) => {
    if (v === undefined || v === null) (absent ??= new Uint8Array(values.length))[i] = 1;
    else out[i] = Number(v);
  });
  return { kind: 'f64', values: out, absent };
}

/** Grows the table's reservation; until the level has partitions, their writers' buffers stay available. */
function growTable(ctx: ExecContext, plan: PartitionPlan, reservation: Reservation, io: Reservation, partitions: SpillPartitions | null, bytes: number): boolean {
  return partitions === null ? growLeavingPartitionIo(ctx, plan, reservation, bytes, io) : reservation.tryGrow(bytes);
}

/**
 * `plan.partitions` spill runs; groups go to a partition by hash of their key with a per-level
 * seed. The writers' buffers are reserved in `io`, which the aggregate holds for its whole life.
 */
class SpillPartitions {
  private readonly writers: SpillRunWriter[] = [];
  private readonly done: SpillRun[][] = [];
  /** Writers finished so far: drop() aborts the others, also after a failed finish(). */
  private finishedWriters = 0;
  private finishing: Promise<SpillRun[][]> | null = null;

  constructor(ctx: ExecContext, private readonly plan: PartitionPlan, io: Reservation, label: string, private readonly level: number,
    private readonly stats?: OperatorStats) {
    const ioPages = reservePartitionIo(ctx, io, plan);
    for (let p = 0; p < plan.partitions; p++) {
      this.writers.push(ctx.spill.createRun(`${label}/L${level}P${p}`, ioPages));
      this.done.push([]);
    }
    if (stats) stats.partitions += plan.partitions;
  }

  async write(table: GroupTable): Promise<void> {
    const P = this.plan.partitions;
    const buckets: number[][] = Array.from({ length: P }, () => []);
    for (let g = 0; g < table.size; g++) buckets[hashValue(table.mapKey(g), this.level * 0x9e3779b9) % P].push(g);
    for (let p = 0; p < P; p++) {
      // Chunks of groups keep each record small, so reading back needs little memory.
      for (let from = 0; from < buckets[p].length; from += 512) {
        const chunk = buckets[p].slice(from, from + 512).map((g) => ({
          key: table.keyOf(g),
          states: table.n.map((_, a) => { const s = table.state(a, g); return { ...s, distinct: s.distinct ? [...s.distinct] : null }; }),
        }));
        const bytes = packr.pack(chunk);
        await this.writers[p].append(bytes);
        if (this.stats) this.stats.spilledBytes += bytes.byteLength;
      }
    }
  }

  /** Closes the writers; each partition's runs, in order. */
  finish(): Promise<SpillRun[][]> {
    return (this.finishing ??= this.finishWriters());
  }

  private async finishWriters(): Promise<SpillRun[][]> {
    for (let p = 0; p < this.plan.partitions; p++) {
      this.done[p].push(await this.writers[p].finish());
      this.finishedWriters = p + 1;
      if (this.stats) this.stats.spillRuns++;
    }
    return this.done;
  }

  drop(): void {
    for (let p = this.finishedWriters; p < this.writers.length; p++) this.writers[p].abort();
    for (const runs of this.done) for (const r of runs) r.drop();
  }
}
