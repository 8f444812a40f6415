// Validation of every write against the model: types, required fields, unknown fields and
// constraints. It builds a fresh row holding only schema fields, so input keys such as
// `__proto__` are rejected as unknown and never reach a prototype.
import { ModelVaultError } from '../storage/errors.js';
import type { FieldSpec } from './types.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const MAX_JSON_DEPTH = 256;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** String.prototype.isWellFormed (V8 11.3+) where present, else the regular expression. */
const isWellFormed: (s: string) => boolean = typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === 'function'
  ? (s) => (s as unknown as { isWellFormed(): boolean }).isWellFormed()
  : (s) => !LONE_SURROGATE.test(s);
const INT64_MIN = -(2n ** 63n), INT64_MAX = 2n ** 63n - 1n;

export function validationError(path: string, message: string): ModelVaultError {
  return new ModelVaultError('VALIDATION', path ? `${path}: ${message}` : message, { path });
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return 'a Date';
  if (v instanceof Uint8Array) return 'bytes';
  if (typeof v !== 'object') return `a ${typeof v}`;
  const kind = classOf(v);
  return kind ? `an instance of ${kind}` : 'an object';
}

/** The class name of a non-plain object ('Map', 'Set', a user's class), or '' (hostile objects included). */
function classOf(v: object): string {
  try {
    const ctor = (Object.getPrototypeOf(v) as { constructor?: unknown } | null)?.constructor;
    const name = typeof ctor === 'function' ? ctor.name : '';
    return typeof name === 'string' && name !== 'Object' && /^[\w$]{1,40}$/.test(name) ? name : '';
  } catch {
    return '';
  }
}

/**
 * A misspelt option would otherwise be ignored without a word (a `memorylimit` that limits
 * nothing): every key must be one of `known`, or of `internal` (accepted, not advertised).
 */
