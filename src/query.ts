// The query builder: immutable, every call returns a new query, nothing runs until the
// query is iterated. Iteration compiles the query (planner.ts) into a pipeline of batch
// operators and turns batches into row objects only here, at the edge.
import { AsyncIterableX } from 'ix/asynciterable/asynciterablex';
import { Readable } from 'node:stream';
import { ModelVaultError } from '../storage/errors.js';
import { MemoryPool } from '../storage/memory-pool.js';
import type { SpillGroup, SpillSpace } from '../storage/spill-space.js';
import type { Batch } from '../operators/batch.js';
import type { CmpOp, Expr } from '../operators/expr.js';
import { explainTree, run, throwIfAborted, type ExecContext, type Operator, type OperatorStats } from '../operators/operator.js';
import type { AggregateSpec } from '../operators/aggregate-op.js';
import type { Model } from './model.js';
import { planQuery, type PlannedQuery } from './planner.js';
import type { Scope } from './scope.js';
import { refuseUnknownOptions } from './validate.js';

export type { CmpOp } from '../operators/expr.js';

/** A condition built by `where(eb => ...)`. */
export interface Condition { readonly expr: Expr }

export interface ConditionBuilder {
  (path: string, op: CmpOp, value: unknown): Condition;
  and(items: readonly Condition[]): Condition;
  or(items: readonly Condition[]): Condition;
  not(item: Condition): Condition;
}

const OPS: ReadonlySet<string> = new Set(['=', '!=', '<', '<=', '>', '>=', 'in', 'not in', 'startsWith', 'is', 'is not']);

function checkOp(op: unknown): CmpOp {
  if (typeof op !== 'string' || !OPS.has(op)) throw new ModelVaultError('VALIDATION', `unknown operator ${String(op)}; use one of ${[...OPS].join(', ')}`, { path: 'op' });
  return op as CmpOp;
}

function checkPath(path: unknown): string {
  if (typeof path !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/.test(path)) {
    throw new ModelVaultError('VALIDATION', `invalid field path ${JSON.stringify(path)}`, { path: String(path) });
  }
  return path;
}

export const conditionBuilder: ConditionBuilder = Object.assign(
  (path: string, op: CmpOp, value: unknown): Condition => ({ expr: { kind: 'cmp', path: checkPath(path), op: checkOp(op), value } }),
  {
    and: (items: readonly Condition[]): Condition => ({ expr: { kind: 'and', items: conditions(items).map((c) => c.expr) } }),
    or: (items: readonly Condition[]): Condition => ({ expr: { kind: 'or', items: conditions(items).map((c) => c.expr) } }),
    not: (item: Condition): Condition => ({ expr: { kind: 'not', item: conditions([item])[0].expr } }),
  },
);

function conditions(items: readonly Condition[]): readonly Condition[] {
  if (!Array.isArray(items) || items.some((c) => !c || typeof c !== 'object' || !('expr' in c))) {
    throw new ModelVaultError('VALIDATION', 'and()/or()/not() take conditions made with eb(path, op, value)', { path: 'where' });
  }
  return items;
}

export interface JoinSpec {
  readonly right: Model;
  readonly rightWhere: readonly Expr[];
  readonly leftPath: string;
  readonly rightPath: string;
  readonly as: string;
  readonly type: 'inner' | 'left';
}

export interface QueryOptions {
  readonly signal?: AbortSignal;
  readonly memoryLimit?: number;
}

export interface QueryState {
  readonly model: Model;
  readonly where: readonly Expr[];
  readonly order: readonly { path: string; desc: boolean }[];
  readonly offset: number;
  readonly limit: number;
  readonly select: readonly string[] | null;
  /** Result keys of the selected paths, in order, when they differ from the paths (SQL `AS`). */
  readonly selectNames?: readonly string[] | null;
  readonly joins: readonly JoinSpec[];
  readonly groupBy: readonly string[] | null;
  /** Result keys of the group paths, in order, when they differ from the paths (SQL `AS`). */
  readonly groupNames?: readonly string[] | null;
  readonly aggregates: Readonly<Record<string, AggregateSpec>> | null;
  /** Conditions on the aggregate's result rows (group paths and aggregate names). */
  readonly having?: readonly Expr[];
  readonly options: QueryOptions;
}

/** What a query needs from the database that runs it. */
export interface QueryHost {
  readonly scope: Scope;
  readonly memoryLimit: number;
  readonly spill: SpillSpace;
  readonly batchSize: number;
}

