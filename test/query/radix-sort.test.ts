// The sort's radix argsort against Array.prototype.sort with the row comparator's order: absent
// first, NaN after every number, -0 equal to 0, descending reversed, ties in input order.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { keyImage, keyImages, keyImagesStrided, radixSortPayload } from '../../operators/radix-sort.js';

const valueArb = fc.oneof(
  fc.double(),
  fc.integer({ min: -3, max: 3 }),
  fc.constantFrom(0, -0, NaN, Infinity, -Infinity, undefined, Number.MAX_VALUE, -Number.MIN_VALUE, 5e-324),
);

function refOrder(xs: (number | undefined)[], desc: boolean): number[] {
  const rank = (x: number | undefined) => (x === undefined ? 0 : Number.isNaN(x) ? 2 : 1);
  const cmp = (a: number | undefined, b: number | undefined) => {
    const c = rank(a) - rank(b) || (rank(a) === 1 ? (a! < b! ? -1 : a! > b! ? 1 : 0) : 0);
    return desc ? -c : c;
  };
  return xs.map((_, i) => i).sort((i, j) => cmp(xs[i], xs[j]) || i - j);
}

describe('radix argsort', () => {
  it('orders like the comparator sort, stable, ascending and descending', () => {
    fc.assert(fc.property(fc.array(valueArb, { maxLength: 300 }), fc.boolean(), (xs, desc) => {
      const n = xs.length;
      const hi = new Uint32Array(n), lo = new Uint32Array(n), payload = new Uint32Array(n);
      xs.forEach((x, i) => { keyImage(x, desc, hi, lo, i); payload[i] = i; });
      expect([...radixSortPayload(hi, lo, payload, n)]).toEqual(refOrder(xs, desc));
      // keyImages over a Float64Array + absent mask gives the same images.
      const values = new Float64Array(n), absent = new Uint8Array(n);
      xs.forEach((x, i) => { if (x === undefined) absent[i] = 1; else values[i] = x; });
      const hi2 = new Uint32Array(n + 2), lo2 = new Uint32Array(n + 2);
      keyImages(values, absent, desc, hi2, lo2, 2);
      xs.forEach((x, i) => { keyImage(x, desc, hi, lo, i); });
      expect([...hi2.subarray(2)]).toEqual([...hi]);
      expect([...lo2.subarray(2)]).toEqual([...lo]);
      // ... and so does keyImagesStrided over column 1 of a row-major pack of 3 columns.
      const packed = new Float64Array(3 * n), packedAbsent = new Uint8Array(3 * n);
      xs.forEach((x, i) => { if (x === undefined) packedAbsent[3 * i + 1] = 1; else packed[3 * i + 1] = x; packed[3 * i] = 7; });
      const hi3 = new Uint32Array(n), lo3 = new Uint32Array(n);
      keyImagesStrided(packed, packedAbsent, 1, 3, n, desc, hi3, lo3, 0);
      expect([...hi3]).toEqual([...hi]);
      expect([...lo3]).toEqual([...lo]);
    }), { numRuns: 500 });
  });

  it('sorts many rows with few distinct keys stably', () => {
    const n = 50_000;
    const xs = Array.from({ length: n }, (_, i) => (i * 7919) % 13 - 6 + ((i % 3) * 0.5));
    const hi = new Uint32Array(n), lo = new Uint32Array(n), payload = new Uint32Array(n);
    xs.forEach((x, i) => { keyImage(x, false, hi, lo, i); payload[i] = i; });
    expect([...radixSortPayload(hi, lo, payload, n)]).toEqual(refOrder(xs, false));
  });
});
