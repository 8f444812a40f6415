// Hash aggregate. Groups live in a hash table whose growth is reserved from the query's
// memory budget; when a reservation is refused, the table's partial states are written to
// spill partitions by hash of the group key and the table starts empty. At the end each
// partition is aggregated on its own, re-partitioned with a new hash seed when it is still
// too large. Partial states merge exactly, so results match an in-memory run.
import { Packr } from 'msgpackr';
import type { SpillRun, SpillRunWriter } from '../storage/spill-space.js';
import { valueAt, type Batch, type Vector } from './batch.js';
import { compareValues } from './expr.js';
import { run, statsOf, throwIfAborted, type ExecContext, type Operator, type OperatorStats } from './operator.js';
import { pathVector } from './paths.js';
import { hashValue } from './hash.js';
import type { Reservation } from '../storage/memory-pool.js';
import { ModelVaultError } from '../storage/errors.js';

export type AggregateFn = 'count' | 'sum' | 'avg' | 'min' | 'max' | 'countDistinct';

export interface AggregateSpec {
  readonly fn: AggregateFn;
  readonly path?: string;
}

const packr = new Packr({ useRecords: false, int64AsType: 'bigint', moreTypes: true });
const PARTITIONS = 16;
const MAX_LEVEL = 6;
const GROUP_OVERHEAD_BYTES = 96;
let nextId = 1;

/** Partial state of one aggregate in one group; merges exactly. */
interface AggState { n: number; sum: number | bigint; min: unknown; max: unknown; distinct: Set<unknown> | null }

interface Group { key: unknown[]; states: AggState[] }

function newState(spec: AggregateSpec): AggState {
  return { n: 0, sum: 0, min: undefined, max: undefined, distinct: spec.fn === 'countDistinct' ? new Set() : null };
}

function accumulate(spec: AggregateSpec, s: AggState, v: unknown): number {
  if (spec.fn === 'count') { s.n++; return 0; }
  if (v === undefined || v === null) return 0;
  s.n++;
  switch (spec.fn) {
    case 'sum':
    case 'avg':
      if (typeof v === 'bigint') s.sum = (typeof s.sum === 'bigint' ? s.sum : BigInt(s.sum)) + v;
      else s.sum = (s.sum as number) + (v as number);
      return 0;
    case 'min':
      if (s.min === undefined || compareValues(v, s.min) < 0) s.min = v;
      return 0;
    case 'max':
      if (s.max === undefined || compareValues(v, s.max) > 0) s.max = v;
      return 0;
    case 'countDistinct': {
      const before = s.distinct!.size;
      s.distinct!.add(v);
      return s.distinct!.size > before ? 24 + (typeof v === 'string' ? 2 * v.length : 8) : 0;
    }
  }
  return 0;
}

function merge(spec: AggregateSpec, into: AggState, from: AggState): number {
  into.n += from.n;
  if (typeof from.sum === 'bigint' || typeof into.sum === 'bigint') into.sum = BigInt(into.sum) + BigInt(from.sum);
  else into.sum += from.sum;
  if (from.min !== undefined && (into.min === undefined || compareValues(from.min, into.min) < 0)) into.min = from.min;
  if (from.max !== undefined && (into.max === undefined || compareValues(from.max, into.max) > 0)) into.max = from.max;
  let grown = 0;
  if (into.distinct && from.distinct) {
    for (const v of from.distinct) {
      const before = into.distinct.size;
      into.distinct.add(v);
      if (into.distinct.size > before) grown += 24 + (typeof v === 'string' ? 2 * v.length : 8);
    }
  }
  return grown;
}

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
  if (values.length === 1) {
    const v = values[0];
    return typeof v === 'object' && v !== null ? `o:${JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x))}` : v;
  }
  return values.map((v) => `${typeof v}:${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`).join('\u0000');
}


