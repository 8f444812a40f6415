// The data of crash-matrix.test.ts, shared by the parent that checks files and the child that
// writes them (crash-child.ts): a collection of deterministic documents with a secondary index.
import { model, t, type Infer } from '../../src/index.js';

export const PAGE_SIZE = 16384;

export const Docs = model('docs', {
  id: t.int(),
  grp: t.int(),
  text: t.string(),
  n: t.float(),
}, { primaryKey: 'id', indexes: [{ name: 'byGrp', fields: ['grp'] }] });

export type Doc = Infer<typeof Docs>;

/** The same model with one more non-unique index (over `n`), named per round. */
export function docsWithIndex(name: string) {
  return model('docs', Docs.shape, { primaryKey: 'id', indexes: [{ name: 'byGrp', fields: ['grp'] }, { name, fields: ['n', 'grp'] }] });
}

/** The migrate scenario's target: a new required field (backfilled) with an index over it. */
export const DocsV2 = model('docs', { ...Docs.shape, tag: t.string() }, {
  primaryKey: 'id', indexes: [{ name: 'byGrp', fields: ['grp'] }, { name: 'byTag', fields: ['tag', 'grp'] }],
});
export const MIGRATED_TAG = 'v2';

/** Document `id`: a pure function of the id, so any set of ids has a known content. */
export function doc(id: number): Doc {
  const h = Math.imul(id ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
  return { id, grp: id % 97, text: `doc-${h.toString(36)}-${id}`.padEnd(24 + (h % 60), '.'), n: (h % 100_000) / 10 };
}

/** A lazy stream of documents (never an array: insertMany of it must stay bounded in memory). */
export function* docStream(from: number, count: number): Generator<Doc> {
  for (let id = from; id < from + count; id++) yield doc(id);
}

/** Ids the child inserts one by one in the compact and backup scenarios. */
export const SINGLE_ID_BASE = 10_000_000;
/** Ids of the insertMany stream. */
export const STREAM_ID_BASE = 20_000_000;

/** Rows of the insertMany stream, and the memory limit of the spilling query. */
export const STREAM_ROWS = 200_000;
export const SPILL_MEMORY_LIMIT = 128 * 1024;

/** The insertMany scenario's collection: small rows, a secondary index over a column rising with the key. */
export const Events = model('events', { id: t.int(), v: t.float(), tag: t.string() }, { primaryKey: 'id', indexes: [{ name: 'byV', fields: ['v'] }] });

export function* eventStream(count: number): Generator<Infer<typeof Events>> {
  for (let i = 0; i < count; i++) yield { id: STREAM_ID_BASE + i, v: i * 0.5, tag: `t${i % 1000}` };
}
