// Predicates over batches. The planner hands operators an expression tree whose values are
// already normalised to the vector representation (timestamps as epoch ms); it is compiled
// once per query into closures, then bound to each batch's vectors.
import type { Batch, Vector } from './batch.js';
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

export function exprToString(e: Expr): string {
  const show = (v: unknown): string =>
    Array.isArray(v) ? `(${v.map(show).join(', ')})` : typeof v === 'bigint' ? `${v}n` : v === null ? 'null' : JSON.stringify(v);
  switch (e.kind) {
    case 'cmp': return `${e.path} ${e.op} ${show(e.value)}`;
    case 'and': return e.items.map((x) => (x.kind === 'or' ? `(${exprToString(x)})` : exprToString(x))).join(' AND ');
    case 'or': return e.items.map((x) => (x.kind === 'and' ? `(${exprToString(x)})` : exprToString(x))).join(' OR ');
    case 'not': return `NOT (${exprToString(e.item)})`;
  }
}

/** Total order used by comparisons and sorts: numbers, bigints, strings, booleans. */
export function compareValues(a: unknown, b: unknown): number {
  return (a as never) < (b as never) ? -1 : (a as never) > (b as never) ? 1 : 0;
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
    const xs = v.values;
    const present = (y: unknown) => y !== undefined && y !== null;
    switch (op) {
      case '=': return (i) => present(xs[i]) && xs[i] === value;
      case '!=': return (i) => present(xs[i]) && xs[i] !== value;
      case '<': return (i) => present(xs[i]) && (xs[i] as never) < (value as never);
      case '<=': return (i) => present(xs[i]) && (xs[i] as never) <= (value as never);
      case '>': return (i) => present(xs[i]) && (xs[i] as never) > (value as never);
      case '>=': return (i) => present(xs[i]) && (xs[i] as never) >= (value as never);
      case 'in': return (i) => present(xs[i]) && set!.has(xs[i]);
      case 'not in': return (i) => present(xs[i]) && !set!.has(xs[i]);
      case 'is': return (i) => !present(xs[i]);
      case 'is not': return (i) => present(xs[i]);
      case 'startsWith': return (i) => typeof xs[i] === 'string' && (xs[i] as string).startsWith(value as string);
    }
  };
}

/** Indices of the rows of `b` that pass, written into `out` (grown as needed); returns the count. */
export function selectRows(b: Batch, test: RowTest, out: { buf: Uint32Array }): number {
  if (out.buf.length < b.length) out.buf = new Uint32Array(Math.max(b.length, out.buf.length * 2));
  const sel = out.buf;
  let n = 0;
  for (let i = 0; i < b.length; i++) if (test(i)) sel[n++] = i;
  return n;
}
