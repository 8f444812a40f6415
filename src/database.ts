// The public entry point. This milestone covers what concerns storage: opening (file,
// memory, snapshot image), recovery info, snapshot bytes, backup, compact, verify, stats
// and close. Collections and queries slot in on top of `engine`.
import type { BlockStore } from '../storage/block-store.js';
import { maxRowColumns, type Cell } from '../storage/btree.js';
import { KeySorter } from '../storage/key-sorter.js';
import { ModelVaultError } from '../storage/errors.js';
import { MAX_PAGE_SIZE, MIN_PAGE_SIZE } from '../storage/superblock.js';
import { StorageEngine, type EngineTxn, type StorageStats, type VerifyReport } from '../storage/engine.js';
import type { RecoveryInfo } from '../storage/pager.js';
import {
  diffSchema, encodeMeta, encodeRowCount, indexTreeName, initialMeta, listCollections, metaName, modelFromMeta, readMeta, readRowCount, rowCountName,
  type CollectionMeta, type IndexMeta, type SchemaChange,
} from './catalog.js';
import { Collection } from './collection.js';
import { CollectionLayout, CollectionWriter } from './collection-writer.js';
import { Model, asModel, isModelLike } from './model.js';
import { DatabaseScope, TxScope, refuseInsideTransaction, type Scope } from './scope.js';
import type { Query, QueryHost } from './query.js';
import { compileSql } from './sql.js';
import { refuseUnknownOptions } from './validate.js';

const BATCH_ROWS = 1024;

export interface OpenOptions {
  /** Buffer pool budget in bytes (default 64 MiB). */
  cacheSize?: number;
  /** Per-query operator memory before spilling (default 256 MiB). */
  memoryLimit?: number;
  /** Never write (default false). */
  readOnly?: boolean;
  /** Create the file if missing (default true). */
  create?: boolean;
  /** `'truncate'` repairs an unclean tail and reports it; `'strict'` refuses such a file. */
  recovery?: 'truncate' | 'strict';
  /** Wait this long for another process's write lock before `LOCKED` (default 0: fail at once). */
  lockTimeoutMs?: number;
  /** Page size of a new file, a power of two from 16 KiB to 1 MiB (default 64 KiB). */
  pageSize?: number;
}

export type InMemoryOptions = Omit<OpenOptions, 'readOnly' | 'create' | 'recovery' | 'lockTimeoutMs'>;

export interface DatabaseStats extends StorageStats {
  memoryLimit: number;
}

const DEFAULT_MEMORY_LIMIT = 256 * 2 ** 20;

const OPEN_OPTIONS = ['cacheSize', 'memoryLimit', 'readOnly', 'create', 'recovery', 'lockTimeoutMs', 'pageSize'];
/** The pager's write-out threshold, which tests and benchmarks set (not in OpenOptions). */
const INTERNAL_OPEN_OPTIONS = ['maxDirtyBytes'];

function checkOptions(opts: OpenOptions): void {
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) {
    throw new ModelVaultError('VALIDATION', 'options must be an object', { path: 'options' });
  }
  refuseUnknownOptions(opts, OPEN_OPTIONS, INTERNAL_OPEN_OPTIONS);
  const positive = (name: keyof OpenOptions, min: number) => {
    const v = opts[name];
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) {
      throw new ModelVaultError('VALIDATION', `${name} must be a number >= ${min}`, { path: name });
    }
  };
  positive('cacheSize', 0);
  positive('memoryLimit', 0);
  positive('lockTimeoutMs', 0);
  positive('pageSize', 0);
  // Checked before the file is touched: a refused open must not leave an empty file behind.
  const { pageSize } = opts;
  if (pageSize !== undefined && (!Number.isInteger(pageSize) || pageSize < MIN_PAGE_SIZE || pageSize > MAX_PAGE_SIZE || (pageSize & (pageSize - 1)) !== 0)) {
    throw new ModelVaultError('VALIDATION', `pageSize must be a power of two between ${MIN_PAGE_SIZE} and ${MAX_PAGE_SIZE}`, { path: 'pageSize' });
  }
  for (const name of ['readOnly', 'create'] as const) {
    if (opts[name] !== undefined && typeof opts[name] !== 'boolean') throw new ModelVaultError('VALIDATION', `${name} must be a boolean`, { path: name });
  }
  if (opts.recovery !== undefined && opts.recovery !== 'truncate' && opts.recovery !== 'strict') {
    throw new ModelVaultError('VALIDATION', `recovery must be 'truncate' or 'strict'`, { path: 'recovery' });
  }
}

