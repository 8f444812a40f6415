// Dictionary codes through gathers and slices: what survives a filter (or a page of a sort's
// output) keeps codes that agree with its values, so the aggregate and filters downstream still
// work by code; a plain vector stays plain.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gather, gatherBatch, sliceBatch, type Batch, type Vector } from '../../operators/batch.js';
import { dictOf, encodeDict, type DictVector } from '../../operators/dict-vector.js';

const coded = (values: unknown[]): DictVector => {
  const enc = encodeDict(values, 64)!;
  return { kind: 'any', values, codes: enc.codes, dict: enc.dict };
};

/** Every row's code names its own value. */
function expectConsistent(v: Vector, values: unknown[]): void {
  const d = dictOf(v);
  expect(d).not.toBeNull();
  expect(v.values).toEqual(values);
  expect(d!.codes.length).toBe(values.length);
  for (let k = 0; k < values.length; k++) expect(d!.dict[d!.codes[k]]).toBe(values[k]);
}

const valuesArb = fc.array(fc.constantFrom('books', 'toys', 'garden', '', 'é', undefined), { minLength: 1, maxLength: 300 });

describe('dictionary vectors', () => {
  it('a gather keeps codes that agree with the gathered values', () => {
    fc.assert(fc.property(valuesArb, fc.array(fc.nat(), { maxLength: 300 }), (values, picks) => {
      const v = coded(values);
      const idx = Uint32Array.from(picks.map((p) => p % values.length));
      expectConsistent(gather(v, idx), Array.from(idx, (i) => values[i]));
      const count = idx.length >> 1; // a count below the indices' length, as a filter's selection gives
      expectConsistent(gather(v, idx, count), Array.from(idx.subarray(0, count), (i) => values[i]));
    }), { numRuns: 100 });
  });

  it('a slice keeps the codes of its rows; whole batches gather and slice alike; a plain vector stays plain', () => {
    fc.assert(fc.property(valuesArb, fc.nat(), fc.nat(), (values, a, b) => {
      const from = a % (values.length + 1), to = from + (b % (values.length + 2));
      const batch: Batch = { length: values.length, vectors: new Map<string, Vector>([['tag', coded(values)], ['plain', { kind: 'any', values: [...values] }]]) };
      const sliced = sliceBatch(batch, from, to);
      expectConsistent(sliced.vectors.get('tag')!, values.slice(from, to));
      expect(dictOf(sliced.vectors.get('plain')!)).toBeNull();
      const reversed = Uint32Array.from(values.keys()).reverse();
      const gathered = gatherBatch(batch, reversed);
      expectConsistent(gathered.vectors.get('tag')!, [...values].reverse());
      expect(dictOf(gathered.vectors.get('plain')!)).toBeNull();
    }), { numRuns: 100 });
  });
});