function estimateKey(values: readonly unknown[]): number {
  let n = 0;
  for (const v of values) n += typeof v === 'string' ? 40 + 2 * v.length : 16;
  return n;
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
    const specs = this.aggregates.map(([, s]) => s);
    let table = new Map<unknown, Group>();
    const kinds = new Map<string, 'f64' | 'any'>();
    let partitions: SpillPartitions | null = null;
    try {
      for await (const batch of run(this.input, ctx)) {
        throwIfAborted(ctx.signal);
        const keyVectors = this.groupPaths.map((p) => pathVector(batch, p));
        const aggVectors = specs.map((s) => (s.path ? pathVector(batch, s.path) : null));
        this.groupPaths.forEach((p, i) => kinds.set(p, keyVectors[i].kind));
        specs.forEach((s, i) => { if (s.path && (s.fn === 'min' || s.fn === 'max')) kinds.set(`agg:${i}`, aggVectors[i]!.kind); });
        let grown = 0;
        const values: unknown[] = new Array(keyVectors.length);
        for (let i = 0; i < batch.length; i++) {
          for (let k = 0; k < keyVectors.length; k++) values[k] = valueAt(keyVectors[k], i);
          const key = groupKey(values);
          let g = table.get(key);
          if (!g) {
            g = { key: values.slice(), states: specs.map(newState) };
            table.set(key, g);
            grown += GROUP_OVERHEAD_BYTES + estimateKey(values) + specs.length * 48;
          }
          for (let a = 0; a < specs.length; a++) grown += accumulate(specs[a], g.states[a], aggVectors[a] ? valueAt(aggVectors[a]!, i) : undefined);
        }
        if (!reservation.tryGrow(grown)) {
          partitions ??= new SpillPartitions(ctx, `HashAggregate#${this.id}`, 0, stats);
          await partitions.write(table);
          table = new Map();
          reservation.free();
        }
        if (stats) stats.peakReservedBytes = Math.max(stats.peakReservedBytes, reservation.peakBytes);
      }
      if (!partitions) {
        if (table.size === 0 && this.groupPaths.length === 0) table.set(null, { key: [], states: specs.map(newState) });
        yield* this.emit(table, specs, kinds, ctx.batchSize);
        return;
      }
      await partitions.write(table);
      table = new Map();
      reservation.free();
      yield* this.drain(ctx, partitions, specs, kinds, reservation, stats, 1);
    } finally {
      partitions?.drop();
    }
  }

  /** Aggregates each spilled partition; one still too large is split again with a new seed. */
  private async *drain(ctx: ExecContext, parts: SpillPartitions, specs: readonly AggregateSpec[], kinds: Map<string, 'f64' | 'any'>, reservation: Reservation, stats: OperatorStats | undefined, level: number): AsyncGenerator<Batch> {
    for (const runs of await parts.finish()) {
      let table = new Map<unknown, Group>();
      let sub: SpillPartitions | null = null;
      try {
        for (const r of runs) {
          for await (const record of r.records()) {
            throwIfAborted(ctx.signal);
            let grown = 0;
            for (const g of packr.unpack(record) as Group[]) {
              for (const s of g.states) if (s.distinct) s.distinct = new Set(s.distinct as unknown as unknown[]);
              const key = groupKey(g.key);
              const have = table.get(key);
              if (!have) {
                table.set(key, g);
                grown += GROUP_OVERHEAD_BYTES + estimateKey(g.key) + specs.length * 48 + g.states.reduce((n, s) => n + (s.distinct ? s.distinct.size * 32 : 0), 0);
              } else {
                for (let a = 0; a < specs.length; a++) grown += merge(specs[a], have.states[a], g.states[a]);
              }
            }
            if (!reservation.tryGrow(grown)) {
              if (level >= MAX_LEVEL) {
                throw new ModelVaultError('ABORTED', `HashAggregate: a partition still exceeds memoryLimit ${ctx.memory.limitBytes} after ${level} re-partitionings; raise memoryLimit`, {});
              }
              sub ??= new SpillPartitions(ctx, `HashAggregate#${this.id}`, level, stats);
              await sub.write(table);
              table = new Map();
              reservation.free();
            }
          }
          r.drop();
        }
        if (sub) {
          await sub.write(table);
          table = new Map();
          reservation.free();
          yield* this.drain(ctx, sub, specs, kinds, reservation, stats, level + 1);
        } else {
          yield* this.emit(table, specs, kinds, ctx.batchSize);
          table = new Map();
          reservation.free();
        }
      } finally {
        for (const r of runs) r.drop();
        sub?.drop();
      }
    }
  }

  private *emit(table: Map<unknown, Group>, specs: readonly AggregateSpec[], kinds: Map<string, 'f64' | 'any'>, batchSize: number): Generator<Batch> {
    const groups = [...table.values()];
    for (let from = 0; from < groups.length; from += batchSize) {
      const chunk = groups.slice(from, from + batchSize);
      const vectors = new Map<string, Vector>();
      this.groupPaths.forEach((p, k) => vectors.set(p, toVector(chunk.map((g) => g.key[k]), kinds.get(p) ?? 'any')));
      this.aggregates.forEach(([name, spec], a) => {
        const kind = spec.fn === 'min' || spec.fn === 'max' ? kinds.get(`agg:${a}`) ?? 'any' : chunk.some((g) => typeof g.states[a].sum === 'bigint') ? 'any' : 'f64';
        vectors.set(name, toVector(chunk.map((g) => finalValue(spec, g.states[a])), kind));
      });
      yield { length: chunk.length, vectors };
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

/** PARTITIONS spill runs; groups go to a partition by hash of their key with a per-level seed. */
class SpillPartitions {
  private readonly writers: SpillRunWriter[] = [];
  private readonly done: SpillRun[][] = [];
  private finished = false;

  constructor(private readonly ctx: ExecContext, label: string, private readonly level: number, private readonly stats?: OperatorStats) {
    for (let p = 0; p < PARTITIONS; p++) {
      this.writers.push(ctx.spill.createRun(`${label}/L${level}P${p}`));
      this.done.push([]);
    }
    if (stats) stats.partitions += PARTITIONS;
  }

  async write(table: Map<unknown, Group>): Promise<void> {
    const buckets: Group[][] = Array.from({ length: PARTITIONS }, () => []);
    for (const [key, g] of table) buckets[hashValue(key, this.level * 0x9e3779b9) % PARTITIONS].push(g);
    for (let p = 0; p < PARTITIONS; p++) {
      // Chunks of groups keep each record small, so reading back needs little memory.
      for (let from = 0; from < buckets[p].length; from += 512) {
        const chunk = buckets[p].slice(from, from + 512).map((g) => ({ key: g.key, states: g.states.map((s) => ({ ...s, distinct: s.distinct ? [...s.distinct] : null })) }));
        const bytes = packr.pack(chunk);
        await this.writers[p].append(bytes);
        if (this.stats) this.stats.spilledBytes += bytes.byteLength;
      }
    }
  }

  /** Closes the writers; each partition's runs, in order. */
  async finish(): Promise<SpillRun[][]> {
    if (!this.finished) {
      this.finished = true;
      for (let p = 0; p < PARTITIONS; p++) {
        this.done[p].push(await this.writers[p].finish());
        if (this.stats) this.stats.spillRuns++;
      }
    }
    return this.done;
  }

  drop(): void {
    if (!this.finished) for (const w of this.writers) w.abort();
    for (const runs of this.done) for (const r of runs) r.drop();
  }
}