/**
 * What a running query holds outside its own objects: a pin on its snapshot and its spill runs.
 * Both go when the query ends (its last row, break, an error, an abort), through the pipeline's
 * finally blocks; but an iterator dropped half-way, never finished nor returned, runs none of
 * them. Its hold is then released when the iterator is garbage collected: otherwise the pin
 * would keep every page it reaches from reuse (the file grows under later writes) and the spill
 * pages would stay taken until close.
 */
class QueryHold {
  private release: (() => void) | null = null;
  constructor(readonly spill: SpillGroup) {}

  pin(release: () => void): void { this.release = release; }

  end(): void {
    abandonedQueries.unregister(this);
    const release = this.release;
    this.release = null;
    release?.();
    this.spill.dropAll();
  }
}

const abandonedQueries = new FinalizationRegistry<QueryHold>((hold) => {
  try {
    hold.end();
  } catch {
    // the database was closed meanwhile: nothing is left to release
  }
});

export class Query<Row = Record<string, unknown>> extends AsyncIterableX<Row> {
  /** @internal */
  constructor(readonly host: QueryHost, readonly state: QueryState) {
    super();
  }

  private with<R = Row>(patch: Partial<QueryState>): Query<R> {
    return new Query<R>(this.host, { ...this.state, ...patch });
  }

  /**
   * Adds a condition; successive calls AND. Either `(path, op, value)` or a callback building
   * nested conditions.
   * @example orders.query().where('category', '=', 'books').where((eb) => eb.or([eb('qty', '>', 5), eb('note', 'is not', null)]))
   */
  where(path: string, op: CmpOp, value: unknown): Query<Row>;
  where(build: (eb: ConditionBuilder) => Condition): Query<Row>;
  where(a: string | ((eb: ConditionBuilder) => Condition), op?: CmpOp, value?: unknown): Query<Row> {
    const cond = conditionOf(a, op, value);
    if (this.state.aggregates) throw new ModelVaultError('VALIDATION', 'where() must come before groupBy()/aggregate(); after it, use having()', { path: 'where' });
    return this.with({ where: [...this.state.where, cond.expr] });
  }

  /**
   * Keeps the result rows of aggregate() that match (SQL's HAVING): conditions on the group paths
   * and aggregate names, as where() takes them; successive calls AND.
   * @example orders.query().groupBy('category').aggregate({ n: count() }).having('n', '>', 100)
   */
  having(path: string, op: CmpOp, value: unknown): Query<Row>;
  having(build: (eb: ConditionBuilder) => Condition): Query<Row>;
  having(a: string | ((eb: ConditionBuilder) => Condition), op?: CmpOp, value?: unknown): Query<Row> {
    const cond = conditionOf(a, op, value);
    if (!this.state.aggregates) throw new ModelVaultError('VALIDATION', 'having() comes after aggregate(); before it, use where()', { path: 'having' });
    return this.with({ having: [...(this.state.having ?? []), cond.expr] });
  }

  /**
   * Adds a sort key; more calls add more keys.
   * @example orders.query().orderBy('amount', 'desc').orderBy('id')
   */
  orderBy(path: string, direction: 'asc' | 'desc' = 'asc'): Query<Row> {
    if (direction !== 'asc' && direction !== 'desc') throw new ModelVaultError('VALIDATION', `direction must be 'asc' or 'desc'`, { path: 'orderBy' });
    return this.with({ order: [...this.state.order, { path: checkPath(path), desc: direction === 'desc' }] });
  }

  /** Skips the first `n` rows. @example q.offset(20) */
  offset(n: number): Query<Row> {
    return this.with({ offset: count('offset', n) });
  }

  /** At most `n` rows. @example q.limit(10) */
  limit(n: number): Query<Row> {
    return this.with({ limit: count('limit', n) });
  }

  /**
   * Only these fields in the result; the row type narrows. A join's `as` name selects the
   * joined row (null when a left join found none); joined rows not selected are left out.
   * @example orders.query().select('id', 'amount')
   */
  select<K extends keyof Row & string>(...fields: K[]): Query<Pick<Row, K>> {
    if (fields.length === 0) throw new ModelVaultError('VALIDATION', 'select() needs at least one field', { path: 'select' });
    return this.with<Pick<Row, K>>({ select: fields.map(checkPath), selectNames: null });
  }