export function refuseUnknownOptions(opts: object, known: readonly string[], internal: readonly string[] = []): void {
  for (const key of Object.keys(opts)) {
    if (known.includes(key) || internal.includes(key)) continue;
    const near = known.find((k) => k.toLowerCase() === key.toLowerCase());
    throw new ModelVaultError('VALIDATION', `unknown option ${JSON.stringify(key)}${near ? ` (did you mean ${near}?)` : ''}; the options are ${known.join(', ')}`, { path: key });
  }
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Checks one value against its spec (present value: not undefined) and returns the value to store. */
export function validateValue(spec: FieldSpec, v: unknown, path: string): unknown {
  const c = spec.constraints;
  switch (spec.kind) {
    case 'int':
      if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw validationError(path, `expected a safe integer, got ${typeof v === 'number' ? v : describe(v)}`);
      checkRange(c, v, path);
      return v;
    case 'float':
      if (typeof v !== 'number') throw validationError(path, `expected a number, got ${describe(v)}`);
      if (!Number.isNaN(v)) checkRange(c, v, path);
      return v;
    case 'bigint':
      if (typeof v !== 'bigint') throw validationError(path, `expected a bigint, got ${describe(v)}`);
      if (v < INT64_MIN || v > INT64_MAX) throw validationError(path, 'bigint does not fit in 64 bits');
      if (c.min !== undefined && v < BigInt(Math.ceil(c.min))) throw validationError(path, `must be >= ${c.min}`);
      if (c.max !== undefined && v > BigInt(Math.floor(c.max))) throw validationError(path, `must be <= ${c.max}`);
      return v;
    case 'bool':
      if (typeof v !== 'boolean') throw validationError(path, `expected a boolean, got ${describe(v)}`);
      return v;
    case 'timestamp': {
      if (!(v instanceof Date)) throw validationError(path, `expected a Date, got ${describe(v)}`);
      const ms = v.getTime();
      if (Number.isNaN(ms)) throw validationError(path, 'invalid Date');
      checkRange(c, ms, path);
      return new Date(ms);
    }
    case 'string':
      if (typeof v !== 'string') throw validationError(path, `expected a string, got ${describe(v)}`);
      if (!isWellFormed(v)) throw validationError(path, 'contains a lone UTF-16 surrogate, which UTF-8 cannot store');
      checkLength(c, v.length, path);
      if (c.regex && !new RegExp(c.regex.source, c.regex.flags).test(v)) throw validationError(path, `does not match /${c.regex.source}/`);
      if (c.email && !EMAIL.test(v)) throw validationError(path, 'not an email address');
      if (c.url && !isUrl(v)) throw validationError(path, 'not a URL');
      return v;
    case 'uuid':
      if (typeof v !== 'string' || !UUID.test(v)) throw validationError(path, `expected a UUID string, got ${typeof v === 'string' ? JSON.stringify(v.slice(0, 40)) : describe(v)}`);
      return v.toLowerCase();
    case 'enum':
      if (typeof v !== 'string' || !spec.values!.includes(v)) throw validationError(path, `expected one of ${spec.values!.join(', ')}`);
      return v;
    case 'bytes':
      if (!(v instanceof Uint8Array)) throw validationError(path, `expected a Uint8Array, got ${describe(v)}`);
      checkLength(c, v.byteLength, path);
      return new Uint8Array(v);
    case 'list': {
      if (!Array.isArray(v)) throw validationError(path, `expected an array, got ${describe(v)}`);
      checkLength(c, v.length, path);
      const out = new Array(v.length);
      for (let i = 0; i < v.length; i++) {
        if (v[i] === undefined) throw validationError(`${path}.${i}`, 'list items cannot be undefined');
        out[i] = validateValue(spec.element!, v[i], `${path}.${i}`);
      }
      return out;
    }
    case 'object':
      if (!isPlainObject(v)) throw validationError(path, `expected an object, got ${describe(v)}`);
      return validateShape(spec.shape!, v, path, 'insert');
    case 'json':
      checkJson(v, path, 0);
      return v;
  }
}

/**
 * Validates a whole object against a shape. `insert` applies defaults and requires every
 * required field; `patch` checks only the fields present.
 */
export function validateShape(shape: Readonly<Record<string, FieldSpec>>, input: unknown, path: string, mode: 'insert' | 'patch'): Record<string, unknown> {
  if (!isPlainObject(input)) throw validationError(path, `expected an object, got ${describe(input)}`);
  const { names, specs } = entriesOf(shape);
  // Every own key must be a field (for...in lists own `__proto__` keys too, as JSON.parse makes them).
  for (const key in input) {
    if (hasOwn.call(input, key) && !hasOwn.call(shape, key)) throw validationError(join(path, key), 'unknown field');
  }
  const out: Record<string, unknown> = {};
  for (let f = 0; f < names.length; f++) {
    const field = names[f], spec = specs[f];
    const v = hasOwn.call(input, field) ? input[field] : undefined;
    if (v === undefined) {
      if (mode === 'patch') continue;
      if (spec.hasDefault) out[field] = validateValue(spec, structuredClone(spec.defaultValue), join(path, field));
      else if (!spec.optional) throw validationError(join(path, field), 'required field is missing');
      continue;
    }
    if (v === null && spec.optional && spec.kind !== 'json') throw validationError(join(path, field), 'null is not a value: leave an optional field out instead');
    out[field] = validateValue(spec, v, path ? `${path}.${field}` : field);
  }
  return out;
}

const hasOwn = Object.prototype.hasOwnProperty;

/** Field names an object literal may carry as plain keys (model() refuses the others). */
const SAFE_NAME = /^[A-Za-z_$][\w$]*$/;
const UNSAFE_NAMES = new Set(['__proto__', 'constructor', 'prototype']);
const compiledInserts = new WeakMap<object, (input: unknown) => Record<string, unknown>>();

/**
 * `validateShape(shape, input, '', 'insert')` compiled once per shape: the type checks of
 * unconstrained ints, floats, strings, booleans and timestamps inline, the row built as one
 * object literal (one hidden class for every row), everything else and every failure through
 * validateValue, so results and errors are validateShape's. Absent optional fields are
 * undefined properties instead of missing ones.
 */
export function insertValidator(shape: Readonly<Record<string, FieldSpec>>): (input: unknown) => Record<string, unknown> {
  let fn = compiledInserts.get(shape);
  if (fn) return fn;
  const { names, specs } = entriesOf(shape);
  if (names.some((n) => !SAFE_NAME.test(n) || UNSAFE_NAMES.has(n))) {
    fn = (input) => validateShape(shape, input, '', 'insert');
  } else {
    const lines: string[] = [
      'if (!isPlainObject(input)) return validateShape(shape, input, "", "insert");',
      'for (const key in input) if (hasOwn.call(input, key) && !hasOwn.call(shape, key)) throw validationError(key, "unknown field");',
    ];
    specs.forEach((spec, i) => {
      const name = JSON.stringify(names[i]);
      const general = `v${i} = validateValue(specs[${i}], v${i}, ${name});`;
      lines.push(`let v${i} = hasOwn.call(input, ${name}) ? input[${name}] : undefined;`);
      const missing = spec.hasDefault ? `v${i} = validateValue(specs[${i}], structuredClone(specs[${i}].defaultValue), ${name});`
        : spec.optional ? '' : `throw validationError(${name}, "required field is missing");`;
      const nullRefused = spec.optional && spec.kind !== 'json'
        ? `if (v${i} === null) throw validationError(${name}, "null is not a value: leave an optional field out instead");` : '';
      const plain = Object.values(spec.constraints).every((c) => c === undefined);
      let check = general;
      if (plain && spec.kind === 'int') check = `if (typeof v${i} !== "number" || !Number.isSafeInteger(v${i})) ${general}`;
      else if (plain && spec.kind === 'float') check = `if (typeof v${i} !== "number") ${general}`;
      else if (plain && spec.kind === 'string') check = `if (typeof v${i} !== "string" || !isWellFormed(v${i})) ${general}`;
      else if (plain && spec.kind === 'bool') check = `if (typeof v${i} !== "boolean") ${general}`;
      else if (plain && spec.kind === 'timestamp') check = `if (v${i} instanceof Date && v${i}.getTime() === v${i}.getTime()) v${i} = new Date(v${i}.getTime()); else ${general}`;
      lines.push(`if (v${i} === undefined) { ${missing} } else { ${nullRefused} ${check} }`);
    });
    lines.push(`return { ${names.map((n, i) => `${n}: v${i}`).join(', ')} };`);
    const make = new Function('shape', 'specs', 'hasOwn', 'isPlainObject', 'isWellFormed', 'validateShape', 'validateValue', 'validationError',
      `return function validateRow(input) {\n${lines.join('\n')}\n};`);
    fn = make(shape, specs, hasOwn, isPlainObject, isWellFormed, validateShape, validateValue, validationError) as (input: unknown) => Record<string, unknown>;
  }
  compiledInserts.set(shape, fn);
  return fn;
}

const shapeEntries = new WeakMap<object, { names: string[]; specs: FieldSpec[] }>();
function entriesOf(shape: Readonly<Record<string, FieldSpec>>): { names: string[]; specs: FieldSpec[] } {
  let entries = shapeEntries.get(shape);
  if (!entries) {
    const names = Object.keys(shape);
    shapeEntries.set(shape, (entries = { names, specs: names.map((n) => shape[n]) }));
  }
  return entries;
}

const join = (path: string, key: string) => (path ? `${path}.${key}` : key);

function checkRange(c: FieldSpec['constraints'], v: number, path: string): void {
  if (c.min !== undefined && v < c.min) throw validationError(path, `must be >= ${c.min}`);
  if (c.max !== undefined && v > c.max) throw validationError(path, `must be <= ${c.max}`);
}

function checkLength(c: FieldSpec['constraints'], n: number, path: string): void {
  if (c.nonEmpty && n === 0) throw validationError(path, 'must not be empty');
  if (c.minLength !== undefined && n < c.minLength) throw validationError(path, `length must be >= ${c.minLength}`);
  if (c.maxLength !== undefined && n > c.maxLength) throw validationError(path, `length must be <= ${c.maxLength}`);
}

function isUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol !== '' && u.host !== '';
  } catch {
    return false;
  }
}

