// The schema catalog, persisted in the file: for each collection its schema version, fields
// (the record structure rows are encoded with), column order, primary key, indexes and the
// trees holding them, and its row count. It lives as metadata entries of the storage catalog.
import { Packr } from 'msgpackr/pack'; // under Node, msgpackr's JS build: its native string extractor is not loaded
import type { TreeReader } from '../storage/engine.js';
import { ModelVaultError } from '../storage/errors.js';
import { Model } from './model.js';
import { FieldType } from './types.js';
import type { FieldSpec } from './types.js';

export interface IndexMeta {
  readonly name: string;
  readonly fields: readonly string[];
  readonly unique: boolean;
  readonly tree: string;
}

export interface CollectionMeta {
  readonly name: string;
  readonly version: number;
  readonly fields: Readonly<Record<string, FieldSpec>>;
  /** Field of each column of the rows tree, in column order; fields added later come last. */
  readonly columns: readonly string[];
  readonly primaryKey: readonly string[];
  readonly indexes: readonly IndexMeta[];
  readonly rowsTree: string;
}

// copyBuffers: a decoded catalog entry (a bytes default value) outlives the page it came from.
const packr = new Packr({ useRecords: false, int64AsType: 'bigint', moreTypes: true, copyBuffers: true });
const META_PREFIX = 'collection:';

export const metaName = (collection: string) => `${META_PREFIX}${collection}`;

/** Row counts live in their own entry, so the schema entry's bytes change only with the schema. */
export const rowCountName = (collection: string) => `rowcount:${collection}`;

export async function readRowCount(reader: TreeReader, collection: string): Promise<number> {
  const bytes = await reader.getMeta(rowCountName(collection));
  if (!bytes) return 0;
  if (bytes.byteLength !== 8) throw new ModelVaultError('CORRUPT', `row count of ${collection} is malformed`, { collection, offset: -1 });
  return Buffer.from(bytes.buffer, bytes.byteOffset, 8).readDoubleLE(0);
}

export function encodeRowCount(n: number): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(n, 0);
  return b;
}

export async function readMeta(reader: TreeReader, collection: string): Promise<CollectionMeta | undefined> {
  const bytes = await reader.getMeta(metaName(collection));
  return bytes ? decodeMeta(bytes, collection) : undefined;
}

export function decodeMeta(bytes: Uint8Array, collection: string): CollectionMeta {
  try {
    const meta = packr.unpack(bytes) as CollectionMeta;
    if (!isMetaShape(meta)) throw new Error('shape');
    return meta;
  } catch (err) {
    throw new ModelVaultError('CORRUPT', `catalog entry of collection ${collection} is unreadable`, { collection, offset: -1 }, { cause: err });
  }
}

const FIELD_KINDS: ReadonlySet<string> = new Set(['int', 'bigint', 'float', 'string', 'bool', 'timestamp', 'uuid', 'bytes', 'json', 'list', 'object', 'enum']);
const isString = (x: unknown): x is string => typeof x === 'string';
const isRecord = (x: unknown): x is Record<string, unknown> => !!x && typeof x === 'object' && !Array.isArray(x);
const has = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

/** A stored field spec that the row codec and validation can use without tripping over it. */
function isSpecShape(spec: unknown, depth: number): boolean {
  if (depth > 64 || !isRecord(spec) || !isString(spec.kind) || !FIELD_KINDS.has(spec.kind)) return false;
  if (typeof spec.optional !== 'boolean' || typeof spec.hasDefault !== 'boolean' || !isRecord(spec.constraints)) return false;
  const re = spec.constraints.regex;
  if (re !== undefined) {
    if (!isRecord(re) || !isString(re.source) || !isString(re.flags)) return false;
    try { new RegExp(re.source, re.flags); } catch { return false; }
  }
  if (spec.kind === 'list' && !isSpecShape(spec.element, depth + 1)) return false;
  if (spec.kind === 'object' && (!isRecord(spec.shape) || !Object.values(spec.shape).every((s) => isSpecShape(s, depth + 1)))) return false;
  if (spec.kind === 'enum' && (!Array.isArray(spec.values) || !spec.values.every(isString))) return false;
  return true;
}

/** The catalog entry's structure: a damaged entry is CORRUPT, not a TypeError later in the row codec. */
function isMetaShape(m: unknown): m is CollectionMeta {
  if (!isRecord(m) || !isString(m.name) || !Number.isSafeInteger(m.version) || !isString(m.rowsTree) || !isRecord(m.fields)) return false;
  const fields = m.fields;
  if (!Object.values(fields).every((s) => isSpecShape(s, 0))) return false;
  const inFields = (f: unknown) => isString(f) && has(fields, f);
  const columns = m.columns;
  if (!Array.isArray(columns) || !columns.every(inFields) || new Set(columns).size !== columns.length) return false;
  if (!Object.keys(fields).every((f) => columns.includes(f))) return false;
  if (!Array.isArray(m.primaryKey) || m.primaryKey.length === 0 || !m.primaryKey.every(inFields)) return false;
  return Array.isArray(m.indexes) && m.indexes.every((ix: unknown) =>
    isRecord(ix) && isString(ix.name) && isString(ix.tree) && typeof ix.unique === 'boolean' && Array.isArray(ix.fields) && ix.fields.every(inFields));
}

export async function listCollections(reader: TreeReader): Promise<CollectionMeta[]> {
  const out: CollectionMeta[] = [];
  for (const name of await reader.names(META_PREFIX)) {
    const meta = await readMeta(reader, name.slice(META_PREFIX.length));
    if (meta) out.push(meta);
  }
  return out;
}