  /**
   * Each row gets the matching row of `right` under `as` (`type: 'left'` gives null when none).
   * @example orders.query().join(Customers, 'userId', 'id', { as: 'customer', type: 'inner' })
   */
  join<M extends Model, As extends string, T extends 'inner' | 'left' = 'inner'>(
    right: M | Query<any>,
    leftPath: string,
    rightPath: string,
    opts: { as: As; type?: T },
  ): Query<Row & { [P in As]: T extends 'left' ? M['__row'] | null : M['__row'] }> {
    const asName = opts?.as;
    if (typeof asName !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(asName)) throw new ModelVaultError('VALIDATION', 'join needs { as: name }', { path: 'as' });
    const type = opts.type ?? 'inner';
    if (type !== 'inner' && type !== 'left') throw new ModelVaultError('VALIDATION', `join type must be 'inner' or 'left'`, { path: 'type' });
    let model: Model, rightWhere: readonly Expr[] = [];
    if (right instanceof Query) {
      const s = right.state;
      if (s.order.length || s.limit !== Infinity || s.offset || s.joins.length || s.groupBy || s.select) {
        throw new ModelVaultError('VALIDATION', 'a joined query may only filter (where); order, limit, select and joins are not supported on the joined side', { path: 'join' });
      }
      model = s.model;
      rightWhere = s.where;
    } else if (right && typeof right === 'object' && 'fields' in right && 'primaryKey' in right) {
      model = right as Model;
    } else {
      throw new ModelVaultError('VALIDATION', 'join() needs a model or a query', { path: 'join' });
    }
    // A join after select(): the row type gains the joined row, so the selection does too.
    const select = this.state.select ? [...this.state.select, asName] : null;
    const selectNames = this.state.selectNames ? [...this.state.selectNames, asName] : null;
    return this.with({ select, selectNames, joins: [...this.state.joins, { right: model, rightWhere, leftPath: checkPath(leftPath), rightPath: checkPath(rightPath), as: asName, type }] }) as never;
  }

  /**
   * Groups rows by one or more paths; follow with aggregate().
   * @example orders.query().groupBy('category').aggregate({ n: count(), total: sum('amount') })
   */
  groupBy(...paths: string[]): GroupedQuery<Row> {
    if (paths.length === 0) throw new ModelVaultError('VALIDATION', 'groupBy() needs at least one path', { path: 'groupBy' });
    return new GroupedQuery(this.with({ groupBy: paths.map(checkPath) }));
  }

  /**
   * Aggregates over all rows (one result row) or, after groupBy, per group.
   * @example await orders.query().aggregate({ n: count(), avgQty: avg('qty') }).first()
   */
  aggregate<A extends Record<string, AggregateSpec>>(aggs: A): Query<{ [K in keyof A]: number }> {
    return aggregateOn(this, aggs) as never;
  }