export interface MigrationPlan {
  readonly collection: string;
  /** True when `register()` would accept the model as it is. */
  readonly compatible: boolean;
  readonly changes: readonly SchemaChange[];
  /** What `migrate()` will do, in order. */
  readonly steps: readonly string[];
}

/** A running `db.transaction()`: collections bound to it see its own writes. */
export class Transaction {
  /** @internal */
  constructor(private readonly host: QueryHost) {}

  /**
   * The collection of `model` inside this transaction.
   * @example await db.transaction(async (tx) => { await tx.collection(Orders).insert(order); });
   */
  collection<M extends Model>(model: M): Collection<M> {
    if (!isModelLike(model)) throw new ModelVaultError('VALIDATION', 'collection() needs a model', { path: 'model' });
    return new Collection(this.host, asModel(model) as M);
  }
}

export class Database implements AsyncDisposable {
  private readonly scope: Scope;
  /** @internal What queries run with: scope, memory budget, spill space. */
  readonly host: QueryHost;

  private constructor(
    /** @internal The storage engine; collections and queries are built over it. */
    readonly engine: StorageEngine,
    readonly memoryLimit: number,
  ) {
    this.scope = new DatabaseScope(engine);
    this.host = { scope: this.scope, memoryLimit, spill: engine.spill, batchSize: BATCH_ROWS };
  }

  /**
   * A query written as SQL (SELECT only; values as ? parameters). Returns the same kind of
   * query object as the builder, so it streams, explains and chains the same way.
   * @example db.sql('SELECT id, amount FROM orders WHERE category = ? ORDER BY amount DESC LIMIT 10', ['books'])
   */
  sql(text: string, params: readonly unknown[] = []): Query<Record<string, unknown>> {
    return compileSql(text, params, (name) => this.modelForSql(name), this.host);
  }

  /** Models registered through this handle (SQL finds collections by name here). */
  private readonly models = new Map<string, Model>();

  /** @internal The model SQL uses for a collection name. */
  modelForSql(name: string): Model {
    const m = this.models.get(name);
    if (!m) throw new ModelVaultError('UNKNOWN_COLLECTION', `collection ${name} is not registered in this session (call db.register first)`, { collection: name });
    return m;
  }

  /**
   * Creates the collection of `model`, or checks the model against the stored schema:
   * additive changes (new optional or defaulted fields, new non-unique indexes, which are
   * built) are applied; anything else is `SCHEMA_INCOMPATIBLE`, naming every change.
   * @example const orders = await db.register(Orders);
   */
  async register<M extends Model>(model: M): Promise<Collection<M>> {
    if (!isModelLike(model)) throw new ModelVaultError('VALIDATION', 'register() needs a model made with model()', { path: 'model' });
    model = asModel(model) as M;
    this.checkRowWidth(model);
    // A model that matches the stored schema needs no write (so read-only opens can register).
    const unchanged = await this.scope.read(async (reader) => {
      const stored = await readMeta(reader, model.name);
      return stored !== undefined && diffSchema(stored, model).length === 0;
    });
    if (unchanged) {
      this.models.set(model.name, model);
      return new Collection(this.host, model);
    }
    await this.scope.write(async (etx) => {
      const stored = await readMeta(etx, model.name);
      if (!stored) return createCollection(etx, initialMeta(model));
      const changes = diffSchema(stored, model);
      const incompatible = changes.filter((c) => !c.compatible);
      if (incompatible.length > 0) {
        throw new ModelVaultError('SCHEMA_INCOMPATIBLE',
          `model ${model.name} is incompatible with the stored schema: ${incompatible.map((c) => c.reason).join('; ')} (see db.planMigration)`,
          { collection: model.name, changes: incompatible });
      }
      if (changes.length > 0) await applyAdditive(etx, stored, model);
    });
    this.models.set(model.name, model);
    return new Collection(this.host, model);
  }

