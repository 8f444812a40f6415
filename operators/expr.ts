// Predicates over batches. The planner hands operators an expression tree whose values are
// already normalised to the vector representation (timestamps as epoch ms); it is compiled
// once per query into closures, then bound to each batch's vectors.
import type { Batch, Vector } from './batch.js';
import { dictOf } from './dict-vector.js';
import { pathVector } from './paths.js';

export type CmpOp = '=' | '!=' | '<' | '<=' | '>' | '>=' | 'in' | 'not in' | 'startsWith' | 'is' | 'is not';

export type Expr =
  | { readonly kind: 'cmp'; readonly path: string; readonly op: CmpOp; readonly value: unknown }
  | { readonly kind: 'and'; readonly items: readonly Expr[] }
  | { readonly kind: 'or'; readonly items: readonly Expr[] }
  | { readonly kind: 'not'; readonly item: Expr };

export type RowTest = (i: number) => boolean;
export type BoundPredicate = (batch: Batch) => RowTest;

export function exprPaths(e: Expr, out = new Set<string>()): Set<string> {
  if (e.kind === 'cmp') out.add(e.path);
  else if (e.kind === 'not') exprPaths(e.item, out);
  else for (const x of e.items) exprPaths(x, out);
  return out;
}

const SHOWN_VALUES = 10;
const SHOWN_CHARS = 60;

export function exprToString(e: Expr): string {
  // For reading (explain): long strings and long `in` lists are cut, with their size said.
  const show = (v: unknown): string =>
    Array.isArray(v) ? `(${v.slice(0, SHOWN_VALUES).map(show).join(', ')}${v.length > SHOWN_VALUES ? `, … ${v.length} values` : ''})`
      : typeof v === 'bigint' ? `${v}n` : v === null ? 'null'
        : typeof v === 'string' && v.length > SHOWN_CHARS ? `${JSON.stringify(v.slice(0, SHOWN_CHARS))}… (${v.length} chars)`
          : JSON.stringify(v);
  switch (e.kind) {
    case 'cmp': return `${e.path} ${e.op} ${show(e.value)}`;
    case 'and': return e.items.map((x) => (x.kind === 'or' ? `(${exprToString(x)})` : exprToString(x))).join(' AND ');
    case 'or': return e.items.map((x) => (x.kind === 'and' ? `(${exprToString(x)})` : exprToString(x))).join(' OR ');
    case 'not': return `NOT (${exprToString(e.item)})`;
  }
}

/** Total order used by comparisons and sorts: numbers, bigints, strings (by code point), booleans. */
export function compareValues(a: unknown, b: unknown): number {
  if (typeof a === 'string' && typeof b === 'string') return compareStrings(a, b);
  return (a as never) < (b as never) ? -1 : (a as never) > (b as never) ? 1 : 0;
}

const SURROGATE = /[\ud800-\udfff]/;
const ABOVE_SURROGATES = /[\ue000-\uffff]/;

/**
 * Strings in code point order, which is UTF-8 byte order: the order of index keys, so a sort,
 * a range filter and an index scan agree. JS `<` compares UTF-16 code units, which differs
 * only where the first difference puts a surrogate (a character above U+FFFF) against
 * U+E000–U+FFFF; the native compare runs first and the rare case is checked after it.
 */
export function compareStrings(a: string, b: string): number {
  if (a < b) return unitOrderInverted(a, b) ? 1 : -1;
  if (a > b) return unitOrderInverted(b, a) ? -1 : 1;
  return 0;
}

/** For lo < hi by code units: whether hi < lo by code points. */
function unitOrderInverted(lo: string, hi: string): boolean {
  if (!SURROGATE.test(lo) || !ABOVE_SURROGATES.test(hi)) return false;
  const n = Math.min(lo.length, hi.length);
  for (let i = 0; i < n; i++) {
    const x = lo.charCodeAt(i), y = hi.charCodeAt(i);
    if (x !== y) return x <= 0xdfff && x >= 0xd800 && y >= 0xe000;
  }
  return false;
}

/** Whether `<` on this string agrees with code point order against any other string. */
function unitOrderIsSafe(value: string): boolean {
  return !SURROGATE.test(value) && !ABOVE_SURROGATES.test(value);
}

