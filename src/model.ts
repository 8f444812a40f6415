// `model()`: a named shape with a primary key and indexes, checked once when defined.
import { ModelVaultError } from '../storage/errors.js';
import type { Constraints, FieldKind, FieldSpec, InferInputShape, InferShape, Shape } from './types.js';
import { validateValue } from './validate.js';

export interface IndexDefinition<F extends string = string> {
  readonly name: string;
  readonly fields: readonly F[];
  readonly unique?: boolean;
}

export interface ModelOptions<S extends Shape> {
  readonly primaryKey: (keyof S & string) | readonly (keyof S & string)[];
  readonly indexes?: readonly IndexDefinition<keyof S & string>[];
}

/** Field kinds that can be part of a primary or index key. */
export const KEY_KINDS: ReadonlySet<FieldKind> = new Set(['int', 'bigint', 'float', 'string', 'bool', 'timestamp', 'uuid', 'enum']);

const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
const RESERVED_FIELDS = new Set(['__proto__', 'constructor', 'prototype']);

export class Model<S extends Shape = Shape, Name extends string = string> {
  declare readonly __row: InferShape<S>;
  declare readonly __input: InferInputShape<S>;
  readonly fields: Readonly<Record<string, FieldSpec>>;
  readonly primaryKey: readonly string[];
  readonly indexes: readonly { name: string; fields: readonly string[]; unique: boolean }[];

  /** `stored`: a schema read back from a file, whose fields were checked when first defined. */
  constructor(readonly name: Name, readonly shape: S, options: ModelOptions<S>, stored = false) {
    if (typeof name !== 'string' || !NAME_PATTERN.test(name) || name.length > 128) {
      throw invalid('name', `model name must match ${NAME_PATTERN} (got ${String(name)})`);
    }
    if (!shape || typeof shape !== 'object') throw invalid('shape', 'model shape must be an object of t.* fields');
    const fields: Record<string, FieldSpec> = Object.create(null);
    for (const [field, type] of Object.entries(shape)) checkField(field, type?.spec, field, fields, !stored);
    this.fields = fields;
    if (options?.primaryKey === undefined) throw invalid('primaryKey', 'a model needs a primaryKey: a field name, or an array of them');
    const pk = Array.isArray(options.primaryKey) ? [...options.primaryKey] : [options.primaryKey as string];
    if (pk.length === 0) throw invalid('primaryKey', 'a primary key needs at least one field');
    for (const f of pk) checkKeyField(fields, f, 'primaryKey', true);
    this.primaryKey = pk;
    const names = new Set<string>();
    this.indexes = (options.indexes ?? []).map((ix, i) => {
      if (!ix || typeof ix.name !== 'string' || !NAME_PATTERN.test(ix.name)) throw invalid(`indexes.${i}.name`, 'index name must be an identifier');
      if (names.has(ix.name)) throw invalid(`indexes.${i}.name`, `index ${ix.name} is defined twice`);
      names.add(ix.name);
      if (!Array.isArray(ix.fields) || ix.fields.length === 0) throw invalid(`indexes.${i}.fields`, 'an index needs at least one field');
      for (const f of ix.fields) checkKeyField(fields, f, `indexes.${i}.fields`, false);
      return { name: ix.name, fields: [...ix.fields], unique: ix.unique === true };
    });
  }
}

function invalid(path: string, message: string): ModelVaultError {
  return new ModelVaultError('VALIDATION', message, { path });
}

function checkField(field: string, spec: FieldSpec | undefined, path: string, into: Record<string, FieldSpec>, checkSpec: boolean): void {
  if (!NAME_PATTERN.test(field) || RESERVED_FIELDS.has(field)) throw invalid(path, `field name ${JSON.stringify(field)} is not allowed`);
  if (!spec || typeof spec.kind !== 'string') throw invalid(path, `field ${path} must be a t.* type`);
  if (checkSpec) checkFieldSpec(spec, path);
  if (spec.kind === 'object') for (const [k, s] of Object.entries(spec.shape ?? {})) checkField(k, s, `${path}.${k}`, {}, checkSpec);
  into[field] = spec;
}

const NUMERIC: readonly FieldKind[] = ['int', 'bigint', 'float', 'timestamp'];
const LENGTHS: readonly FieldKind[] = ['string', 'bytes', 'list'];
const CONSTRAINT_KINDS: Record<keyof Constraints, readonly FieldKind[]> = {
  min: NUMERIC, max: NUMERIC, minLength: LENGTHS, maxLength: LENGTHS, nonEmpty: LENGTHS, regex: ['string'], email: ['string'], url: ['string'],
};

