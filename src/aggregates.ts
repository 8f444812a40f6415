// Aggregate constructors for aggregate({ ... }).
import type { AggregateSpec } from '../operators/aggregate-op.js';

/** Number of rows. @example aggregate({ n: count() }) */
export const count = (): AggregateSpec => ({ fn: 'count' });
/** Sum of a numeric path (absent values skipped; 0 when none). @example sum('amount') */
export const sum = (path: string): AggregateSpec => ({ fn: 'sum', path });
/** Mean of a numeric path, null when no values. @example avg('qty') */
export const avg = (path: string): AggregateSpec => ({ fn: 'avg', path });
/** Smallest value, null when none. @example min('ts') */
export const min = (path: string): AggregateSpec => ({ fn: 'min', path });
/** Largest value, null when none. @example max('amount') */
export const max = (path: string): AggregateSpec => ({ fn: 'max', path });
/** Number of distinct present values. @example countDistinct('userId') */
export const countDistinct = (path: string): AggregateSpec => ({ fn: 'countDistinct', path });
