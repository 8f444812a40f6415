// The full sort's packed buffer against a plain stable comparator sort of the same rows: every
// column comes back intact (numbers with absent values, ASCII and non-ASCII strings, absent
// strings, objects), in the stable sorted order, whatever the batch boundaries and gather ranges,
// and also when a batch with another path (a derived dotted vector) forces the buffer back to plain batches.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Batch, Vector } from '../../operators/batch.js';
import { concatBatches } from '../../operators/batch.js';
import { SortBuffer } from '../../operators/sort-buffer.js';
import { pathVector } from '../../operators/paths.js';
import { makeRowComparator, sortPermutation, type SortKey } from '../../operators/sort-op.js';

interface Row { k: number | undefined; x: number | undefined; s: unknown; t: unknown }

const rowArb = fc.record({
  k: fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constantFrom(undefined, NaN, -0, 0.5)),
  x: fc.option(fc.double(), { nil: undefined }),
  s: fc.oneof(fc.constantFrom('a', 'bb', '', undefined, 'zz top'), fc.string()),
  t: fc.oneof(fc.constantFrom('x', undefined, 'é', '日本'), fc.constant({ o: 1 }), fc.integer()),
});

function toBatch(rows: Row[], extra = false): Batch {
  const f64 = (xs: (number | undefined)[]): Vector => {
    const values = new Float64Array(xs.length), absent = new Uint8Array(xs.length);
    xs.forEach((x, i) => { if (x === undefined) absent[i] = 1; else values[i] = x; });
    return { kind: 'f64', values, absent: xs.some((x) => x === undefined) ? absent : null };
  };
  const vectors = new Map<string, Vector>([
    ['k', f64(rows.map((r) => r.k))],
    ['x', f64(rows.map((r) => r.x))],
    ['s', { kind: 'any', values: rows.map((r) => r.s) }],
    ['t', { kind: 'any', values: rows.map((r) => r.t) }],
  ]);
  const b = { length: rows.length, vectors };
  // A derived dotted vector cached on one batch only (as an upstream operator may leave it).
  if (extra) pathVector(b, 't.o');
  return b;
}

const cell = (b: Batch, path: string, i: number) => {
  const v = b.vectors.get(path)!;
  return v.kind === 'f64' ? (v.absent && v.absent[i] ? undefined : v.values[i]) : v.values[i];
};

describe('SortBuffer', () => {
  it('gives the rows of a stable comparator sort', () => {
    fc.assert(fc.property(
      fc.array(fc.array(rowArb, { minLength: 1, maxLength: 30 }), { minLength: 1, maxLength: 6 }),
      fc.boolean(), fc.boolean(), fc.integer({ min: 1, max: 17 }), fc.integer({ min: 0, max: 6 }),
      (batches, desc, twoKeys, step, oddOne) => {
        const keys: SortKey[] = twoKeys ? [{ path: 'k', desc }, { path: 's', desc: !desc }] : [{ path: 'k', desc }];
        const inputs = batches.map((rows, i) => toBatch(rows, i === oddOne));
        const buf = new SortBuffer(keys, (bs) => { const one = concatBatches(bs); bs.length = 0; return { batch: one, perm: sortPermutation(one, keys) }; });
        for (const b of inputs) buf.add(b);
        const sorted = buf.sort();
        const all = batches.flat();
        // Reference: stable sort of row indexes with the operators' comparator.
        const ref = toBatch(all);
        const vecs = keys.map((k) => ref.vectors.get(k.path)!);
        const cmp = makeRowComparator(keys);
        const order = all.map((_, i) => i).sort((i, j) => cmp(vecs, i, vecs, j) || i - j);
        expect(sorted.length).toBe(all.length);
        const got: unknown[][] = [];
        for (let from = 0; from < sorted.length; from += step) {
          const b = sorted.gather(from, Math.min(sorted.length, from + step));
          for (let i = 0; i < b.length; i++) got.push(['k', 'x', 's', 't'].map((p) => cell(b, p, i)));
        }
        expect(got).toEqual(order.map((i) => [all[i].k, all[i].x, all[i].s, all[i].t]));
      },
    ), { numRuns: 300 });
  });

  it('counts strings with a character above U+00FF at two bytes a character, as V8 stores them', () => {
    const keys: SortKey[] = [{ path: 'k', desc: false }];
    const bytesOf = (text: string) => {
      const buf = new SortBuffer(keys, () => { throw new Error('unused'); });
      const rows: Row[] = Array.from({ length: 1000 }, (_, i) => ({ k: i, x: 1, s: text, t: 'x' }));
      return buf.add(toBatch(rows));
    };
    const latin1 = bytesOf('é'.repeat(40)), wide = bytesOf('日'.repeat(40)), mixed = bytesOf('e'.repeat(39) + '日');
    // 1000 rows of 40 + 1 characters: 41,000 bytes more when they take two bytes each.
    expect(wide - latin1).toBeGreaterThanOrEqual(41_000);
    expect(mixed).toBe(wide);
  });
});