  /**
   * Cancellation and a per-query memory limit.
   * @example q.options({ signal: AbortSignal.timeout(5000), memoryLimit: 8 * 2 ** 20 })
   */
  options(opts: QueryOptions): Query<Row> {
    if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw new ModelVaultError('VALIDATION', 'options must be an object', { path: 'options' });
    refuseUnknownOptions(opts, ['signal', 'memoryLimit']);
    if (opts.memoryLimit !== undefined && (typeof opts.memoryLimit !== 'number' || !(opts.memoryLimit > 0) || !Number.isFinite(opts.memoryLimit))) {
      throw new ModelVaultError('VALIDATION', 'memoryLimit must be a positive number of bytes', { path: 'memoryLimit' });
    }
    if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal)) throw new ModelVaultError('VALIDATION', 'signal must be an AbortSignal', { path: 'signal' });
    return this.with({ options: { ...this.state.options, ...opts } });
  }

  // ── execution ──────────────────────────────────────────────────────────────

  /** Rows one at a time, pulled on demand. */
  override [Symbol.asyncIterator](): AsyncIterator<Row> {
    const hold = this.hold();
    return watched(new RowIterator<Row>(this.execute({ hold }), this.state.options.signal), hold);
  }

  private hold(): QueryHold {
    return new QueryHold(this.host.spill.group());
  }

  /**
   * Arrays of rows, one per internal batch (about a thousand rows): far less per-row overhead.
   * @example for await (const rows of q.batches()) total += rows.length;
   */
  batches(): AsyncGenerator<Row[]> {
    const hold = this.hold();
    return watched(rowBatches(this.execute({ hold })), hold);
  }

  /** All rows in an array. @example const rows = await q.toArray(); */
  async toArray(): Promise<Row[]> {
    const out: Row[] = [];
    for await (const rows of this.batches()) for (const r of rows) out.push(r);
    return out;
  }

  /** The first row, or undefined. @example const top = await q.orderBy('amount', 'desc').first(); */
  async first(): Promise<Row | undefined> {
    for await (const rows of this.limit(Math.min(this.state.limit, 1)).batches()) if (rows.length) return rows[0];
    return undefined;
  }

  /** Number of result rows; reads no rows when the collection count answers it. @example await q.count() */
  async count(): Promise<number> {
    let n = 0;
    for await (const { batch } of this.execute({ countOnly: true })) n += batch.length;
    return n;
  }

  /**
   * A Node Readable in object mode; backpressure pauses the query.
   * @example q.stream().pipe(transform).pipe(out)
   */
  stream(): Readable {
    return Readable.from(this, { objectMode: true, highWaterMark: 1024 });
  }

  /**
   * The plan as text; with `{ analyze: true }` the query runs and every operator reports rows,
   * time, peak reserved memory and bytes spilled.
   * @example console.log(q.explain()); console.log(await q.explain({ analyze: true }));
   */
  explain(): string;
  explain(opts: { analyze: true }): Promise<string>;
  explain(opts?: { analyze?: boolean }): string | Promise<string> {
    if (!opts?.analyze) {
      const { reader, release } = this.host.scope.openReader();
      try {
        return planQuery(this.state, reader, { countOnly: false, sync: true }).explainSync();
      } finally {
        release();
      }
    }
    return this.analyze();
  }

  private async analyze(): Promise<string> {
    const stats = new Map<Operator, OperatorStats>();
    let planned: PlannedQuery | null = null;
    let rows = 0;
    const t0 = performance.now();
    const memory = new MemoryPool(this.state.options.memoryLimit ?? this.host.memoryLimit);
    for await (const x of this.execute({ stats, memory })) {
      planned = x.planned;
      rows += x.batch.length;
    }
    const ms = performance.now() - t0;
    const text = planned ? explainTree(planned.root, stats) : '(no plan)';
    return `${text}\n${rows} rows in ${ms.toFixed(1)} ms, peak memory ${memory.peakBytes} bytes of ${memory.limitBytes}`;
  }

  /** Runs the plan; `memory` may be passed in to read its peak afterwards (explain analyze). */
  private async *execute(opts: { countOnly?: boolean; stats?: Map<Operator, OperatorStats>; memory?: MemoryPool; hold?: QueryHold } = {}): AsyncGenerator<{ batch: Batch; planned: PlannedQuery }> {
    // An already-aborted signal fails at once, even when no operator would run (count of a
    // whole collection, an empty collection).
    throwIfAborted(this.state.options.signal);
    const hold = opts.hold ?? this.hold();
    const { reader, release } = this.host.scope.openReader();
    hold.pin(release);
    const memory = opts.memory ?? new MemoryPool(this.state.options.memoryLimit ?? this.host.memoryLimit);
    try {
      const planned = planQuery(this.state, reader, { countOnly: opts.countOnly ?? false, sync: false });
      const ctx: ExecContext = { signal: this.state.options.signal, memory, spill: hold.spill, reader, batchSize: this.host.batchSize, stats: opts.stats, dynamicFilters: new Map() };
      if (planned.constantCount !== null) {
        yield { batch: { length: planned.constantCount, vectors: new Map() }, planned };
        return;
      }
      for await (const batch of run(planned.root, ctx)) {
        throwIfAborted(ctx.signal); // whatever the operators check, no batch leaves after an abort
        if (batch.length > 0) yield { batch, planned };
      }
    } finally {
      hold.end();
    }
  }
}

/** `iterator`, with its query's hold released when it is garbage collected unfinished. */
function watched<T extends object>(iterator: T, hold: QueryHold): T {
  abandonedQueries.register(iterator, hold, hold);
  return iterator;
}

async function* rowBatches(source: AsyncGenerator<{ batch: Batch; planned: PlannedQuery }>): AsyncGenerator<any[]> {
  for await (const { batch, planned } of source) yield planned.toRows(batch);
}

/**
 * Unbatches rows for `for await`: next() hands out the current batch's rows as already
 * resolved promises, and only awaits the pipeline when the batch is used up. An async
 * generator with `yield*` would cost a generator resumption and several promise jobs per row.
 */
class RowIterator<Row> implements AsyncIterableIterator<Row> {
  /** Builds row i of the current batch: rows are made one at a time, as they are handed out. */
  private rowAt: (i: number) => Row = () => undefined as Row;
  private length = 0;
  private at = 0;
  private finished = false;
  /** The last next() that had to wait; later calls queue behind it so results stay in order. */
  private pending: Promise<IteratorResult<Row>> | null = null;

