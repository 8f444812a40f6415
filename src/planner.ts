// The planner: checks a query against the catalog (paths, value types), chooses the access
// path (full scan, primary-key range, or an index by estimated selectivity, or whichever
// delivers the requested order), pushes predicates into the scan, and assembles the operator
// pipeline. Planning reads the catalog synchronously, so explain() answers at once.
import { countRangeSync, type KeyBounds } from '../storage/btree.js';
import type { TreeReader } from '../storage/engine.js';
import { ModelVaultError } from '../storage/errors.js';
import { encodeKey, keyPartFits, type KeyPart } from '../storage/keys.js';
import { AggregateOp, type AggregateSpec } from '../operators/aggregate-op.js';
import { valueAt, type Batch, type Vector } from '../operators/batch.js';
import { exprPaths, exprToString, type CmpOp, type Expr } from '../operators/expr.js';
import { FilterOp } from '../operators/filter-op.js';
import { IndexCountOp, IndexEdgesOp, IndexOnlyScanOp, IndexScanOp, type IndexEdge, type KeyColumn } from '../operators/index-scan-op.js';
import { HashJoinOp } from '../operators/join-op.js';
import { LimitOp } from '../operators/limit-op.js';
import { explainTree, type Operator } from '../operators/operator.js';
import { pathVector } from '../operators/paths.js';
import { TableScanOp, type ScanColumn } from '../operators/scan-op.js';
import { SortOp, type SortKey } from '../operators/sort-op.js';
import { decodeMeta, metaName, rowCountName, type CollectionMeta, type IndexMeta } from './catalog.js';
import { unknownCollection } from './collection.js';
import { columnCodec } from './row-codec.js';
import type { QueryState } from './query.js';
import type { FieldSpec } from './types.js';

export interface PlannedQuery {
  readonly root: Operator;
  /** Set when the answer is known without running anything (count of a whole collection). */
  readonly constantCount: number | null;
  toRows(batch: Batch): Record<string, unknown>[];
  /** Row i of a batch, built on demand (the for-await edge builds only the rows it hands out). */
  rowAt(batch: Batch): (i: number) => Record<string, unknown>;
  explainSync(): string;
}

const NUMERIC = new Set(['int', 'float', 'timestamp']);
/** Stored as plain UTF-8 (row-codec): scans decode them straight from the page. */
const TEXT = new Set(['string', 'uuid', 'enum']);
const INDEX_SELECTIVITY = 0.2;

function readCollection(reader: TreeReader, name: string): { meta: CollectionMeta; rowCount: number } {
  const bytes = reader.getMetaSync(metaName(name));
  if (!bytes) throw unknownCollection(name);
  const countBytes = reader.getMetaSync(rowCountName(name));
  const rowCount = countBytes && countBytes.byteLength === 8 ? Buffer.from(countBytes.buffer, countBytes.byteOffset, 8).readDoubleLE(0) : 0;
  return { meta: decodedMeta(bytes, name), rowCount };
}

/**
 * Collection metadata by its stored bytes: every query plans from it, and decoding it each time
 * was a tenth of a small indexed query. Keyed by content, so a changed schema is decoded afresh.
 */
const metaCache = new Map<string, CollectionMeta>();
const META_CACHE_MAX = 64;

function decodedMeta(bytes: Uint8Array, name: string): CollectionMeta {
  const key = `${name}\u0000${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')}`;
  let meta = metaCache.get(key);
  if (!meta) {
    meta = decodeMeta(bytes, name);
    if (metaCache.size >= META_CACHE_MAX) metaCache.clear();
    metaCache.set(key, meta);
  }
  return meta;
}

function invalid(path: string, message: string): ModelVaultError {
  return new ModelVaultError('VALIDATION', `${path}: ${message}`, { path });
}

/** The spec of a dotted path inside a field map, or undefined. */
function specAt(fields: Readonly<Record<string, FieldSpec>>, path: string): FieldSpec | undefined {
  const [head, ...rest] = path.split('.');
  let spec = Object.prototype.hasOwnProperty.call(fields, head) ? fields[head] : undefined;
  for (const part of rest) {
    if (!spec || spec.kind === 'json') return spec; // inside json anything goes
    if (spec.kind !== 'object' || !Object.prototype.hasOwnProperty.call(spec.shape!, part)) return undefined;
    spec = spec.shape![part];
  }
  return spec;
}