  /**
   * The collection `name` as stored in the file, with a model rebuilt from the catalog: for
   * tools that open a file without its code. `UNKNOWN_COLLECTION` when absent.
   * @example const orders = await db.collection('orders'); await orders.count();
   */
  async collection(name: string): Promise<Collection<Model>> {
    if (typeof name !== 'string') throw new ModelVaultError('VALIDATION', 'collection name must be a string', { path: 'name' });
    const meta = await this.scope.read((reader) => readMeta(reader, name));
    if (!meta) throw new ModelVaultError('UNKNOWN_COLLECTION', `collection ${name} does not exist`, { collection: name });
    const model = modelFromMeta(meta);
    if (!this.models.has(name)) this.models.set(name, model);
    return new Collection(this.host, model);
  }

  /**
   * Every collection in the catalog: name, schema version, fields, keys, indexes, row count.
   * @example for (const c of await db.collections()) console.log(c.name, c.rowCount);
   */
  async collections(): Promise<(CollectionMeta & { rowCount: number })[]> {
    return this.scope.read(async (reader) => {
      const out = [];
      for (const meta of await listCollections(reader)) out.push({ ...meta, rowCount: await readRowCount(reader, meta.name) });
      return out;
    });
  }

  /**
   * What `migrate(model)` would change and do, without doing it.
   * @example const plan = await db.planMigration(OrdersV2); console.log(plan.steps);
   */
  async planMigration(model: Model): Promise<MigrationPlan> {
    if (!isModelLike(model)) throw new ModelVaultError('VALIDATION', 'planMigration() needs a model', { path: 'model' });
    model = asModel(model);
    return this.scope.read(async (reader) => {
      const stored = await readMeta(reader, model.name);
      if (!stored) return { collection: model.name, compatible: true, changes: [], steps: [`create collection ${model.name}`] };
      const changes = diffSchema(stored, model);
      return { collection: model.name, compatible: changes.every((c) => c.compatible), changes, steps: migrationSteps(changes) };
    });
  }

  /** A model wider than a leaf can hold a row of is refused before anything is written. */
  private checkRowWidth(model: Model): void {
    const columns = Object.keys(model.fields).length, max = maxRowColumns(this.engine.pageSize);
    if (columns > max) {
      throw new ModelVaultError('VALIDATION', `model ${model.name} has ${columns} fields, and a row in ${this.engine.pageSize}-byte pages holds at most ${max}: `
        + 'use fewer fields (an object field is one), or a larger pageSize', { path: 'fields' });
    }
  }

  /**
   * Moves a collection to a new model in one transaction: every row is rewritten (fields
   * removed, `backfill` values set where a field is absent, defaults applied), re-validated,
   * and every index rebuilt (unique ones checked). All or nothing.
   * @example await db.migrate(OrdersV2, { backfill: { currency: 'EUR' } });
   */
  async migrate<M extends Model>(model: M, opts: { backfill?: Record<string, unknown> } = {}): Promise<{ changes: readonly SchemaChange[]; rows: number }> {
    if (!isModelLike(model)) throw new ModelVaultError('VALIDATION', 'migrate() needs a model', { path: 'model' });
    model = asModel(model) as M;
    this.checkRowWidth(model);
    const backfill = opts.backfill ?? {};
    for (const field of Object.keys(backfill)) {
      if (!Object.prototype.hasOwnProperty.call(model.fields, field)) throw new ModelVaultError('VALIDATION', `backfill names unknown field ${field}`, { path: `backfill.${field}` });
    }
    return this.scope.write(async (etx) => {
      const stored = await readMeta(etx, model.name);
      if (!stored) {
        await createCollection(etx, initialMeta(model));
        return { changes: [], rows: 0 };
      }
      const changes = diffSchema(stored, model);
      if (changes.length === 0) return { changes, rows: 0 };
      const rows = await rewriteCollection(etx, stored, model, backfill);
      return { changes, rows };
    });
  }

