// The write path of one collection inside one storage transaction: validate, check keys and
// unique indexes, then change the rows tree and every index tree. All checks run before the
// first change, so a rejected write leaves the transaction as it was.
import type { BTreeWriter, Cell, PutResult } from '../storage/btree.js';
import { emptyPackedRow, type CellSink } from '../storage/btree-node.js';
import type { EngineTxn, TreeReader } from '../storage/engine.js';
import { ModelVaultError } from '../storage/errors.js';
import { KeySorter } from '../storage/key-sorter.js';
import { encodeKey, encodeKeyScratch, prefixBounds, type KeyPart } from '../storage/keys.js';
import { encodeRowCount, readMeta, readRowCount, rowCountName, type CollectionMeta, type IndexMeta } from './catalog.js';
import { RowCodec } from './row-codec.js';
import { insertValidator, validateShape, validateValue, validationError } from './validate.js';

type Row = Record<string, unknown>;

/**
 * A key encoding error for component `details.part` restated for the field it holds: the
 * field becomes the error's path, as validation errors have.
 */
function namedKeyError(err: unknown, fields: readonly string[], keyOf: string): unknown {
  if (!(err instanceof ModelVaultError) || err.code !== 'VALIDATION' || typeof err.details.part !== 'number') return err;
  const field = fields[err.details.part];
  if (field === undefined) return err;
  return validationError(field, `${err.message}, so it cannot be a key of ${keyOf}`);
}

/** Keys and codec of one catalog version of a collection; shared by readers and writers. */
export class CollectionLayout {
  readonly codec: RowCodec;
  constructor(readonly meta: CollectionMeta) {
    this.codec = new RowCodec(meta.columns, meta.fields);
  }

  /** The primary key bytes for a user-supplied key (a value, or an array for composite keys). */
  keyFromArgument(pk: unknown): Buffer {
    const fields = this.meta.primaryKey;
    const parts = fields.length === 1 ? [pk] : pk;
    if (!Array.isArray(parts) || parts.length !== fields.length) {
      throw validationError('key', `expected ${fields.length === 1 ? 'a key value' : `an array of ${fields.length} key values (${fields.join(', ')})`}`);
    }
    const values = fields.map((f, i) => {
      if (parts[i] === undefined || parts[i] === null) throw validationError(f, 'key value is missing');
      return validateValue(this.meta.fields[f], parts[i], f) as KeyPart;
    });
    try {
      return encodeKey(values);
    } catch (err) {
      throw namedKeyError(err, fields, 'the primary key');
    }
  }

  rowKey(row: Row): Buffer {
    try {
      return encodeKey(this.primaryKeyParts(row));
    } catch (err) {
      throw namedKeyError(err, this.meta.primaryKey, 'the primary key');
    }
  }

  /** `rowKey` in encodeKeyScratch's shared buffer: valid until the next key is encoded. */
  rowKeyScratch(row: Row): Buffer {
    try {
      return encodeKeyScratch(this.primaryKeyParts(row));
    } catch (err) {
      throw namedKeyError(err, this.meta.primaryKey, 'the primary key');
    }
  }

  private readonly pkParts: KeyPart[] = [];
  /** The row's primary key values, in an array reused from row to row. */
  private primaryKeyParts(row: Row): KeyPart[] {
    const fields = this.meta.primaryKey, parts = this.pkParts;
    if (parts.length !== fields.length) parts.length = fields.length; // setting length costs even when unchanged
    for (let i = 0; i < fields.length; i++) parts[i] = row[fields[i]] as KeyPart;
    return parts;
  }

  indexParts(ix: IndexMeta, row: Row): KeyPart[] {
    return ix.fields.map((f) => (row[f] === undefined ? null : (row[f] as KeyPart)));
  }

  indexKey(ix: IndexMeta, row: Row): Buffer {
    try {
      return encodeKey([...this.indexParts(ix, row), ...this.meta.primaryKey.map((f) => row[f] as KeyPart)]);
    } catch (err) {
      throw namedKeyError(err, [...ix.fields, ...this.meta.primaryKey], `index ${ix.name}`);
    }
  }

  decode(cells: readonly Cell[]): Row {
    return this.codec.decode(cells);
  }

