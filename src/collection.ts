// A collection handle: the public write and point-read API of API.md, running in a scope
// (autocommit, or a transaction).
import { EngineSnapshot, EngineTxn, type TreeReader } from '../storage/engine.js';
import { ModelVaultError } from '../storage/errors.js';
import type { KeyPart } from '../storage/keys.js';
import { decodeMeta, metaName, readRowCount } from './catalog.js';
import { CollectionLayout, CollectionWriter } from './collection-writer.js';
import type { Infer, InferInput, Model } from './model.js';
import type { Scope } from './scope.js';
import { Query, emptyState, type QueryHost } from './query.js';

/** A key argument: the value of a single-field key, or an array for a composite one. */
export type KeyOf<M extends Model> = M extends Model ? Exclude<KeyPart, null> | readonly Exclude<KeyPart, null>[] : never;

export type RowSource<T> = Iterable<T> | AsyncIterable<T>;

export class Collection<M extends Model = Model> {
  private cachedLayout: { bytes: Uint8Array; layout: CollectionLayout; generation: number } | null = null;

  /** @internal */
  readonly scope: Scope;

  constructor(
    /** @internal */ readonly host: QueryHost,
    readonly model: M,
  ) {
    this.scope = host.scope;
  }

  /**
   * A query over this collection; nothing runs until it is iterated.
   * @example for await (const o of orders.query().where('qty', '>', 2).orderBy('amount', 'desc').limit(10)) console.log(o);
   */
  query(): Query<Infer<M>> {
    return new Query<Infer<M>>(this.host, emptyState(this.model));
  }

  get name(): string { return this.model.name; }

  /**
   * Inserts a row; `DUPLICATE_KEY` when the primary key or a unique index value exists.
   * @example await orders.insert({ id: 1, userId: 7, category: 'books', amount: 9.5, qty: 1, ts: new Date(), tags: [] });
   */
  insert(row: InferInput<M>): Promise<void> {
    return this.scope.write(async (etx) => (await CollectionWriter.open(etx, this.name)).insert(row));
  }

  /**
   * Inserts or replaces the row with the same primary key.
   * @example await orders.put({ ...order, qty: 2 });
   */
  put(row: InferInput<M>): Promise<void> {
    return this.scope.write(async (etx) => (await CollectionWriter.open(etx, this.name)).put(row));
  }

  /**
   * Inserts every row of an array, iterable, async iterable or Node readable stream in one
   * transaction; pages are written out as they fill, so memory stays bounded. All or nothing.
   * @example await orders.insertMany(generateOrders(1_000_000));
   */
  insertMany(rows: RowSource<InferInput<M>>): Promise<number> {
    if (rows === null || typeof rows !== 'object' || (!(Symbol.iterator in rows) && !(Symbol.asyncIterator in rows))) {
      return Promise.reject(new ModelVaultError('VALIDATION', 'insertMany needs an array, an iterable, an async iterable or a readable stream', { path: 'rows' }));
    }
    return this.scope.write(async (etx) => {
      const writer = await CollectionWriter.open(etx, this.name);
      let n = 0;
      const failed = (err: unknown): never => {
        // All or nothing even inside db.transaction(): the rows before this one cannot be
        // taken back one by one, so the transaction may only roll back now.
        etx.poisoned ??= err as Error;
        if (err instanceof ModelVaultError && err.code === 'VALIDATION') {
          throw new ModelVaultError('VALIDATION', `row ${n}: ${err.message}`, { ...err.details, row: n }, { cause: err });
        }
        throw err;
      };
      // Synchronous for each row that needs no waiting; the promise of the rest otherwise.
      const step = (row: unknown): Promise<void> | null => {
        try {
          const pending = writer.insertNow(row);
          if (pending) return pending.then(() => { n++; }, failed);
        } catch (err) {
          failed(err);
        }
        n++;
        return null;
      };
      writer.beginBulk();
      try {
        if (Symbol.iterator in rows) {
          // Arrays and generators: no await per row, only where the writer has to wait.
          for (const row of rows as Iterable<unknown>) {
            const pending = step(row);
            if (pending) await pending;
          }
        } else {
          for await (const row of rows as AsyncIterable<unknown>) {
            const pending = step(row);
            if (pending) await pending;
          }
        }
        await writer.endBulk();
      } finally {
        writer.abandonBulk();
      }
      return n;
    });
  }