export function compilePredicate(e: Expr): BoundPredicate {
  switch (e.kind) {
    case 'and': {
      const parts = e.items.map(compilePredicate);
      return (b) => {
        const tests = parts.map((p) => p(b));
        return (i) => { for (const t of tests) if (!t(i)) return false; return true; };
      };
    }
    case 'or': {
      const parts = e.items.map(compilePredicate);
      return (b) => {
        const tests = parts.map((p) => p(b));
        return (i) => { for (const t of tests) if (t(i)) return true; return false; };
      };
    }
    case 'not': {
      const inner = compilePredicate(e.item);
      return (b) => { const t = inner(b); return (i) => !t(i); };
    }
    case 'cmp':
      return compileComparison(e.path, e.op, e.value);
  }
}

function compileComparison(path: string, op: CmpOp, value: unknown): BoundPredicate {
  const set = op === 'in' || op === 'not in' ? new Set(value as unknown[]) : null;
  const test = valueTest(op, value, set);
  return (b) => {
    const v: Vector = pathVector(b, path);
    if (v.kind === 'f64') {
      const xs = v.values, abs = v.absent;
      const x = value as number;
      switch (op) {
        case '=': return abs ? (i) => !abs[i] && xs[i] === x : (i) => xs[i] === x;
        case '!=': return abs ? (i) => !abs[i] && xs[i] !== x : (i) => xs[i] !== x;
        case '<': return abs ? (i) => !abs[i] && xs[i] < x : (i) => xs[i] < x;
        case '<=': return abs ? (i) => !abs[i] && xs[i] <= x : (i) => xs[i] <= x;
        case '>': return abs ? (i) => !abs[i] && xs[i] > x : (i) => xs[i] > x;
        case '>=': return abs ? (i) => !abs[i] && xs[i] >= x : (i) => xs[i] >= x;
        case 'in': return (i) => !(abs && abs[i]) && set!.has(xs[i]);
        case 'not in': return (i) => !(abs && abs[i]) && !set!.has(xs[i]);
        case 'is': return (i) => !!(abs && abs[i]);
        case 'is not': return (i) => !(abs && abs[i]);
        case 'startsWith': return () => false;
      }
    }
    const d = dictOf(v);
    if (d !== null && d.dict.length <= v.values.length) {
      // Dictionary-coded: each distinct value is tested once, then a row is one lookup (unless
      // the dictionary outnumbers the rows, as after a selective gather).
      const pass = new Uint8Array(d.dict.length);
      for (let k = 0; k < d.dict.length; k++) pass[k] = test(d.dict[k]) ? 1 : 0;
      const codes = d.codes;
      return (i) => pass[codes[i]] === 1;
    }
    const xs = v.values;
    return (i) => test(xs[i]);
  };
}

const present = (y: unknown) => y !== undefined && y !== null;

/** The comparison on one value of a plain vector (absent: undefined). */
function valueTest(op: CmpOp, value: unknown, set: Set<unknown> | null): (x: unknown) => boolean {
  if (typeof value === 'string' && !unitOrderIsSafe(value) && (op === '<' || op === '<=' || op === '>' || op === '>=')) {
    // A bound holding characters at or above U+D800: compare by code point, like the index.
    const sign = op === '<' ? (c: number) => c < 0 : op === '<=' ? (c: number) => c <= 0 : op === '>' ? (c: number) => c > 0 : (c: number) => c >= 0;
    return (x) => typeof x === 'string' && sign(compareStrings(x, value));
  }
  switch (op) {
    case '=': return (x) => present(x) && x === value;
    case '!=': return (x) => present(x) && x !== value;
    // Safe for strings: a bound without characters at or above U+D800 orders the same by code unit and by code point.
    case '<': return (x) => present(x) && (x as never) < (value as never);
    case '<=': return (x) => present(x) && (x as never) <= (value as never);
    case '>': return (x) => present(x) && (x as never) > (value as never);
    case '>=': return (x) => present(x) && (x as never) >= (value as never);
    case 'in': return (x) => present(x) && set!.has(x);
    case 'not in': return (x) => present(x) && !set!.has(x);
    case 'is': return (x) => !present(x);
    case 'is not': return (x) => present(x);
    case 'startsWith': return (x) => typeof x === 'string' && x.startsWith(value as string);
  }
}

/** Indices of the rows of `b` that pass, written into `out` (grown as needed); returns the count. */
export function selectRows(b: Batch, test: RowTest, out: { buf: Uint32Array }): number {
  if (out.buf.length < b.length) out.buf = new Uint32Array(Math.max(b.length, out.buf.length * 2));
  const sel = out.buf;
  let n = 0;
  for (let i = 0; i < b.length; i++) if (test(i)) sel[n++] = i;
  return n;
}