/** Checks one comparison value against a field type and brings it to vector form. */
function normalizeValue(path: string, spec: FieldSpec, op: CmpOp, value: unknown): unknown {
  if (op === 'is' || op === 'is not') {
    if (value !== null && value !== undefined) throw invalid(path, `'${op}' compares with null only`);
    return null;
  }
  if (op === 'in' || op === 'not in') {
    if (!Array.isArray(value)) throw invalid(path, `'${op}' needs an array of values`);
    if (value.length > 100_000) throw invalid(path, `'${op}' list is too long (${value.length})`);
    return value.map((v) => normalizeValue(path, spec, '=', v));
  }
  if (op === 'startsWith') {
    if (!['string', 'uuid', 'enum'].includes(spec.kind) || typeof value !== 'string') throw invalid(path, 'startsWith needs a string field and a string value');
    return value;
  }
  const wrong = (what: string) => invalid(path, `compares a ${spec.kind} field with ${what}`);
  const describe = (v: unknown) => (v === null ? 'null' : v instanceof Date ? (Number.isNaN(v.getTime()) ? 'an invalid Date' : 'a Date') : Array.isArray(v) ? 'an array' : `a ${typeof v}`);
  switch (spec.kind) {
    case 'int': case 'float':
      if (typeof value !== 'number') throw wrong(describe(value));
      return value;
    case 'timestamp':
      if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw wrong(describe(value));
      return value.getTime();
    case 'bigint':
      if (typeof value !== 'bigint') throw wrong(describe(value));
      return value;
    case 'bool':
      if (typeof value !== 'boolean') throw wrong(describe(value));
      return value;
    case 'string': case 'enum':
      if (typeof value !== 'string') throw wrong(describe(value));
      return value;
    case 'uuid':
      if (typeof value !== 'string') throw wrong(describe(value));
      return value.toLowerCase();
    case 'json':
      if (value !== null && typeof value === 'object') throw wrong(describe(value));
      return value;
    default:
      throw invalid(path, `${spec.kind} fields support only 'is' / 'is not' null`);
  }
}

interface Side { readonly meta: CollectionMeta; readonly rowCount: number; readonly prefix: string }

/** What count, countDistinct, avg and a number's sum hold, for having() values. */
const AGGREGATE_NUMBER: FieldSpec = { kind: 'float', optional: true, hasDefault: false, constraints: {} };

