// The operator contract: an immutable node whose `execute` is a lazy async generator of
// batches. Closing the generator (break, limit, error, abort) closes its inputs in turn,
// which unpins pages and drops spill runs through their `finally` blocks.
import type { TreeReader } from '../storage/engine.js';
import { ModelVaultError } from '../storage/errors.js';
import type { MemoryPool, Reservation } from '../storage/memory-pool.js';
import { spillIoPages, type SpillRuns } from '../storage/spill-space.js';
import type { Batch, Vector } from './batch.js';

export interface OperatorStats {
  rowsOut: number;
  batchesOut: number;
  timeMs: number;
  peakReservedBytes: number;
  spilledBytes: number;
  spillRuns: number;
  partitions: number;
}

export interface ExecContext {
  readonly signal?: AbortSignal;
  readonly memory: MemoryPool;
  readonly spill: SpillRuns;
  /** The committed snapshot (or write transaction) the query reads. */
  readonly reader: TreeReader;
  readonly batchSize: number;
  /** Filled when the query runs under explain({ analyze: true }). */
  readonly stats?: Map<Operator, OperatorStats>;
  /**
   * Filters one operator publishes while it runs for another below it to apply, keyed by a token
   * both hold from the plan (a top-k's cutoff, applied by its scan before it decodes a row).
   */
  readonly dynamicFilters?: Map<object, RowFilter>;
}

/** A filter on rows that an operator updates as it runs (DynamicFilters). */
export interface RowFilter {
  /** The columns it reads. */
  readonly paths: readonly string[];
  /** Whether it drops anything yet. */
  active(): boolean;
  /**
   * Keeps in `sel[0, count)` (indices into the vectors, in order) the rows that may still be
   * wanted, and returns how many; `vectors` holds at least `paths`.
   */
  select(vectors: ReadonlyMap<string, Vector>, sel: Uint32Array, count: number): number;
}

export interface Operator {
  readonly name: string;
  children(): readonly Operator[];
  /** One line for explain(): what this operator does with which parameters. */
  describe(): string;
  execute(ctx: ExecContext): AsyncGenerator<Batch>;
}

/** How grace partitioning (join, aggregate) writes: `partitions` runs at once, `ioPages` pages buffered each. */
export interface PartitionPlan {
  readonly partitions: number;
  readonly ioPages: number;
  /** All the writers' buffers together. */
  readonly ioBytes: number;
}

const MAX_PARTITIONS = 16;
/** Writers' buffers past this gain little: 256 KiB writes already run near disk speed. */
const MAX_PARTITION_IO_BYTES = 4 * 2 ** 20;

/**
 * The fan-out and extent size of grace partitioning. All writers' buffers fit a quarter of
 * memoryLimit (and 4 MiB): 16 partitions when that leaves a page each, fewer under small
 * budgets (4 under 1 MiB with 64 KiB pages), never fewer than 2. An operator keeps `ioBytes`
 * free while it buffers and reserves it when it partitions (reservePartitionIo).
 */
export function partitionPlan(ctx: ExecContext): PartitionPlan {
  const page = ctx.spill.pageSize;
  const share = Math.min(ctx.memory.limitBytes / 4, MAX_PARTITION_IO_BYTES);
  const partitions = Math.max(2, Math.min(MAX_PARTITIONS, Math.floor(share / page)));
  const ioPages = spillIoPages(share / partitions, page);
  return { partitions, ioPages, ioBytes: partitions * ioPages * page };
}

/**
 * Reserves the plan's writers' buffers in `io` before the operator buffers anything: what a
 * build side or a hash table holds until it is partitioned is still held while it is written
 * out, and keeping that room merely free would let another operator of the query (a join below
 * an aggregate) take it. Only while the room is its planned quarter of the budget (not the
 * two-page minimum of a budget of a few pages) and at most half of what is left, so the
 * operator keeps as much to buffer with; otherwise `io` stays empty and growLeavingPartitionIo
 * keeps the room free instead, and the operators of a query may share it.
 */