/**
 * A predicate compiled to work on a selection vector: `sel[0..count)` holds candidate row
 * indices (count < 0: every row of the batch), and the survivors are written back into `sel`
 * in order; returns their number. Comparisons on number vectors run as tight typed-array
 * loops (no closure call per row); an AND narrows the selection conjunct by conjunct, so later
 * conjuncts only look at rows that are still alive.
 */
export type Selector = (b: Batch, sel: Uint32Array, count: number) => number;

export function compileSelector(e: Expr): Selector {
  if (e.kind === 'and') {
    const parts = e.items.map(compileSelector);
    return (b, sel, count) => {
      let n = count;
      for (let p = 0; p < parts.length; p++) {
        n = parts[p](b, sel, n);
        if (n === 0) return 0;
      }
      if (n < 0) { for (let i = 0; i < b.length; i++) sel[i] = i; return b.length; } // AND of nothing
      return n;
    };
  }
  if (e.kind === 'cmp' && (e.op === '<' || e.op === '<=' || e.op === '>' || e.op === '>=' || e.op === '=' || e.op === '!=')) {
    const { path, op } = e;
    const generic = rowTestSelector(compilePredicate(e));
    if (typeof e.value !== 'number') return generic;
    const x = e.value;
    const code = OP_CODES[op];
    return (b, sel, count) => {
      const v = pathVector(b, path);
      return v.kind === 'f64' ? selectF64(code, x, v.values, v.absent, b.length, sel, count) : generic(b, sel, count);
    };
  }
  return rowTestSelector(compilePredicate(e));
}

function rowTestSelector(pred: BoundPredicate): Selector {
  return (b, sel, count) => {
    const test = pred(b);
    let k = 0;
    if (count < 0) {
      for (let i = 0; i < b.length; i++) if (test(i)) sel[k++] = i;
    } else {
      for (let j = 0; j < count; j++) { const i = sel[j]; if (test(i)) sel[k++] = i; }
    }
    return k;
  };
}

const OP_CODES = { '<': 0, '<=': 1, '>': 2, '>=': 3, '=': 4, '!=': 5 } as const;

/** One loop per operator so each comparison is inlined; absent rows never pass. */
function selectF64(op: number, x: number, xs: Float64Array, abs: Uint8Array | null, n: number, sel: Uint32Array, count: number): number {
  let k = 0;
  if (abs !== null) {
    // Rare (a column with absent values in this batch): one generic loop.
    const test = (y: number) => op === 0 ? y < x : op === 1 ? y <= x : op === 2 ? y > x : op === 3 ? y >= x : op === 4 ? y === x : y !== x;
    if (count < 0) { for (let i = 0; i < n; i++) if (abs[i] === 0 && test(xs[i])) sel[k++] = i; }
    else for (let j = 0; j < count; j++) { const i = sel[j]; if (abs[i] === 0 && test(xs[i])) sel[k++] = i; }
    return k;
  }
  if (count < 0) {
    switch (op) {
      case 0: for (let i = 0; i < n; i++) if (xs[i] < x) sel[k++] = i; break;
      case 1: for (let i = 0; i < n; i++) if (xs[i] <= x) sel[k++] = i; break;
      case 2: for (let i = 0; i < n; i++) if (xs[i] > x) sel[k++] = i; break;
      case 3: for (let i = 0; i < n; i++) if (xs[i] >= x) sel[k++] = i; break;
      case 4: for (let i = 0; i < n; i++) if (xs[i] === x) sel[k++] = i; break;
      default: for (let i = 0; i < n; i++) if (xs[i] !== x) sel[k++] = i; break;
    }
    return k;
  }
  switch (op) {
    case 0: for (let j = 0; j < count; j++) { const i = sel[j]; if (xs[i] < x) sel[k++] = i; } break;
    case 1: for (let j = 0; j < count; j++) { const i = sel[j]; if (xs[i] <= x) sel[k++] = i; } break;
    case 2: for (let j = 0; j < count; j++) { const i = sel[j]; if (xs[i] > x) sel[k++] = i; } break;
    case 3: for (let j = 0; j < count; j++) { const i = sel[j]; if (xs[i] >= x) sel[k++] = i; } break;
    case 4: for (let j = 0; j < count; j++) { const i = sel[j]; if (xs[i] === x) sel[k++] = i; } break;
    default: for (let j = 0; j < count; j++) { const i = sel[j]; if (xs[i] !== x) sel[k++] = i; } break;
  }
  return k;
}
