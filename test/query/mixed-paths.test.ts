// Batches of one stream need not carry the same paths: a left join's batch of rows without a
// partner carries only its presence marker, not the build side's paths, and derived dotted
// vectors exist only where something asked for them. Concatenating, packing and gathering such
// batches must keep every path of every batch, whichever batch comes first. (A top-k over a left
// join lost the build side's columns when a batch of unmatched rows came first, and sorted the
// rows by the lost, now absent, values.)
import { describe, expect, it } from 'vitest';
import { concatBatches, valueAt, type Batch, type Vector } from '../../operators/batch.js';
import { pathVector } from '../../operators/paths.js';
import { gatherRows, sortRows, type SortKey } from '../../operators/sort-op.js';

const f64 = (xs: number[]): Vector => ({ kind: 'f64', values: Float64Array.from(xs), absent: null });
const any = (xs: unknown[]): Vector => ({ kind: 'any', values: xs });

/** Left-join output: order ids, the marker `tag`, and for matched rows `tag.id` and `tag.label`. */
function unmatched(ids: number[]): Batch {
  return { length: ids.length, vectors: new Map([['id', f64(ids)], ['tag', any(ids.map(() => undefined))]]) };
}
function matched(ids: number[], tagIds: number[]): Batch {
  return {
    length: ids.length,
    vectors: new Map([['id', f64(ids)], ['tag', any(ids.map(() => true))], ['tag.id', f64(tagIds)], ['tag.label', any(tagIds.map((t) => `label-${t}`))]]),
  };
}
const rowsOf = (b: Batch, paths: string[]) => Array.from({ length: b.length }, (_, i) => paths.map((p) => valueAt(pathVector(b, p), i) ?? null));

describe('batches with different paths', () => {
  const orders = () => [unmatched([1, 2]), matched([3, 4, 5], [30, 40, 50]), unmatched([6])];
  const want = [[1, null, null], [2, null, null], [3, 30, 'label-30'], [4, 40, 'label-40'], [5, 50, 'label-50'], [6, null, null]];

  it('concatBatches keeps the paths of every batch, not only of the first', () => {
    expect(rowsOf(concatBatches(orders()), ['id', 'tag.id', 'tag.label'])).toEqual(want);
    // A derived vector on one batch only is no reason to lose it on the others.
    const [a, b, c] = orders();
    pathVector(b, 'tag.label');
    expect(rowsOf(concatBatches([a, b, c]), ['id', 'tag.id', 'tag.label'])).toEqual(want);
  });

  it('sortRows and gatherRows (multi-key and packed single-key paths) keep them too', () => {
    for (const keys of [[{ path: 'id', desc: true }], [{ path: 'id', desc: true }, { path: 'tag.label', desc: false }]] as SortKey[][]) {
      const sorted = sortRows(orders(), keys);
      const out = gatherRows(sorted, 0, sorted.ids.length);
      expect(rowsOf(out, ['id', 'tag.id', 'tag.label']), JSON.stringify(keys)).toEqual([...want].reverse());
    }
  });
});