  /**
   * The row with this primary key (an array for a composite key), or undefined.
   * @example const order = await orders.get(42);
   */
  get(key: KeyOf<M>): Promise<Infer<M> | undefined> {
    // Outside a transaction a get never needs to wait: it runs synchronously on the newest
    // commit (a cache miss reads its page with a synchronous pread, as lmdb-js and SQLite do).
    let reader: TreeReader | null;
    try {
      reader = this.scope.syncReader();
      if (reader) {
        const layout = this.layoutSync(reader);
        return Promise.resolve(layout.getSync(reader, layout.keyFromArgument(key)) as Infer<M> | undefined);
      }
    } catch (err) {
      return Promise.reject(err);
    }
    return this.scope.read(async (reader) => {
      const layout = await this.layout(reader);
      return (await layout.get(reader, layout.keyFromArgument(key))) as Infer<M> | undefined;
    });
  }

  /**
   * Applies a patch to the row with this key; false when there is none. A field set to
   * `undefined` is removed (optional fields only).
   * @example await orders.update(42, { qty: 3 });
   */
  update(key: KeyOf<M>, patch: Partial<InferInput<M>>): Promise<boolean> {
    return this.scope.write(async (etx) => (await CollectionWriter.open(etx, this.name)).update(key, patch));
  }

  /**
   * Deletes the row with this key; false when there is none.
   * @example await orders.delete(42);
   */
  delete(key: KeyOf<M>): Promise<boolean> {
    return this.scope.write(async (etx) => (await CollectionWriter.open(etx, this.name)).delete(key));
  }

  /**
   * Number of rows (kept in the catalog, so this reads no data pages).
   * @example const n = await orders.count();
   */
  count(): Promise<number> {
    return this.scope.read(async (reader) => {
      await this.layout(reader);
      const pending = reader instanceof EngineTxn ? (await CollectionWriter.open(reader, this.name)).pendingRowDelta : 0;
      return (await readRowCount(reader, this.name)) + pending;
    });
  }

  /** @internal The layout of the schema `reader` sees; decoded again only when the schema entry changed. */
  async layout(reader: TreeReader): Promise<CollectionLayout> {
    const generation = reader instanceof EngineSnapshot ? reader.generation : -1;
    if (generation >= 0 && this.cachedLayout?.generation === generation) return this.cachedLayout.layout;
    return this.layoutFrom(await reader.getMeta(metaName(this.name)), generation);
  }

  private layoutSync(reader: TreeReader): CollectionLayout {
    const generation = reader instanceof EngineSnapshot ? reader.generation : -1;
    if (generation >= 0 && this.cachedLayout?.generation === generation) return this.cachedLayout.layout;
    return this.layoutFrom(reader.getMetaSync(metaName(this.name)), generation);
  }

  private layoutFrom(bytes: Uint8Array | undefined, generation: number): CollectionLayout {
    if (!bytes) throw unknownCollection(this.name);
    const cached = this.cachedLayout;
    if (cached && Buffer.from(cached.bytes).equals(bytes)) {
      cached.generation = generation;
      return cached.layout;
    }
    const layout = new CollectionLayout(decodeMeta(bytes, this.name));
    this.cachedLayout = { bytes: Buffer.from(bytes), layout, generation };
    return layout;
  }
}

export const unknownCollection = (name: string) =>
  new ModelVaultError('UNKNOWN_COLLECTION', `collection ${name} is not registered`, { collection: name });