export function planQuery(state: QueryState, reader: TreeReader, opts: { countOnly: boolean; sync: boolean }): PlannedQuery {
  const base = readCollection(reader, state.model.name);
  const sides = new Map<string, Side>();
  sides.set('', { ...base, prefix: '' });
  for (const j of state.joins) {
    if (sides.has(j.as) || Object.prototype.hasOwnProperty.call(base.meta.fields, j.as)) throw invalid(j.as, 'join alias collides with a field or another join');
    sides.set(j.as, { ...readCollection(reader, j.right.name), prefix: `${j.as}.` });
  }
  /** The side a path belongs to and its spec. */
  const resolve = (path: string): { side: string; spec: FieldSpec; local: string } => {
    const head = path.split('.')[0];
    if (sides.has(head) && head !== '') {
      const local = path.slice(head.length + 1);
      const spec = local ? specAt(sides.get(head)!.meta.fields, local) : undefined;
      if (!spec) throw invalid(path, `no such field in joined collection ${sides.get(head)!.meta.name}`);
      return { side: head, spec, local };
    }
    const spec = specAt(base.meta.fields, path);
    if (!spec) throw invalid(path, `no such field in ${base.meta.name}`);
    return { side: '', spec, local: path };
  };
  const normalize = (e: Expr, prefix = ''): Expr => {
    switch (e.kind) {
      case 'cmp': {
        const path = prefix + e.path;
        const { spec } = resolve(path);
        return { kind: 'cmp', path, op: e.op, value: normalizeValue(path, spec, e.op, e.value) };
      }
      case 'not': return { kind: 'not', item: normalize(e.item, prefix) };
      default: return { kind: e.kind, items: e.items.map((x) => normalize(x, prefix)) };
    }
  };
  const conjuncts = state.where.flatMap((e) => splitAnd(normalize(e)));
  const joinWhere = state.joins.map((j) => j.rightWhere.flatMap((e) => splitAnd(normalize(e, `${j.as}.`))));
  for (const j of state.joins) {
    const l = resolve(j.leftPath), r = resolve(`${j.as}.${j.rightPath}`);
    if (l.side !== '') throw invalid(j.leftPath, 'the left join path must be a field of the queried collection');
    if (!sameKeyKind(l.spec, r.spec)) throw invalid(j.leftPath, `joins a ${l.spec.kind} with a ${r.spec.kind}`);
  }
  const aggregating = state.aggregates !== null;
  const aggs = aggregating ? Object.entries(state.aggregates!) : [];
  for (const [name, spec] of aggs) {
    if (!['count', 'sum', 'avg', 'min', 'max', 'countDistinct'].includes(spec.fn)) throw invalid(name, `unknown aggregate ${spec.fn}`);
    if (spec.fn !== 'count') {
      if (!spec.path) throw invalid(name, `${spec.fn}() needs a path`);
      const { spec: f } = resolve(spec.path);
      if ((spec.fn === 'sum' || spec.fn === 'avg') && !['int', 'float', 'bigint'].includes(f.kind)) throw invalid(spec.path, `${spec.fn}() needs a numeric field, not ${f.kind}`);
    }
  }
  for (const p of state.groupBy ?? []) resolve(p);
  const outputNames = aggregating ? new Set([...(state.groupBy ?? []), ...aggs.map(([n]) => n)]) : null;
  for (const o of state.order) if (!(outputNames?.has(o.path))) {
    if (aggregating) throw invalid(o.path, 'after aggregate(), order by a group path or an aggregate name');
    resolve(o.path);
  }
  // having(): conditions on the aggregate's result rows, typed by what each name holds.
  const resultSpec = (name: string): FieldSpec => {
    if ((state.groupBy ?? []).includes(name)) return resolve(name).spec;
    const a = state.aggregates && Object.hasOwn(state.aggregates, name) ? state.aggregates[name] : undefined;
    if (!a) throw invalid(name, 'having() takes group paths and aggregate names');
    if (a.fn === 'count' || a.fn === 'countDistinct') return AGGREGATE_NUMBER;
    const f = resolve(a.path!).spec;
    return a.fn === 'min' || a.fn === 'max' || (a.fn === 'sum' && f.kind === 'bigint') ? f : AGGREGATE_NUMBER;
  };
  const normalizeHaving = (e: Expr): Expr => {
    switch (e.kind) {
      case 'cmp': return { kind: 'cmp', path: e.path, op: e.op, value: normalizeValue(e.path, resultSpec(e.path), e.op, e.value) };
      case 'not': return { kind: 'not', item: normalizeHaving(e.item) };
      default: return { kind: e.kind, items: e.items.map(normalizeHaving) };
    }
  };
  const having = (state.having ?? []).flatMap((e) => splitAnd(normalizeHaving(e)));
  /** A join's `as` name: selecting it selects the joined row. */
  const isJoinAlias = (path: string) => path !== '' && sides.has(path);
  if (aggregating && state.select) {
    for (const s of state.select) if (!outputNames!.has(s)) throw invalid(s, 'after aggregate(), select group paths or aggregate names');
  } else {
    for (const s of state.select ?? []) if (!isJoinAlias(s)) resolve(s);
  }

  // Which top-level fields each side must decode.
  const needed = new Map<string, Set<string>>([...sides.keys()].map((k) => [k, new Set<string>()]));
  const need = (path: string) => { const r = resolve(path); needed.get(r.side)!.add(r.local.split('.')[0]); };
  const countOnlyRun = opts.countOnly && !aggregating;
  if (!countOnlyRun) {
    if (aggregating) {
      for (const p of state.groupBy ?? []) need(p);
      for (const [, a] of aggs) if (a.path) need(a.path);
    } else {
      for (const [side, s] of sides) {
        if (!state.select || state.select.includes(side)) for (const f of s.meta.columns) if (s.meta.fields[f]) needed.get(side)!.add(f);
      }
      for (const p of state.select ?? []) if (!isJoinAlias(p)) need(p);
      for (const o of state.order) need(o.path);
    }
  }
  for (const c of conjuncts) for (const p of exprPaths(c)) need(p);
  for (const w of joinWhere) for (const c of w) for (const p of exprPaths(c)) need(p);
  for (const j of state.joins) { need(j.leftPath); need(`${j.as}.${j.rightPath}`); }

  const scanColumns = (side: Side, fields: Set<string>, prefix: string): ScanColumn[] =>
    side.meta.columns.flatMap((f, column) => (fields.has(f) && side.meta.fields[f] ? [{
      path: prefix + f,
      column,
      decoder: NUMERIC.has(side.meta.fields[f].kind) ? { kind: 'f64' as const } : TEXT.has(side.meta.fields[f].kind) ? { kind: 'utf8' as const } : { kind: 'value' as const, decode: columnCodec(f, side.meta.fields[f]).decode },
    }] : []));

  // Conjuncts on the queried collection alone go into its scan; the rest filter after joins.
  const pushable = conjuncts.filter((c) => [...exprPaths(c)].every((p) => resolve(p).side === ''));
  // Conditions on one inner-joined side alone filter that side's scan (for a left join they must
  // stay after the join: they decide whether the row appears with null, not which rows match).
  const joinSideOf = (c: Expr) => {
    const sidesUsed = new Set([...exprPaths(c)].map((p) => resolve(p).side));
    const [only] = sidesUsed;
    return sidesUsed.size === 1 && only !== '' && state.joins.find((j) => j.as === only)?.type === 'inner' ? only : null;
  };
  state.joins.forEach((j, n) => { for (const c of conjuncts) if (!pushable.includes(c) && joinSideOf(c) === j.as) joinWhere[n].push(c); });
  const afterJoin = conjuncts.filter((c) => !pushable.includes(c) && joinSideOf(c) === null);
  const orderable = !aggregating && state.joins.length === 0 ? state.order : [];
  const countOnlyAccess = opts.countOnly && !aggregating && state.joins.length === 0;
  const access = chooseAccess(reader, base, pushable, orderable, countOnlyAccess);
  const baseColumns = scanColumns(sides.get('')!, needed.get('')!, '');
  const baseFilter = andOf(pushable);
  // An index scan fetches its rows a chunk of keys at a time: all of the estimated range at
  // once unless a limit right above it may stop the query after a few rows.
  const limited = Number.isFinite(state.limit) && !aggregating && state.joins.length === 0 && (state.order.length === 0 || access.ordered);
  // Bounds that decide every condition leave no residual filter: the first chunk can be the
  // rows the limit needs; otherwise a few more, as the filter may drop some.
  const decided = access.index !== null && access.exact === true;
  const firstChunk = limited ? Math.max(decided ? 1 : 16, state.limit + state.offset) : Math.max(16, access.estimate);
  // A top-k whose keys are columns of the queried collection hands its cutoff to that
  // collection's scan, which skips the rows past it before decoding their other columns. Through
  // joins too: a row's joined rows carry its keys, and a join that streams its probe side emits
  // them in scan order (one that loads or partitions that side first has consumed the scan before
  // the top-k sees a row, so the cutoff is not set yet).
  const topKKeys = state.order.map((o) => o.path);
  const topKToken = state.order.length > 0 && Number.isFinite(state.limit) && !aggregating && !countOnlyRun && !access.ordered && !access.index
    && topKKeys.every((p) => resolve(p).side === '' && baseColumns.some((c) => c.path === p)) ? {} : null;
  // min()/max() without groups over fields that follow an index's decided bounds: index edges.
  const edges = aggregating && (state.groupBy ?? []).length === 0 && state.joins.length === 0 && aggs.every(([, a]) => a.fn === 'min' || a.fn === 'max')
    ? aggs.map(([name, a]) => indexEdgeFor(name, a, base.meta, pushable))
    : null;
  const edgesOp = edges !== null && edges.every((e) => e !== null) ? new IndexEdgesOp(edges as IndexEdge[]) : null;
  // Every scanned row goes into a full sort (joined or not), which keeps what it needs itself.
  const fullSort = state.order.length > 0 && !access.ordered && !Number.isFinite(state.limit) && !aggregating && !countOnlyRun;
  /** The operator that reads the queried collection. */
  const baseOperator = (): Operator => {
    const ix = access.index;
    if (ix === null) {
      return new TableScanOp(base.meta.rowsTree, base.meta.name, baseColumns, baseFilter, access.bounds, !limited, topKToken === null ? null : { token: topKToken, paths: topKKeys }, fullSort);
    }
    const label = `${base.meta.name} via index ${ix.name}`;
    const residual = decided ? null : baseFilter;
    if (countOnlyAccess && decided) return new IndexCountOp(ix.tree, label, access.bounds, access.boundsText);
    // An index whose keys hold every column the query reads serves the rows without fetches.
    const keyColumns = indexKeyColumns(ix.fields, base.meta, baseColumns);
    if (keyColumns) return new IndexOnlyScanOp(ix.tree, label, access.bounds, access.boundsText, keyColumns, residual);
    return new IndexScanOp(ix.tree, base.meta.rowsTree, label, ix.fields.length, access.bounds, access.boundsText, baseColumns, residual, firstChunk);
  };
  let root: Operator = edgesOp ?? baseOperator();
  let leftEstimate = access.estimate;
  state.joins.forEach((j, n) => {
    const side = sides.get(j.as)!;
    const right = new TableScanOp(side.meta.rowsTree, `${side.meta.name} as ${j.as}`, scanColumns(side, needed.get(j.as)!, ''), andOf(joinWhere[n].map((e) => stripPrefix(e, `${j.as}.`))), {}, true);
    const buildSide = j.type === 'inner' && side.rowCount > leftEstimate ? 'left' : 'right';
    root = new HashJoinOp(root, right, { leftPath: j.leftPath, rightPath: j.rightPath, as: j.as, type: j.type, buildSide });
    leftEstimate = Math.max(leftEstimate, side.rowCount);
  });
  if (afterJoin.length) root = new FilterOp(root, andOf(afterJoin)!);
  if (aggregating) {
    if (!edgesOp) root = new AggregateOp(root, state.groupBy ?? [], aggs as [string, AggregateSpec][]);
    if (having.length) root = new FilterOp(root, andOf(having)!);
  }
  const limit = state.limit;
  // count() needs no order (and decodes no order columns): a sort could not change the count.
  if (state.order.length && !access.ordered && !countOnlyRun) {
    root = new SortOp(root, state.order.map((o): SortKey => ({ path: o.path, desc: o.desc })), Number.isFinite(limit) ? limit + state.offset : Infinity, topKToken,
      aggregating ? null : leftEstimate);
  }
  if (Number.isFinite(limit) || state.offset > 0) root = new LimitOp(root, limit, state.offset);

  // A count known before any work: every row, or the entries an exact index's estimate counted.
  const known = !countOnlyAccess ? null : conjuncts.length === 0 ? base.rowCount : decided && access.counted ? access.estimate : null;
  const constantCount = known === null ? null : Math.min(limit, Math.max(0, known - state.offset));
  const finalRoot = root;
  // Built on first use: a count() or explain() never turns a batch into rows.
  let builders: Pick<PlannedQuery, 'toRows' | 'rowAt'> | null = null;
  const built = () => (builders ??= rowBuilders(aggregating ? aggregateRows(state, resolve, aggs) : entityRows(state, sides, resolve)));
  return {
    root: finalRoot,
    constantCount,
    toRows: (batch) => built().toRows(batch),
    rowAt: (batch) => built().rowAt(batch),
    explainSync: () => explainTree(finalRoot),
  };
}