/**
 * json values: msgpack-encodable, bounded depth, no prototype keys. `within` holds the arrays
 * and objects the value sits in, so a cycle is named as one rather than as too deep a nesting.
 */
function checkJson(v: unknown, path: string, depth: number, within: object[] = []): void {
  if (typeof v === 'object' && v !== null && within.includes(v)) throw validationError(path, 'the value contains itself (a cycle)');
  if (depth > MAX_JSON_DEPTH) throw validationError(path, `nesting deeper than ${MAX_JSON_DEPTH} levels`);
  if (v === null || v === undefined || typeof v === 'string' || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'bigint') return;
  if (v instanceof Date) {
    if (Number.isNaN(v.getTime())) throw validationError(path, 'invalid Date');
    return;
  }
  if (v instanceof Uint8Array) return;
  if (Array.isArray(v)) {
    within.push(v);
    for (let i = 0; i < v.length; i++) checkJson(v[i], path, depth + 1, within);
    within.pop();
    return;
  }
  if (isPlainObject(v)) {
    within.push(v);
    for (const key of Object.keys(v)) {
      if (key === '__proto__') throw validationError(join(path, key), 'the key __proto__ is not allowed');
      checkJson(v[key], join(path, key), depth + 1, within);
    }
    within.pop();
    return;
  }
  throw validationError(path, `${describe(v)} cannot be stored in a json field`);
}