  getSync(reader: TreeReader, key: Buffer): Row | undefined {
    const found = reader.findSync(this.meta.rowsTree, key);
    return found ? this.codec.decodeAt(reader.nodeSource.pager, found.leaf, found.index) : undefined;
  }

  async get(reader: TreeReader, key: Buffer): Promise<Row | undefined> {
    const cells = await reader.get(this.meta.rowsTree, key);
    return cells ? this.codec.decode(cells) : undefined;
  }
}

const states = new WeakMap<EngineTxn, Map<string, CollectionWriter>>();

/** A collection's trees opened for writing in one transaction, with its row-count change. */
export class CollectionWriter {
  private rowDelta = 0;
  private readonly hasUnique: boolean;
  private readonly validateRow: (input: unknown) => Row;
  /** A row's cells into a leaf's columns (BTreeWriter.appendCellsSync). */
  private readonly writeCells: (sink: CellSink, row: Row) => void;
  /** Index entries collected in bulk mode, per index; null otherwise. */
  private pending: KeySorter[] | null = null;

  private constructor(
    readonly etx: EngineTxn,
    readonly layout: CollectionLayout,
    private readonly rows: BTreeWriter,
    private readonly indexes: readonly { meta: IndexMeta; tree: BTreeWriter }[],
  ) {
    this.hasUnique = indexes.some((ix) => ix.meta.unique);
    this.validateRow = insertValidator(layout.meta.fields);
    const codec = layout.codec;
    this.writeCells = (sink, row) => codec.encodeCells(row, sink);
    etx.onBeforeCommit(async () => {
      if (this.rowDelta === 0) return;
      const name = layout.meta.name;
      await etx.setMeta(rowCountName(name), encodeRowCount((await readRowCount(etx, name)) + this.rowDelta));
      this.rowDelta = 0;
    });
  }

  /** The writer of `collection` in `etx`, opened once per transaction. */
  static async open(etx: EngineTxn, collection: string): Promise<CollectionWriter> {
    let byName = states.get(etx);
    if (!byName) states.set(etx, (byName = new Map()));
    const open = byName.get(collection);
    if (open) return open;
    const meta = await readMeta(etx, collection);
    if (!meta) throw new ModelVaultError('UNKNOWN_COLLECTION', `collection ${collection} is not registered`, { collection });
    const rows = await etx.tree(meta.rowsTree, meta.columns.length);
    const indexes = [];
    for (const ix of meta.indexes) indexes.push({ meta: ix, tree: await etx.tree(ix.tree, 0) });
    const writer = new CollectionWriter(etx, new CollectionLayout(meta), rows, indexes);
    byName.set(collection, writer);
    return writer;
  }

  /** Forgets the cached writer (after a schema change inside the transaction). */
  static forget(etx: EngineTxn, collection: string): void {
    states.get(etx)?.delete(collection);
  }

  get pendingRowDelta(): number { return this.rowDelta; }