export function holdPartitionIo(ctx: ExecContext, io: Reservation, plan: PartitionPlan): void {
  const left = ctx.memory.limitBytes - ctx.memory.reservedBytes;
  if (io.size === 0 && 4 * plan.ioBytes <= ctx.memory.limitBytes && 2 * plan.ioBytes <= left) io.tryGrow(plan.ioBytes);
}

/**
 * Grows `reservation` by `bytes` while the plan's partition writers' buffers stay available:
 * held in `io` (holdPartitionIo), or else free in the budget.
 */
export function growLeavingPartitionIo(ctx: ExecContext, plan: PartitionPlan, reservation: Reservation, bytes: number, io: Reservation): boolean {
  const keepFree = io.size >= plan.ioBytes ? 0 : plan.ioBytes;
  return ctx.memory.reservedBytes + bytes + keepFree <= ctx.memory.limitBytes && reservation.tryGrow(bytes);
}

/**
 * Reserves the writers' buffers of a partitioning step in `io` (done if holdPartitionIo held
 * them); returns the pages each writer may buffer. When the planned extents cannot be had
 * (another operator of the query holds the memory), one page each; when not even that, the
 * query fails with ABORTED rather than overrun.
 */
export function reservePartitionIo(ctx: ExecContext, io: Reservation, plan: PartitionPlan): number {
  if (io.size >= plan.ioBytes || io.tryGrow(plan.ioBytes - io.size)) return plan.ioPages;
  io.grow(Math.max(0, plan.partitions * ctx.spill.pageSize - io.size));
  return 1;
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new ModelVaultError('ABORTED', 'query aborted', {}, { cause: signal.reason });
}

export function statsOf(ctx: ExecContext, op: Operator): OperatorStats | undefined {
  if (!ctx.stats) return undefined;
  let s = ctx.stats.get(op);
  if (!s) ctx.stats.set(op, (s = { rowsOut: 0, batchesOut: 0, timeMs: 0, peakReservedBytes: 0, spilledBytes: 0, spillRuns: 0, partitions: 0 }));
  return s;
}

/** Runs an operator, counting rows and time when the context collects stats. */
export async function* run(op: Operator, ctx: ExecContext): AsyncGenerator<Batch> {
  const stats = statsOf(ctx, op);
  if (!stats) { yield* op.execute(ctx); return; }
  const it = op.execute(ctx);
  try {
    for (;;) {
      const t0 = performance.now();
      const next = await it.next();
      stats.timeMs += performance.now() - t0;
      if (next.done) return;
      stats.rowsOut += next.value.length;
      stats.batchesOut++;
      yield next.value;
    }
  } finally {
    await it.return(undefined);
  }
}

/** The plan as indented text, with figures when stats were collected. */
export function explainTree(root: Operator, stats?: Map<Operator, OperatorStats>): string {
  const lines: string[] = [];
  const walk = (op: Operator, depth: number) => {
    let line = `${'  '.repeat(depth)}${op.name}: ${op.describe()}`;
    const s = stats?.get(op);
    if (stats) {
      const parts = [`rows out ${s?.rowsOut ?? 0}`];
      const rowsIn = op.children().reduce((n, c) => n + (stats.get(c)?.rowsOut ?? 0), 0);
      if (op.children().length) parts.unshift(`rows in ${rowsIn}`);
      parts.push(`time ${(s?.timeMs ?? 0).toFixed(1)} ms`);
      if (s?.peakReservedBytes) parts.push(`peak memory ${formatBytes(s.peakReservedBytes)}`);
      if (s?.spilledBytes) parts.push(`spilled ${formatBytes(s.spilledBytes)} in ${s.spillRuns} runs${s.partitions ? `/${s.partitions} partitions` : ''}`);
      line += `  [${parts.join(', ')}]`;
    }
    lines.push(line);
    for (const c of op.children()) walk(c, depth + 1);
  };
  walk(root, 0);
  return lines.join('\n');
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 2 ** 20) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 2 ** 30) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${(n / 2 ** 30).toFixed(2)} GiB`;
}