function sameKeyKind(a: FieldSpec, b: FieldSpec): boolean {
  const group = (k: string) => (NUMERIC.has(k) && k !== 'timestamp' ? 'number' : k === 'uuid' || k === 'enum' ? 'string' : k);
  return group(a.kind) === group(b.kind);
}

function splitAnd(e: Expr): Expr[] {
  return e.kind === 'and' ? e.items.flatMap(splitAnd) : [e];
}

function andOf(items: readonly Expr[]): Expr | null {
  return items.length === 0 ? null : items.length === 1 ? items[0] : { kind: 'and', items };
}

function stripPrefix(e: Expr, prefix: string): Expr {
  if (e.kind === 'cmp') return { ...e, path: e.path.startsWith(prefix) ? e.path.slice(prefix.length) : e.path };
  if (e.kind === 'not') return { kind: 'not', item: stripPrefix(e.item, prefix) };
  return { kind: e.kind, items: e.items.map((x) => stripPrefix(x, prefix)) };
}

// ── access path ──────────────────────────────────────────────────────────────

interface Access {
  readonly index: IndexMeta | null;
  readonly bounds: KeyBounds;
  readonly boundsText: string;
  /** True when rows come out in the query's order, so no sort is needed. */
  readonly ordered: boolean;
  readonly estimate: number;
  /** An index whose bounds alone decide every condition: its entries in bounds are the rows (count() reads no row). */
  readonly exact?: boolean;
  /** `estimate` is the exact number of entries in bounds (the estimate's walk ended before its cap). */
  readonly counted?: boolean;
}