/**
 * A field no value could satisfy, or a constraint its kind ignores, is an error where the model
 * is defined, not a VALIDATION on every write (or, for a constraint that does not apply, never).
 */
function checkFieldSpec(spec: FieldSpec, path: string): void {
  const bad = (message: string) => invalid(path, `${path}: ${message}`);
  const c = spec.constraints;
  for (const name of Object.keys(c) as (keyof Constraints)[]) {
    if (c[name] === undefined || CONSTRAINT_KINDS[name] === undefined) continue;
    if (!CONSTRAINT_KINDS[name].includes(spec.kind)) throw bad(`${name}() does not apply to ${/^[aeiou]/.test(spec.kind) ? 'an' : 'a'} ${spec.kind} field`);
  }
  for (const name of ['min', 'max'] as const) {
    if (c[name] !== undefined && (typeof c[name] !== 'number' || Number.isNaN(c[name]))) throw bad(`${name}() needs a number or a Date`);
  }
  for (const name of ['minLength', 'maxLength'] as const) {
    if (c[name] !== undefined && !(Number.isSafeInteger(c[name]) && c[name]! >= 0)) throw bad(`${name}() needs a non-negative integer`);
  }
  if (c.min !== undefined && c.max !== undefined && c.min > c.max) throw bad(`min ${c.min} is above max ${c.max}: no value could be stored`);
  if (c.minLength !== undefined && c.maxLength !== undefined && c.minLength > c.maxLength) {
    throw bad(`minLength ${c.minLength} is above maxLength ${c.maxLength}: no value could be stored`);
  }
  if (spec.kind === 'enum') {
    const values = spec.values;
    if (!Array.isArray(values) || values.length === 0) throw bad('t.enum() needs at least one value');
    if (values.some((v) => typeof v !== 'string')) throw bad('t.enum() values must be strings');
    if (new Set(values).size !== values.length) throw bad('t.enum() lists a value twice');
  }
  if (spec.kind === 'list') {
    if (!spec.element || typeof spec.element.kind !== 'string') throw bad('t.list() needs a t.* element type');
    checkFieldSpec(spec.element, `${path}.*`);
  }
  if (spec.hasDefault) {
    if (spec.defaultValue === undefined) throw bad('default(undefined) is no default: use optional()');
    try {
      validateValue(spec, spec.defaultValue, path);
    } catch (err) {
      throw bad(`its default is not a valid value (${(err as Error).message})`);
    }
  }
}

function checkKeyField(fields: Record<string, FieldSpec>, f: string, path: string, required: boolean): void {
  const spec = fields[f];
  if (!spec) throw invalid(path, `unknown field ${f}`);
  if (!KEY_KINDS.has(spec.kind)) throw invalid(path, `field ${f} of type ${spec.kind} cannot be part of a key`);
  if (required && (spec.optional || spec.hasDefault && spec.optional)) throw invalid(path, `primary key field ${f} cannot be optional`);
}

/**
 * Defines a model: a collection name, its fields, primary key and indexes.
 * @example const Users = model('users', { id: t.int(), name: t.string() }, { primaryKey: 'id' });
 */
export function model<const Name extends string, S extends Shape>(name: Name, shape: S, options: ModelOptions<S>): Model<S, Name> {
  return new Model(name, shape, options);
}

/** The row type of a model. */
export type Infer<M> = M extends Model<infer S, any> ? InferShape<S> : never;
/** What writes accept: fields with defaults may be left out. */
export type InferInput<M> = M extends Model<infer S, any> ? InferInputShape<S> : never;

/** True for a Model, also one created by another copy of this package (a user's model module). */
export function isModelLike(x: unknown): x is Model {
  if (x instanceof Model) return true;
  const m = x as Partial<Model> | null;
  return !!m && typeof m === 'object' && typeof m.name === 'string' && !!m.shape && typeof m.shape === 'object' && Array.isArray(m.primaryKey) && Array.isArray(m.indexes);
}

/** The same model as an instance of this copy's class. */
export function asModel(x: unknown): Model {
  if (x instanceof Model) return x;
  if (!isModelLike(x)) throw new ModelVaultError('VALIDATION', 'expected a model made with model()', { path: 'model' });
  return new Model(x.name, x.shape, { primaryKey: [...x.primaryKey], indexes: x.indexes.map((ix) => ({ ...ix })) });
}