export function encodeMeta(meta: CollectionMeta): Uint8Array {
  return packr.pack(meta);
}

/** The catalog entry for a model registered for the first time. */
export function initialMeta(model: Model): CollectionMeta {
  return {
    name: model.name,
    version: 1,
    fields: { ...model.fields },
    columns: Object.keys(model.fields),
    primaryKey: [...model.primaryKey],
    indexes: model.indexes.map((ix) => ({ ...ix, tree: indexTreeName(model.name, ix.name, 1) })),
    rowsTree: `rows:${model.name}:1`,
  };
}

export const indexTreeName = (collection: string, index: string, version: number) => `index:${collection}:${index}:${version}`;

// ── schema changes ───────────────────────────────────────────────────────────

export type SchemaChange =
  | { kind: 'addField'; field: string; compatible: boolean; reason: string }
  | { kind: 'removeField'; field: string; compatible: false; reason: string }
  | { kind: 'changeField'; field: string; compatible: boolean; reason: string }
  | { kind: 'addIndex'; index: string; compatible: boolean; reason: string }
  | { kind: 'removeIndex'; index: string; compatible: true; reason: string }
  | { kind: 'changeIndex'; index: string; compatible: false; reason: string }
  | { kind: 'changePrimaryKey'; compatible: false; reason: string };

/** Type identity of a spec, ignoring optionality, defaults and constraints. */
function typeSignature(spec: FieldSpec): string {
  switch (spec.kind) {
    case 'list': return `list<${typeSignature(spec.element!)}>`;
    case 'object': return `object{${Object.entries(spec.shape!).map(([k, s]) => `${k}${s.optional ? '?' : ''}:${typeSignature(s)}`).join(',')}}`;
    case 'enum': return `enum(${spec.values!.join('|')})`;
    default: return spec.kind;
  }
}

const sameJson = (a: unknown, b: unknown) => JSON.stringify(a, jsonSafe) === JSON.stringify(b, jsonSafe);
function jsonSafe(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? `${v}n` : v;
}

/** Every difference between the stored schema and a model, each marked compatible or not. */
export function diffSchema(stored: CollectionMeta, model: Model): SchemaChange[] {
  const changes: SchemaChange[] = [];
  if (!sameJson(stored.primaryKey, model.primaryKey)) {
    changes.push({ kind: 'changePrimaryKey', compatible: false, reason: `primary key changes from (${stored.primaryKey.join(', ')}) to (${model.primaryKey.join(', ')})` });
  }
  for (const [field, before] of Object.entries(stored.fields)) {
    const after = model.fields[field];
    if (!after) {
      changes.push({ kind: 'removeField', field, compatible: false, reason: `field ${field} is removed` });
      continue;
    }
    const was = typeSignature(before), now = typeSignature(after);
    if (was !== now) {
      const widenedEnum = before.kind === 'enum' && after.kind === 'enum' && before.values!.every((v) => after.values!.includes(v));
      changes.push({ kind: 'changeField', field, compatible: widenedEnum, reason: widenedEnum ? `enum ${field} gains values` : `field ${field} changes type from ${was} to ${now}` });
    } else if (before.optional && !after.optional && !after.hasDefault) {
      changes.push({ kind: 'changeField', field, compatible: false, reason: `field ${field} becomes required` });
    } else if (!sameJson(before.constraints, after.constraints)) {
      changes.push({ kind: 'changeField', field, compatible: false, reason: `constraints of ${field} change (existing rows must be re-checked)` });
    } else if (before.optional !== after.optional || before.hasDefault !== after.hasDefault || !sameJson(before.defaultValue, after.defaultValue)) {
      changes.push({ kind: 'changeField', field, compatible: true, reason: `optionality or default of ${field} changes` });
    }
  }
  for (const [field, spec] of Object.entries(model.fields)) {
    if (stored.fields[field]) continue;
    const ok = spec.optional || spec.hasDefault;
    changes.push({ kind: 'addField', field, compatible: ok, reason: ok ? `new ${spec.optional ? 'optional ' : ''}field ${field}` : `new required field ${field} needs a backfill value` });
  }
  const storedIx = new Map(stored.indexes.map((ix) => [ix.name, ix]));
  for (const ix of model.indexes) {
    const before = storedIx.get(ix.name);
    if (!before) {
      changes.push({ kind: 'addIndex', index: ix.name, compatible: !ix.unique, reason: ix.unique ? `new unique index ${ix.name} must be built and checked by migrate()` : `new index ${ix.name} is built` });
    } else if (!sameJson(before.fields, ix.fields) || before.unique !== ix.unique) {
      changes.push({ kind: 'changeIndex', index: ix.name, compatible: false, reason: `index ${ix.name} changes definition` });
    }
  }
  for (const ix of stored.indexes) {
    if (!model.indexes.some((m) => m.name === ix.name)) changes.push({ kind: 'removeIndex', index: ix.name, compatible: true, reason: `index ${ix.name} is dropped` });
  }
  return changes;
}

/** A model rebuilt from the stored schema, for tools that open a file without its code (the CLI). */
export function modelFromMeta(meta: CollectionMeta): Model {
  const shape = Object.fromEntries(Object.entries(meta.fields).map(([k, spec]) => [k, new FieldType<unknown>(spec)]));
  return new Model(meta.name, shape, {
    primaryKey: [...meta.primaryKey],
    indexes: meta.indexes.map((ix) => ({ name: ix.name, fields: [...ix.fields], unique: ix.unique })),
  }, true);
}