/** Equality prefix and an optional range on the next field, from top-level conjuncts. */
function keyRange(fields: readonly string[], conjuncts: readonly Expr[]): {
  eq: KeyPart[]; range: { lower?: [KeyPart, boolean]; upper?: [KeyPart, boolean] }; text: string[]; used: Set<Expr>;
} {
  const eq: KeyPart[] = [];
  const text: string[] = [];
  /** The conjuncts the bounds stand for (a later range conjunct on one side replaces an earlier one). */
  const used = new Set<Expr>();
  // A value too long to be a key part (a string over 4 KiB) cannot bound a key range; it stays
  // in the filter. (No stored key holds it, but a range from it still matches shorter keys.)
  const cmps = conjuncts.filter((c): c is Extract<Expr, { kind: 'cmp' }> => c.kind === 'cmp' && keyPartFits(c.value as KeyPart));
  for (const f of fields) {
    const e = cmps.find((c) => c.path === f && c.op === '=');
    if (!e) break;
    eq.push(e.value as KeyPart);
    text.push(exprToString(e));
    used.add(e);
  }
  const range: { lower?: [KeyPart, boolean]; upper?: [KeyPart, boolean] } = {};
  let lower: Expr | null = null, upper: Expr | null = null;
  const next = fields[eq.length];
  if (next !== undefined) {
    for (const c of cmps) {
      if (c.path !== next) continue;
      const v = c.value as KeyPart;
      if (c.op === '>' || c.op === '>=') { range.lower = [v, c.op === '>=']; text.push(exprToString(c)); lower = c; }
      if (c.op === '<' || c.op === '<=') { range.upper = [v, c.op === '<=']; text.push(exprToString(c)); upper = c; }
    }
  }
  if (lower) used.add(lower);
  if (upper) used.add(upper);
  return { eq, range, text, used };
}

/**
 * Kinds whose values a key part gives back exactly: not floats (-0 shares 0's key) nor bigints
 * (ordered-binary decodes a small one as a number).
 */
const EDGE_KINDS = new Set(['int', 'timestamp', 'string', 'enum']);

/**
 * min(path)/max(path) from the edge of an index's (or the primary key's) range: when `path`
 * follows its equality prefix and its bounds decide every condition. min starts past the
 * entries of absent values (null parts, below every value).
 */
function indexEdgeFor(name: string, a: AggregateSpec, meta: CollectionMeta, conjuncts: readonly Expr[]): IndexEdge | null {
  const spec = a.path !== undefined && Object.hasOwn(meta.fields, a.path) ? meta.fields[a.path] : undefined;
  if (!spec || !EDGE_KINDS.has(spec.kind)) return null;
  const keys = [
    { fields: meta.primaryKey, tree: meta.rowsTree, label: 'the primary key' },
    ...meta.indexes.map((ix) => ({ fields: ix.fields, tree: ix.tree, label: `index ${ix.name}` })),
  ];
  for (const k of keys) {
    const r = keyRange(k.fields, conjuncts);
    if (k.fields[r.eq.length] !== a.path) continue;
    if (!conjuncts.every((c) => r.used.has(c))) continue;
    if (!k.fields.slice(0, r.eq.length).every((f) => EXACT_KEY_KINDS.has(meta.fields[f]?.kind ?? ''))) continue;
    let bounds = boundsFor(r.eq, r.range);
    if (a.fn === 'min' && !r.range.lower) {
      const { gte: _prefix, ...rest } = bounds;
      bounds = { ...rest, gt: Buffer.concat([encodeKey([...r.eq, null]), Buffer.from([0xff, 0xff])]) };
    }
    const text = r.text.length ? `, bounds ${r.text.join(' AND ')}` : '';
    return { name, tree: k.tree, label: `${k.label}${text}`, bounds, part: r.eq.length, max: a.fn === 'max', numeric: spec.kind === 'int' || spec.kind === 'timestamp' };
  }
  return null;
}