  /**
   * Runs `fn` as one transaction: commit when it resolves, rollback when it throws (the
   * error is re-thrown as is). Writers queue; readers keep their snapshot.
   * @example const n = await db.transaction(async (tx) => { await tx.collection(Orders).insert(o); return 1; });
   */
  transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
    if (typeof fn !== 'function') return Promise.reject(new ModelVaultError('VALIDATION', 'transaction() needs a function', { path: 'fn' }));
    try {
      refuseInsideTransaction(this.engine, 'db.transaction()', 'there are no nested transactions: write through the callback\'s tx, or through the database, which joins it');
    } catch (err) {
      return Promise.reject(err);
    }
    return this.engine.write(async (etx) => {
      const scope = new TxScope(this.engine, etx);
      try {
        return await scope.run(() => fn(new Transaction({ ...this.host, scope })));
      } finally {
        await scope.close();
      }
    });
  }

  /**
   * Opens (or creates) a `.modelvault` file.
   * @example const db = await Database.open('app.modelvault', { cacheSize: 64 * 2 ** 20 });
   */
  static async open(path: string, opts: OpenOptions = {}): Promise<Database> {
    if (typeof path !== 'string' || path.length === 0 || path.includes('\0')) {
      throw new ModelVaultError('VALIDATION', 'path must be a non-empty string without NUL bytes', { path: 'path' });
    }
    checkOptions(opts);
    const engine = await StorageEngine.open(path, opts);
    return new Database(engine, opts.memoryLimit ?? DEFAULT_MEMORY_LIMIT);
  }

  /**
   * A database held in memory: the same engine over a growable buffer.
   * @example const db = await Database.openInMemory({ memoryLimit: 32 * 2 ** 20 });
   */
  static async openInMemory(opts: InMemoryOptions = {}): Promise<Database> {
    checkOptions(opts);
    return new Database(await StorageEngine.openMemory(opts), opts.memoryLimit ?? DEFAULT_MEMORY_LIMIT);
  }

  /** @internal A database over a caller's BlockStore (fault-injection tests); mirrors openInMemory. */
  static async openStore(store: BlockStore, opts: Omit<OpenOptions, 'create' | 'lockTimeoutMs'> = {}): Promise<Database> {
    checkOptions(opts);
    return new Database(await StorageEngine.openStore(store, opts), opts.memoryLimit ?? DEFAULT_MEMORY_LIMIT);
  }

  /**
   * An in-memory database from the bytes of a `.modelvault` file (or of `snapshotBytes()`).
   * @example const copy = await Database.openSnapshotBytes(await db.snapshotBytes());
   */
  static async openSnapshotBytes(image: Uint8Array, opts: InMemoryOptions = {}): Promise<Database> {
    if (!(image instanceof Uint8Array)) throw new ModelVaultError('VALIDATION', 'image must be a Uint8Array', { path: 'image' });
    checkOptions(opts);
    if (image.byteLength === 0) throw new ModelVaultError('NOT_A_DATABASE', 'the image is empty');
    return new Database(await StorageEngine.openMemory(opts, image), opts.memoryLimit ?? DEFAULT_MEMORY_LIMIT);
  }

  /** What open repaired (`{ truncatedBytes, reason }`), or null when the file was clean. */
  get recoveryInfo(): RecoveryInfo | null {
    return this.engine.recoveryInfo;
  }

  /**
   * The last committed state as the bytes of a valid `.modelvault` file.
   * @example await fs.writeFile('copy.modelvault', await db.snapshotBytes());
   */
  snapshotBytes(): Promise<Uint8Array> {
    return this.engine.snapshotBytes();
  }

  /**
   * Reads every reachable page, checks every checksum and tree invariant.
   * @example const report = await db.verify(); if (!report.ok) console.error(report.problems);
   */
  verify(): Promise<VerifyReport> {
    return this.engine.verify();
  }

  /**
   * Rewrites the live data without free space; the file shrinks.
   * @example const { bytesBefore, bytesAfter } = await db.compact();
   */
  async compact(): Promise<{ bytesBefore: number; bytesAfter: number }> {
    refuseInsideTransaction(this.engine, 'db.compact()', 'call it after the transaction');
    return this.engine.compact();
  }

  /**
   * A consistent online copy of the committed state.
   * @example await db.backup('copy.modelvault');
   */
  backup(dest: string): Promise<{ bytes: number }> {
    if (typeof dest !== 'string' || dest.length === 0) {
      return Promise.reject(new ModelVaultError('VALIDATION', 'backup destination must be a non-empty path', { path: 'dest' }));
    }
    return this.engine.backup(dest);
  }

  /**
   * File, cache, spill and commit counters.
   * @example db.stats().cache.hits
   */
  stats(): DatabaseStats {
    return { ...this.engine.stats(), memoryLimit: this.memoryLimit };
  }

  /**
   * Waits for running writes, then closes the file and releases the lock.
   * @example await db.close();
   */
  async close(): Promise<void> {
    refuseInsideTransaction(this.engine, 'db.close()', 'call it after the transaction');
    return this.engine.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

async function createCollection(etx: EngineTxn, meta: CollectionMeta): Promise<void> {
  await etx.tree(meta.rowsTree, meta.columns.length);
  for (const ix of meta.indexes) await etx.tree(ix.tree, 0);
  await etx.setMeta(metaName(meta.name), encodeMeta(meta));
  await etx.setMeta(rowCountName(meta.name), encodeRowCount(0));
  CollectionWriter.forget(etx, meta.name);
}

/** Applies compatible changes in place: new columns go last, new indexes are built, dropped ones freed. */
async function applyAdditive(etx: EngineTxn, stored: CollectionMeta, model: Model): Promise<void> {
  const version = stored.version + 1;
  const columns = [...stored.columns, ...Object.keys(model.fields).filter((f) => !stored.columns.includes(f))];
  const kept: IndexMeta[] = [];
  for (const ix of stored.indexes) {
    if (model.indexes.some((m) => m.name === ix.name)) kept.push(ix);
    else await etx.dropTree(ix.tree);
  }
  const added: IndexMeta[] = model.indexes
    .filter((ix) => !stored.indexes.some((s) => s.name === ix.name))
    .map((ix) => ({ ...ix, tree: indexTreeName(model.name, ix.name, version) }));
  const next: CollectionMeta = { ...stored, version, fields: { ...model.fields }, columns, indexes: [...kept, ...added] };
  await etx.tree(next.rowsTree, columns.length); // widens the rows tree to the new column count
  const layout = new CollectionLayout(next);
  await storeNewDefaults(etx, stored, layout, kept);
  for (const meta of added) {
    const tree = await etx.tree(meta.tree, 0);
    // Entries are sorted externally and appended to the new (empty) tree in one ascending
    // stream: bounded memory, and each leaf written once.
    const sorter = new KeySorter(etx.engine.spill, `index ${meta.name} of ${model.name}`);
    try {
      for await (const [, cells] of etx.entries(next.rowsTree)) {
        const key = layout.indexKey(meta, layout.decode(cells));
        tree.checkKey(key);
        const spilled = sorter.add(key);
        if (spilled) await spilled;
      }
      await tree.putSortedKeys(sorter.sortedChunks());
    } finally {
      sorter.drop();
    }
  }
  await etx.setMeta(metaName(model.name), encodeMeta(next));
  CollectionWriter.forget(etx, model.name);
}

/**
 * A field that gains a default (new, or formerly optional) reads back with that default
 * where a stored row has no value. The value is written into those rows, so that scans,
 * filters and indexes see what `get` returns; kept indexes over the field are updated.
 */
async function storeNewDefaults(etx: EngineTxn, stored: CollectionMeta, layout: CollectionLayout, kept: readonly IndexMeta[]): Promise<void> {
  const next = layout.meta;
  const filled = next.columns
    .map((field, column) => ({ field, column, spec: next.fields[field] }))
    .filter(({ field, spec }) => {
      const before = stored.fields[field];
      return spec?.hasDefault && (!before || (before.optional && !before.hasDefault)); // only these can hold absent values
    });
  if (filled.length === 0) return;
  const oldLayout = new CollectionLayout(stored);
  const rows = await etx.tree(next.rowsTree, next.columns.length);
  const indexTrees = await Promise.all(kept.map(async (ix) => ({ ix, tree: await etx.tree(ix.tree, 0) })));
  let after: Buffer | undefined;
  for (;;) {
    // a chunk is decoded before it is changed: the tree is not written while being iterated
    const chunk: { key: Buffer; before: Record<string, unknown>; row: Record<string, unknown>; cells: Cell[] }[] = [];
    let last: Buffer | undefined;
    for await (const [key, cells] of etx.entries(next.rowsTree, after ? { gt: after } : {})) {
      last = key;
      if (filled.some(({ column }) => (cells[column] ?? null) === null)) {
        const row = layout.decode(cells);
        chunk.push({ key, before: oldLayout.decode(cells), row, cells: layout.codec.encode(row) });
      }
      if (chunk.length >= 256) break;
    }
    for (const { key, before, row, cells } of chunk) {
      await rows.put(key, cells, 'update');
      for (const { ix, tree } of indexTrees) {
        const was = oldLayout.indexKey(ix, before), now = layout.indexKey(ix, row);
        if (was.equals(now)) continue;
        await tree.delete(was);
        await tree.put(now, [], 'upsert');
      }
      await etx.maybeFlush();
    }
    if (last === undefined || chunk.length < 256) return;
    after = last;
  }
}

/** Rewrites every row into fresh trees under the new model; the old trees are freed. */
async function rewriteCollection(etx: EngineTxn, stored: CollectionMeta, model: Model, backfill: Record<string, unknown>): Promise<number> {
  const version = stored.version + 1;
  const next: CollectionMeta = {
    ...initialMeta(model),
    version,
    rowsTree: `rows:${model.name}:${version}`,
    indexes: model.indexes.map((ix) => ({ ...ix, tree: indexTreeName(model.name, ix.name, version) })),
  };
  const oldLayout = new CollectionLayout(stored);
  await createCollection(etx, next);
  const writer = await CollectionWriter.open(etx, model.name);
  let n = 0;
  for await (const [, cells] of etx.entries(stored.rowsTree)) {
    const old = oldLayout.decode(cells);
    const row: Record<string, unknown> = {};
    for (const field of Object.keys(model.fields)) {
      const v = old[field] !== undefined ? old[field] : backfill[field];
      if (v !== undefined) row[field] = v;
    }
    await writer.insert(row);
    n++;
    await etx.maybeFlush();
  }
  await etx.dropTree(stored.rowsTree);
  for (const ix of stored.indexes) await etx.dropTree(ix.tree);
  return n;
}

function migrationSteps(changes: readonly SchemaChange[]): string[] {
  if (changes.length === 0) return [];
  const steps = changes.map((c) => {
    switch (c.kind) {
      case 'addField': return c.compatible ? `add field ${c.field}` : `backfill field ${c.field} (pass backfill: { ${c.field}: value })`;
      case 'removeField': return `rewrite rows without field ${c.field}`;
      case 'changeField': return `re-validate every row for ${c.field}: ${c.reason}`;
      case 'addIndex': return c.compatible ? `build index ${c.index}` : `build unique index ${c.index}, checking existing rows`;
      case 'removeIndex': return `drop index ${c.index}`;
      case 'changeIndex': return `rebuild index ${c.index}`;
      case 'changePrimaryKey': return `re-key every row: ${c.reason}`;
    }
  });
  return [...steps, 'rewrite every row and rebuild every index in one transaction'];
}
