// Dictionary codes riding along a plain 'any' vector: `values` stays the full column (so every
// operator that knows nothing of codes keeps working, and drops them when it copies), while
// `codes[i]` indexes `dict`, one entry per distinct value (SameValueZero). The hash join attaches
// codes to low-cardinality build columns once at build time; the hash aggregate then looks each
// distinct value up once per batch instead of hashing a string per row.
import type { AnyVector, Vector } from './batch.js';

export interface DictVector extends AnyVector {
  readonly codes: Int32Array;
  /** The distinct values; codes index it. */
  readonly dict: readonly unknown[];
}

export function dictOf(v: Vector): DictVector | null {
  return v.kind === 'any' && (v as Partial<DictVector>).codes instanceof Int32Array ? (v as DictVector) : null;
}

/**
 * Codes for `values` when they hold at most `maxDistinct` distinct values (and no -0), else null
 * (found out after at most maxDistinct + 1 lookups). dict[codes[i]] is values[i] itself for
 * primitives and the very object for objects. The dict has one extra trailing `undefined` entry,
 * the code gathers use for a missing row (an unmatched left-join row).
 */
export function encodeDict(values: readonly unknown[], maxDistinct: number): { codes: Int32Array; dict: unknown[] } | null {
  const ids = new Map<unknown, number>();
  const dict: unknown[] = [];
  const codes = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    let c = ids.get(x);
    // -0 would share 0's code (SameValueZero), and dict[code] must give back each exact value.
    if (x === 0 && Object.is(x, -0)) return null;
    if (c === undefined) {
      if (dict.length >= maxDistinct) return null;
      ids.set(x, (c = dict.length));
      dict.push(x);
    }
    codes[i] = c;
  }
  dict.push(undefined);
  return { codes, dict };
}