/**
 * The columns of an index-only scan: each of `columns` as a part of the index keys (the index
 * fields, then the primary key), or null when one is not there or its kind does not decode
 * exactly from a key part (see EDGE_KINDS; booleans do too).
 */
function indexKeyColumns(fields: readonly string[], meta: CollectionMeta, columns: readonly ScanColumn[]): KeyColumn[] | null {
  const keyFields = [...fields, ...meta.primaryKey];
  const out: KeyColumn[] = [];
  for (const c of columns) {
    const part = keyFields.indexOf(c.path);
    const kind = Object.hasOwn(meta.fields, c.path) ? meta.fields[c.path].kind : '';
    if (part < 0 || !(EDGE_KINDS.has(kind) || kind === 'bool')) return null;
    out.push({ path: c.path, part, numeric: kind === 'int' || kind === 'timestamp' });
  }
  return out;
}

/** Field kinds whose index keys order and compare exactly as the query's conditions do. */
const EXACT_KEY_KINDS = new Set(['int', 'float', 'timestamp', 'bigint', 'bool', 'string', 'enum']);

/**
 * Whether an index's bounds decide every conjunct: each is one the bounds stand for, on a field
 * whose keys compare as values do. A range with no lower bound also spans the entries of absent
 * values (their key part is null, below every value), so it is exact only on a required field.
 */
function boundsAreExact(conjuncts: readonly Expr[], r: ReturnType<typeof keyRange>, fields: readonly string[], specOf: (f: string) => FieldSpec | undefined): boolean {
  if (!conjuncts.every((c) => r.used.has(c))) return false;
  const rangeField = fields[r.eq.length];
  const touched = [...fields.slice(0, r.eq.length), ...(r.range.lower || r.range.upper ? [rangeField] : [])];
  if (!touched.every((f) => EXACT_KEY_KINDS.has(specOf(f)?.kind ?? ''))) return false;
  return !(r.range.upper && !r.range.lower && specOf(rangeField)?.optional !== false);
}

/** Key bounds for an equality prefix plus a range; every entry extending the prefix is covered. */
function boundsFor(eq: KeyPart[], range: { lower?: [KeyPart, boolean]; upper?: [KeyPart, boolean] }): KeyBounds {
  const prefix = encodeKey(eq);
  const ff = Buffer.from([0xff, 0xff]);
  const b: KeyBounds = {};
  if (range.lower) {
    const k = encodeKey([...eq, range.lower[0]]);
    if (range.lower[1]) b.gte = k; else b.gt = Buffer.concat([k, ff]);
  } else if (eq.length) b.gte = prefix;
  if (range.upper) {
    const k = encodeKey([...eq, range.upper[0]]);
    if (range.upper[1]) b.lte = Buffer.concat([k, ff]); else b.lt = k;
  } else if (eq.length) b.lt = Buffer.concat([prefix, ff]);
  return b;
}

function chooseAccess(reader: TreeReader, base: { meta: CollectionMeta; rowCount: number }, conjuncts: readonly Expr[], order: QueryState['order'], countOnly = false): Access {
  const meta = base.meta;
  const cap = Math.max(16, Math.ceil(base.rowCount * INDEX_SELECTIVITY));
  const sameDir = order.length > 0 && order.every((o) => o.desc === order[0].desc);
  const reverse = sameDir && order[0].desc;
  const orderMatches = (fields: readonly string[], eqCount: number) =>
    sameDir && order.every((o, i) => fields[eqCount + i] === o.path) && order.length <= fields.length - eqCount;

  // Primary key: a clustered range costs nothing extra, so any bound on its leading fields is taken.
  const pk = keyRange(meta.primaryKey, conjuncts);
  const pkBounded = pk.eq.length > 0 || pk.range.lower !== undefined || pk.range.upper !== undefined;
  const pkOrdered = order.length === 0 || orderMatches(meta.primaryKey, pk.eq.length);
  const fullScan: Access = {
    index: null,
    bounds: { ...(pkBounded ? boundsFor(pk.eq, pk.range) : {}), reverse: order.length > 0 && pkOrdered ? reverse : false },
    boundsText: pk.text.join(' AND '),
    ordered: order.length > 0 && pkOrdered,
    estimate: pkBounded ? countRangeSync(reader.nodeSource, reader.treeRootSync(meta.rowsTree), boundsFor(pk.eq, pk.range), base.rowCount + 1) : base.rowCount,
  };
  let best: Access = fullScan;
  for (const ix of meta.indexes) {
    const r = keyRange(ix.fields, conjuncts);
    const bounded = r.eq.length > 0 || r.range.lower !== undefined || r.range.upper !== undefined;
    // Index keys end with the primary key, so ties come out in primary-key order.
    const ordered = order.length > 0 && orderMatches([...ix.fields, ...meta.primaryKey], r.eq.length);
    if (!bounded && !ordered) continue;
    const bounds = bounded ? boundsFor(r.eq, r.range) : {};
    const estimate = countRangeSync(reader.nodeSource, reader.treeRootSync(ix.tree), bounds, cap);
    const exact = bounded && boundsAreExact(conjuncts, r, ix.fields, (f) => meta.fields[f]);
    const candidate: Access = { index: ix, bounds: { ...bounds, reverse: ordered ? reverse : false }, boundsText: r.text.join(' AND ') || 'whole index', ordered, estimate, exact, counted: estimate < cap };
    // count() of conditions an index decides alone counts its entries: no row is read, however many.
    if (countOnly && exact) {
      if (!best.exact) best = candidate;
      continue;
    }
    if (countOnly && best.exact) continue;
    const selective = estimate < cap && estimate < best.estimate;
    // An index that delivers the order is worth it when it is also selective, or when no sort is needed otherwise.
    if (selective && (ordered || !best.ordered)) best = candidate;
    else if (ordered && !best.ordered && (selective || !bounded)) best = candidate.estimate <= best.estimate || !bounded ? candidate : best;
  }
  return best;
}

