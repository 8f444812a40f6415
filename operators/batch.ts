// Columnar batches: a length and one vector per path the query needs. Numbers and
// timestamps travel as Float64Array (timestamps as epoch ms) with an absent mask; everything
// else as a plain array where `undefined` means absent. Row objects are built only at the edge.
import { dictOf, type DictVector } from './dict-vector.js';
import { pathVector } from './paths.js';

export interface F64Vector {
  readonly kind: 'f64';
  readonly values: Float64Array;
  /** One byte per row, 1 = absent; null when every value is present. */
  readonly absent: Uint8Array | null;
}

export interface AnyVector {
  readonly kind: 'any';
  readonly values: unknown[];
}

export type Vector = F64Vector | AnyVector;

export interface Batch {
  readonly length: number;
  readonly vectors: ReadonlyMap<string, Vector>;
}

export function valueAt(v: Vector, i: number): unknown {
  if (v.kind === 'f64') return v.absent && v.absent[i] ? undefined : v.values[i];
  return v.values[i];
}

/** A new vector holding rows `indices` of `v`, in that order. */
export function gather(v: Vector, indices: ArrayLike<number>, count = indices.length): Vector {
  if (v.kind === 'f64') {
    const values = new Float64Array(count);
    let absent: Uint8Array | null = null;
    for (let k = 0; k < count; k++) {
      const i = indices[k];
      values[k] = v.values[i];
      if (v.absent && v.absent[i]) (absent ??= new Uint8Array(count))[k] = 1;
    }
    return { kind: 'f64', values, absent };
  }
  const values = new Array(count);
  for (let k = 0; k < count; k++) values[k] = v.values[indices[k]];
  const coded = dictOf(v);
  if (coded === null) return { kind: 'any', values };
  // Dictionary codes go along (a filter's survivors still group and test by code).
  const codes = new Int32Array(count);
  for (let k = 0; k < count; k++) codes[k] = coded.codes[indices[k]];
  const out: DictVector = { kind: 'any', values, codes, dict: coded.dict };
  return out;
}

export function gatherBatch(b: Batch, indices: ArrayLike<number>, count = indices.length): Batch {
  const vectors = new Map<string, Vector>();
  for (const [path, v] of b.vectors) vectors.set(path, gather(v, indices, count));
  return { length: count, vectors };
}

export function sliceBatch(b: Batch, from: number, to: number): Batch {
  if (from === 0 && to >= b.length) return b;
  const vectors = new Map<string, Vector>();
  for (const [path, v] of b.vectors) {
    vectors.set(path, v.kind === 'f64'
      ? { kind: 'f64', values: v.values.subarray(from, to), absent: v.absent ? v.absent.subarray(from, to) : null }
      : sliceAny(v, from, to));
  }
  return { length: Math.max(0, Math.min(to, b.length) - from), vectors };
}

function sliceAny(v: AnyVector, from: number, to: number): Vector {
  const values = v.values.slice(from, to);
  const coded = dictOf(v);
  if (coded === null) return { kind: 'any', values };
  const out: DictVector = { kind: 'any', values, codes: coded.codes.subarray(from, to), dict: coded.dict };
  return out;
}

/**
 * Every path any of `batches` carries. Batches of one stream may differ: derived dotted vectors
 * ('meta.score') are cached on a batch only once something asked for them, and a left join's
 * rows without a partner carry no build-side paths at all, only its presence marker.
 */
export function unionPaths(batches: readonly Batch[]): string[] {
  if (batches.length === 1) return [...batches[0].vectors.keys()];
  const paths = new Set<string>();
  for (const b of batches) for (const p of b.vectors.keys()) paths.add(p);
  return [...paths];
}

/**
 * A batch's vector for `path`: its own, else derived from the nearest parent path it carries,
 * else absent values (nothing to derive it from).
 */
export function vectorOf(b: Batch, path: string): Vector {
  const own = b.vectors.get(path);
  if (own) return own;
  for (let p = path, dot = p.lastIndexOf('.'); dot >= 0; p = p.slice(0, dot), dot = p.lastIndexOf('.')) {
    if (b.vectors.has(p.slice(0, dot))) return pathVector(b, path);
  }
  return { kind: 'any', values: new Array(b.length) };
}

/** Concatenates batches; a path some of them lack is derived or absent there (vectorOf). */
export function concatBatches(batches: readonly Batch[]): Batch {
  const length = batches.reduce((n, b) => n + b.length, 0);
  const vectors = new Map<string, Vector>();
  if (batches.length === 0) return { length: 0, vectors };
  for (const path of unionPaths(batches)) {
    const parts = batches.map((b) => vectorOf(b, path));
    if (parts.every((v) => v.kind === 'f64')) {
      const values = new Float64Array(length);
      let absent: Uint8Array | null = null;
      let at = 0;
      for (let k = 0; k < batches.length; k++) {
        const v = parts[k] as F64Vector;
        values.set(v.values.length === batches[k].length ? v.values : v.values.subarray(0, batches[k].length), at);
        if (v.absent) (absent ??= new Uint8Array(length)).set(v.absent.subarray(0, batches[k].length), at);
        at += batches[k].length;
      }
      vectors.set(path, { kind: 'f64', values, absent });
    } else {
      const values: unknown[] = new Array(length);
      let at = 0;
      for (let k = 0; k < batches.length; k++) {
        const v = parts[k], n = batches[k].length;
        for (let i = 0; i < n; i++) values[at + i] = valueAt(v, i);
        at += n;
      }
      vectors.set(path, { kind: 'any', values });
    }
  }
  return { length, vectors };
}

/** Estimated bytes a batch holds: cheap, and honest within a small factor. */
export function batchBytes(b: Batch): number {
  let bytes = 64;
  for (const v of b.vectors.values()) {
    if (v.kind === 'f64') bytes += v.values.byteLength + (v.absent ? v.absent.byteLength : 0);
    else bytes += estimateValues(v.values);
  }
  return bytes;
}


export function estimateValue(x: unknown): number {
  switch (typeof x) {
    case 'string': return 16 + 2 * x.length;
    case 'number': case 'boolean': case 'undefined': return 8;
    case 'bigint': return 24;
    case 'object':
      if (x === null) return 8;
      if (x instanceof Date) return 48;
      if (x instanceof Uint8Array) return 64 + x.byteLength;
      if (Array.isArray(x)) { let n = 32; for (const y of x) n += estimateValue(y); return n; }
      { let n = 48; for (const k in x as Record<string, unknown>) n += 16 + 2 * k.length + estimateValue((x as Record<string, unknown>)[k]); return n; }
    default: return 16;
  }
}

function estimateValues(values: readonly unknown[]): number {
  // Sample at most 64 values so the estimate stays cheap for wide batches.
  const n = values.length;
  if (n === 0) return 0;
  const step = Math.max(1, Math.floor(n / 64));
  let sum = 0, seen = 0;
  for (let i = 0; i < n; i += step) { sum += estimateValue(values[i]); seen++; }
  return 8 * n + Math.ceil((sum / seen) * n);
}