  constructor(private readonly source: AsyncGenerator<{ batch: Batch; planned: PlannedQuery }>, private readonly signal: AbortSignal | undefined) {}

  [Symbol.asyncIterator](): this { return this; }

  next(): Promise<IteratorResult<Row>> {
    // The signal is read per row: rows of a batch already made are not handed out once aborted.
    if (this.pending === null && this.at < this.length && this.signal?.aborted !== true) return Promise.resolve({ value: this.rowAt(this.at++), done: false });
    const step = () => this.step();
    const p = this.pending === null ? this.step() : this.pending.then(step, step);
    this.pending = p;
    const clear = () => { if (this.pending === p) this.pending = null; };
    p.then(clear, clear);
    return p;
  }

  private step(): Promise<IteratorResult<Row>> {
    if (!this.finished && this.signal?.aborted === true) return this.abort();
    if (this.at < this.length) return Promise.resolve({ value: this.rowAt(this.at++), done: false });
    return this.refill();
  }

  private async abort(): Promise<never> {
    await this.return();
    throwIfAborted(this.signal);
    throw new Error('internal: abort() without an aborted signal');
  }

  private async refill(): Promise<IteratorResult<Row>> {
    this.length = 0;
    this.at = 0;
    while (!this.finished) {
      const r = await this.source.next();
      if (r.done) break;
      const { batch, planned } = r.value;
      if (batch.length > 0) {
        this.rowAt = planned.rowAt(batch) as (i: number) => Row;
        this.length = batch.length;
        this.at = 1;
        return { value: this.rowAt(0), done: false };
      }
    }
    this.finished = true;
    return { value: undefined, done: true };
  }

  /** break / early exit: closes the pipeline (scans stop, pages and snapshot are released). */
  async return(value?: unknown): Promise<IteratorResult<Row>> {
    this.length = 0;
    this.at = 0;
    this.finished = true;
    await this.source.return(undefined as never);
    return { value: value as Row, done: true };
  }
}

/** A query after groupBy(): only aggregate() may follow. */
export class GroupedQuery<Row> {
  /** @internal */
  constructor(readonly query: Query<Row>) {}
  aggregate<A extends Record<string, AggregateSpec>>(aggs: A): Query<Record<string, unknown> & { [K in keyof A]: number }> {
    return aggregateOn(this.query, aggs) as never;
  }
}

function conditionOf(a: string | ((eb: ConditionBuilder) => Condition), op?: CmpOp, value?: unknown): Condition {
  if (typeof a !== 'function') return conditionBuilder(a, op as CmpOp, value);
  const cond = a(conditionBuilder);
  conditions([cond]);
  return cond;
}

function aggregateOn(q: Query<any>, aggs: Record<string, AggregateSpec>): Query<any> {
  if (!aggs || typeof aggs !== 'object' || Object.keys(aggs).length === 0) throw new ModelVaultError('VALIDATION', 'aggregate() needs at least one aggregate', { path: 'aggregate' });
  for (const [name, spec] of Object.entries(aggs)) {
    checkPath(name);
    // A result row is a plain object: a __proto__ key would set its prototype, not a value.
    if (name === '__proto__') throw new ModelVaultError('VALIDATION', '__proto__ cannot name an aggregate', { path: name });
    if (!spec || typeof spec !== 'object' || typeof (spec as AggregateSpec).fn !== 'string') throw new ModelVaultError('VALIDATION', `aggregate ${name} must be count(), sum(path), avg(path), min(path), max(path) or countDistinct(path)`, { path: name });
  }
  if (q.state.order.length || q.state.limit !== Infinity || q.state.offset) throw new ModelVaultError('VALIDATION', 'orderBy/limit/offset must come after aggregate()', { path: 'aggregate' });
  // A select() before aggregate() chose fields of the rows aggregated, not of the result.
  return new Query(q.host, { ...q.state, select: null, selectNames: null, groupBy: q.state.groupBy ?? [], aggregates: aggs });
}

function count(name: string, n: number): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > Number.MAX_SAFE_INTEGER) {
    throw new ModelVaultError('VALIDATION', `${name} must be a non-negative integer`, { path: name });
  }
  return n;
}

export const emptyState = (model: Model): QueryState => ({
  model, where: [], order: [], offset: 0, limit: Infinity, select: null, joins: [], groupBy: null, aggregates: null, options: {},
});