  insert(input: unknown): Promise<void> {
    try {
      return this.insertNow(input) ?? Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Inserts synchronously when nothing needs waiting for (no unique index to look up, the row
   * fits a leaf, no flush due) and returns null; otherwise returns the promise of the rest.
   * Throws (synchronously) for rows it rejects before changing anything.
   */
  insertNow(input: unknown): Promise<void> | null {
    const row = this.validateRow(input);
    if (this.hasUnique) return this.insertChecked(row);
    const indexKeys = this.indexKeys(row); // encoded and size-checked before the first change
    const key = this.layout.rowKeyScratch(row); // after the index keys: the next encodeKey overwrites it
    this.checkKeySize(this.rows, key, row, this.layout.meta.primaryKey, 'the primary key');
    let result: PutResult | null;
    try {
      // Keys in ascending order (a load by primary key) append to the rightmost leaf, the
      // cells written straight into its columns; others take the general path with a packed row.
      result = this.rows.appendCellsSync(key, this.writeCells, row) ? 'inserted'
        : this.rows.putPackedSync(key, this.layout.codec.encodeScratch(row), 'insert', true);
      if (result === 'inserted') {
        if (this.pending) return this.deferIndexEntries(indexKeys);
        this.addIndexEntriesSync(indexKeys);
      }
    } catch (err) {
      this.etx.poisoned ??= err as Error;
      throw err;
    }
    if (result === null) return this.insertStored(row, Buffer.from(key), indexKeys); // overflow pages needed
    if (result === 'exists') throw this.duplicateKey(row);
    this.rowDelta++;
    return this.etx.needsFlush ? this.etx.maybeFlush() : null;
  }

  /** The general insert: unique indexes checked first, large cells moved to overflow pages. */
  private async insertChecked(row: Row): Promise<void> {
    await this.checkUnique(row, null);
    const key = this.layout.rowKey(row);
    await this.insertStored(row, key, this.indexKeys(row));
  }

  private async insertStored(row: Row, key: Buffer, indexKeys: readonly Buffer[]): Promise<void> {
    const result = await this.mutate(() => this.rows.put(key, this.layout.codec.encode(row), 'insert'));
    if (result === 'exists') throw this.duplicateKey(row);
    await this.mutate(() => this.addIndexEntries(indexKeys));
    this.rowDelta++;
  }

  private duplicateKey(row: Row): ModelVaultError {
    return duplicate(this.layout.meta.name, 'primary key', this.layout.meta.primaryKey.map((f) => row[f]));
  }

  async put(input: unknown): Promise<void> {
    const row = this.validateRow(input);
    const key = this.layout.rowKey(row);
    const old = await this.layout.get(this.etx, key);
    await this.checkUnique(row, old ? key : null);
    const indexKeys = this.indexKeys(row);
    await this.mutate(async () => {
      await this.rows.put(key, this.layout.codec.encode(row), 'upsert');
      if (old) await this.replaceIndexEntries(old, indexKeys);
      else await this.addIndexEntries(indexKeys);
    });
    if (!old) this.rowDelta++;
  }

  async update(pk: unknown, patch: unknown): Promise<boolean> {
    const key = this.layout.keyFromArgument(pk);
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) throw validationError('', 'patch must be an object');
    const checked = validateShape(this.layout.meta.fields, patch, '', 'patch');
    const old = await this.layout.get(this.etx, key);
    if (!old) return false;
    const row: Row = { ...old, ...checked };
    for (const [field, value] of Object.entries(patch as Row)) {
      if (value !== undefined) continue;
      const spec = this.layout.meta.fields[field];
      if (!spec.optional) throw validationError(field, 'a required field cannot be removed');
      delete row[field];
    }
    for (const f of this.layout.meta.primaryKey) {
      if (this.layout.rowKey({ [f]: row[f] }).compare(this.layout.rowKey({ [f]: old[f] })) !== 0) {
        throw validationError(f, 'a primary key field cannot be changed by update; delete and insert instead');
      }
    }
    await this.checkUnique(row, key);
    const indexKeys = this.indexKeys(row);
    await this.mutate(async () => {
      await this.rows.put(key, this.layout.codec.encode(row), 'update');
      await this.replaceIndexEntries(old, indexKeys);
    });
    return true;
  }

  async delete(pk: unknown): Promise<boolean> {
    const key = this.layout.keyFromArgument(pk);
    const old = await this.layout.get(this.etx, key);
    if (!old) return false;
    await this.mutate(async () => {
      await this.rows.delete(key);
      for (const ix of this.indexes) await ix.tree.delete(this.layout.indexKey(ix.meta, old));
    });
    this.rowDelta--;
    return true;
  }

  /** Unique indexes: no other row may hold the same non-null values. */
  private async checkUnique(row: Row, ownKey: Buffer | null): Promise<void> {
    for (const ix of this.indexes) {
      if (!ix.meta.unique) continue;
      const parts = this.layout.indexParts(ix.meta, row);
      if (parts.some((p) => p === null)) continue; // absent values are not unique-constrained
      const own = ownKey ? this.layout.indexKey(ix.meta, row) : null;
      let bounds;
      try {
        bounds = prefixBounds(parts);
      } catch (err) {
        throw namedKeyError(err, ix.meta.fields, `index ${ix.meta.name}`);
      }
      for await (const slice of this.etx.slices(ix.meta.tree, bounds)) {
        for (let i = slice.start; i < slice.end; i++) {
          if (own && slice.leaf.key(i).equals(own)) continue;
          throw duplicate(this.layout.meta.name, `unique index ${ix.meta.name}`, parts);
        }
      }
    }
  }

  /** The row's key in every index, in index order, each checked against the key size limit. */
  private indexKeys(row: Row): Buffer[] {
    return this.indexes.map((ix) => {
      const key = this.layout.indexKey(ix.meta, row);
      this.checkKeySize(ix.tree, key, row, [...ix.meta.fields, ...this.layout.meta.primaryKey], `index ${ix.meta.name}`);
      return key;
    });
  }

  /** The tree's key size limit, its error naming the field with the longest value. */
  private checkKeySize(tree: BTreeWriter, key: Buffer, row: Row, fields: readonly string[], keyOf: string): void {
    try {
      tree.checkKey(key);
    } catch (err) {
      const size = (f: string) => (typeof row[f] === 'string' ? Buffer.byteLength(row[f] as string) : 0);
      const longest = fields.reduce((a, b) => (size(b) > size(a) ? b : a));
      throw validationError(longest, `${(err as Error).message}, so the row cannot be a key of ${keyOf} (${fields.join(', ')})`);
    }
  }

  /**
   * Bulk mode (insertMany): each (non-unique) index's entries of the whole load are sorted
   * externally (KeySorter: bounded memory, runs in spill pages) and put in key order at the
   * end, one ascending stream per index, appended to the rightmost leaf when the index starts
   * empty. Random-order puts during the load would instead touch every leaf of the index over
   * and over and hold them all modified in memory.
   */
  beginBulk(): void {
    if (this.indexes.length > 0 && !this.hasUnique) {
      this.pending = this.indexes.map((ix) => new KeySorter(this.etx.engine.spill, `index ${ix.meta.name} of ${this.layout.meta.name}`));
    }
  }

  /** Puts the collected index entries; must run before anything reads the indexes. */
  async endBulk(): Promise<void> {
    const pending = this.pending;
    if (!pending) return;
    this.pending = null;
    try {
      for (let i = 0; i < pending.length; i++) await this.indexes[i].tree.putSortedKeys(pending[i].sortedChunks());
    } catch (err) {
      this.etx.poisoned ??= err as Error;
      throw err;
    } finally {
      for (const sorter of pending) sorter.drop();
    }
  }

  /** Drops collected entries (the transaction failed and can only roll back). */
  abandonBulk(): void {
    for (const sorter of this.pending ?? []) sorter.drop();
    this.pending = null;
  }

  private deferIndexEntries(keys: readonly Buffer[]): Promise<void> | null {
    let spilling: Promise<void>[] | null = null;
    for (let i = 0; i < keys.length; i++) {
      const written = this.pending![i].add(keys[i]);
      if (written) (spilling ??= []).push(written);
    }
    this.rowDelta++;
    if (spilling) return Promise.all(spilling).then(() => this.etx.maybeFlush());
    return this.etx.needsFlush ? this.etx.maybeFlush() : null;
  }

  private addIndexEntriesSync(keys: readonly Buffer[]): void {
    for (let i = 0; i < this.indexes.length; i++) this.indexes[i].tree.putPackedSync(keys[i], emptyPackedRow(), 'upsert');
  }

  private async addIndexEntries(keys: readonly Buffer[]): Promise<void> {
    for (let i = 0; i < this.indexes.length; i++) await this.indexes[i].tree.put(keys[i], [], 'upsert');
  }

  private async replaceIndexEntries(old: Row, keys: readonly Buffer[]): Promise<void> {
    for (let i = 0; i < this.indexes.length; i++) {
      const ix = this.indexes[i];
      const before = this.layout.indexKey(ix.meta, old), after = keys[i];
      if (before.equals(after)) continue;
      await ix.tree.delete(before);
      await ix.tree.put(after, [], 'upsert');
    }
  }

  /**
   * Runs a change; if it fails halfway the transaction is poisoned and can only roll back.
   * Afterwards modified pages over the budget are written out, so a transaction of many
   * single writes stays bounded in memory too.
   */
  private async mutate<T>(fn: () => Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await fn();
    } catch (err) {
      this.etx.poisoned ??= err as Error;
      throw err;
    }
    await this.etx.maybeFlush();
    return result;
  }
}

function duplicate(collection: string, what: string, values: unknown[]): ModelVaultError {
  const shown = values.map((v) => (v instanceof Date ? v.toISOString() : typeof v === 'bigint' ? `${v}n` : JSON.stringify(v))).join(', ');
  return new ModelVaultError('DUPLICATE_KEY', `${collection}: ${what} already holds (${shown})`, { collection, index: what });
}