// ── rows at the edge ─────────────────────────────────────────────────────────

type Resolver = (path: string) => { side: string; spec: FieldSpec; local: string };

function outValue(spec: FieldSpec, v: unknown): unknown {
  return spec.kind === 'timestamp' && typeof v === 'number' ? new Date(v) : v;
}

const SAFE_KEY = /^[A-Za-z_][A-Za-z0-9_.]*$/;

type Slow = (vectors: readonly Vector[], i: number) => Record<string, unknown>;
type RowsBuilder = (vectors: readonly Vector[], n: number, slow: Slow) => Record<string, unknown>[];
type RowBuilder = (vectors: readonly Vector[], i: number, slow: Slow) => Record<string, unknown>;
type ToRows = ((b: Batch) => Record<string, unknown>[]) & { rowAt?: (b: Batch) => (i: number) => Record<string, unknown> };

function rowBuilders(toRows: ToRows): Pick<PlannedQuery, 'toRows' | 'rowAt'> {
  return {
    toRows,
    rowAt: toRows.rowAt ?? ((b) => { const rows = toRows(b); return (i) => rows[i]; }),
  };
}

const toDate = (v: unknown) => (typeof v === 'number' ? new Date(v) : v);

/**
 * Generated row builders by their result keys, timestamp keys and vector layout (what their
 * source is made of), shared by every query with the same result schema and vector layout: a
 * query reuses functions V8 has already optimised instead of compiling and warming up new ones
 * (100 short queries would each run cold otherwise). Bounded: a new schema past the bound simply
 * compiles its own.
 */
const builderCache = new Map<string, { many: RowsBuilder; one: RowBuilder }>();
const BUILDER_CACHE_MAX = 256;

/**
 * Rows of a join-free query through a function generated once per result schema (and per
 * vector layout): every row is one object literal with the keys in schema order, so V8 gives
 * all rows one hidden class and builds them from a boilerplate. A row with an absent value
 * takes the general path, which leaves the key out as before.
 */
function compiledRows(plan: readonly { path: string; key: string; spec: FieldSpec }[]): ToRows {
  const builders = new Map<string, { many: RowsBuilder; one: RowBuilder }>();
  const slow: Slow = (vectors, i) => {
    const row: Record<string, unknown> = {};
    for (let k = 0; k < plan.length; k++) {
      const v = valueAt(vectors[k], i);
      if (v !== undefined) row[plan[k].key] = outValue(plan[k].spec, v);
    }
    return row;
  };
  // What the generated source depends on: the keys, which are timestamps, and the layout.
  const signature = plan.map((p) => `${p.spec.kind === 'timestamp' ? 'D' : '-'}${p.key}`).join('\u0000');
  const generate = (layout: string): { many: RowsBuilder; one: RowBuilder } => {
    const key = `${layout}\u0000${signature}`;
    const cached = builderCache.get(key);
    if (cached) return cached;
    const setup: string[] = [];
    const present: string[] = [];
    const fields: string[] = [];
    plan.forEach((p, k) => {
      setup.push(`const x${k} = vs[${k}].values;`);
      const date = p.spec.kind === 'timestamp';
      if (layout[k] === 'F' || layout[k] === 'A') {
        if (layout[k] === 'A') { setup.push(`const a${k} = vs[${k}].absent;`); present.push(`a${k}[i] === 0`); }
        fields.push(`${JSON.stringify(p.key)}: ${date ? `new Date(x${k}[i])` : `x${k}[i]`}`);
      } else {
        present.push(`x${k}[i] !== undefined`);
        fields.push(`${JSON.stringify(p.key)}: ${date ? `outValue(x${k}[i])` : `x${k}[i]`}`);
      }
    });
    const row = present.length ? `${present.join(' && ')} ? { ${fields.join(', ')} } : slow(vs, i)` : `{ ${fields.join(', ')} }`;
    const many = `${setup.join('\n')}
      const rows = new Array(n);
      for (let i = 0; i < n; i++) rows[i] = ${row};
      return rows;`;
    const one = `${setup.join('\n')}
      return ${row};`;
    const made = {
      many: new Function('outValue', `return function buildRows(vs, n, slow) {\n${many}\n};`)(toDate) as RowsBuilder,
      one: new Function('outValue', `return function buildRow(vs, i, slow) {\n${one}\n};`)(toDate) as RowBuilder,
    };
    if (builderCache.size < BUILDER_CACHE_MAX) builderCache.set(key, made);
    return made;
  };
  const builderFor = (b: Batch) => {
    const vectors = plan.map((p) => pathVector(b, p.path));
    let layout = '';
    for (const v of vectors) layout += v.kind === 'f64' ? (v.absent ? 'A' : 'F') : 'O';
    let build = builders.get(layout);
    if (!build) builders.set(layout, (build = generate(layout)));
    return { vectors, build };
  };
  const toRows: ToRows = (b) => {
    const { vectors, build } = builderFor(b);
    return build.many(vectors, b.length, slow);
  };
  toRows.rowAt = (b) => {
    const { vectors, build } = builderFor(b);
    const one = build.one;
    return (i) => one(vectors, i, slow);
  };
  return toRows;
}

function entityRows(state: QueryState, sides: Map<string, Side>, resolve: Resolver): ToRows {
  const baseMeta = sides.get('')!.meta;
  // Each result key in order: a path's value, or a joined row (a join's `as` name).
  const items = state.select
    ? state.select.map((path, k) => ({ path, key: state.selectNames?.[k] ?? path, join: path !== '' && sides.has(path) }))
    : [
        ...baseMeta.columns.filter((f) => baseMeta.fields[f]).map((path) => ({ path, key: path, join: false })),
        ...state.joins.map((j) => ({ path: j.as, key: j.as, join: true })),
      ];
  const joinFields = (as: string) => {
    const meta = sides.get(as)!.meta;
    return meta.columns.filter((f) => meta.fields[f]).map((f) => ({ key: f, path: `${as}.${f}`, spec: meta.fields[f] }));
  };
  const parts = items.map((it) => (it.join
    ? { path: it.path, key: it.key, as: it.path, fields: joinFields(it.path), spec: null }
    : { path: it.path, key: it.key, as: null, fields: [], spec: resolve(it.path).spec }));
  if (parts.every((p) => p.as === null && SAFE_KEY.test(p.key))) return compiledRows(parts as { path: string; key: string; spec: FieldSpec }[]);
  return (b) => {
    const vectors = items.map((it) => (it.join ? b.vectors.get(it.path) : pathVector(b, it.path)));
    const fieldVectors = parts.map((p) => p.fields.map((f) => b.vectors.get(f.path)));
    const rows: Record<string, unknown>[] = new Array(b.length);
    for (let i = 0; i < b.length; i++) {
      const row: Record<string, unknown> = {};
      for (let k = 0; k < parts.length; k++) {
        const part = parts[k], v = vectors[k];
        if (part.as === null) {
          const x = valueAt(v!, i);
          if (x !== undefined) row[part.key] = outValue(part.spec!, x);
          continue;
        }
        // The join's marker vector: absent where a left join found no row.
        if (!v || valueAt(v, i) === undefined) { row[part.key] = null; continue; }
        const sub: Record<string, unknown> = {};
        part.fields.forEach((f, n) => {
          const fv = fieldVectors[k][n];
          const x = fv ? valueAt(fv, i) : undefined;
          if (x !== undefined) sub[f.key] = outValue(f.spec, x);
        });
        row[part.key] = sub;
      }
      rows[i] = row;
    }
    return rows;
  };
}

function aggregateRows(state: QueryState, resolve: Resolver, aggs: [string, AggregateSpec][]): (b: Batch) => Record<string, unknown>[] {
  const groupBy = state.groupBy ?? [];
  // The result's keys in order: the selected ones, else the group paths and then the aggregates.
  const names = state.select ?? [...groupBy, ...aggs.map(([name]) => name)];
  const outs = names.map((name) => {
    const g = groupBy.indexOf(name);
    if (g >= 0) return { vector: name, key: state.groupNames?.[g] ?? name, spec: resolve(name).spec };
    const a = aggs.find(([n]) => n === name)![1];
    return { vector: name, key: name, spec: a.fn === 'min' || a.fn === 'max' ? resolve(a.path!).spec : null };
  });
  return (b) => {
    const vectors = outs.map((o) => b.vectors.get(o.vector)!);
    const rows: Record<string, unknown>[] = new Array(b.length);
    for (let i = 0; i < b.length; i++) {
      const row: Record<string, unknown> = {};
      for (let k = 0; k < outs.length; k++) {
        const o = outs[k], v = valueAt(vectors[k], i);
        row[o.key] = v === undefined ? null : o.spec ? outValue(o.spec, v) : v;
      }
      rows[i] = row;
    }
    return rows;
  };
}
