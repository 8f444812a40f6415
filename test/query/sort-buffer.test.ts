// The full sort's packed buffer against a plain stable comparator sort of the same rows: every
// column comes back intact (numbers with absent values, ASCII and non-ASCII strings, absent
// strings, objects), in the stable sorted order, whatever the batch boundaries and gather ranges,
// and also when a batch with another path (a derived dotted vector) forces the buffer back to plain batches.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Batch, Vector } from '../../operators/batch.js';
import { concatBatches } from '../../operators/batch.js';
import { SortBuffer } from '../../operators/sort-buffer.js';
import { decodeBatch } from '../../operators/spill-codec.js';
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

  it('writes runs of spill records that decode to the rows gather gives, ASCII held as bytes once it spills', () => {
    const asciiArb = fc.oneof(fc.constantFrom('', 'a', undefined, 'zz top'), fc.string({ unit: fc.integer({ min: 0, max: 127 }).map((c) => String.fromCharCode(c)), maxLength: 50 }));
    const textArb = fc.oneof({ weight: 9, arbitrary: asciiArb }, { weight: 1, arbitrary: fc.constantFrom('é', '日本', undefined) });
    const rowsArb = fc.array(fc.record({
      k: fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constantFrom(undefined, NaN, -0)),
      x: fc.option(fc.double(), { nil: undefined }),
      s: textArb,
      t: textArb,
    }), { minLength: 1, maxLength: 40 });
    fc.assert(fc.property(
      // Runs of batches: each run's rows are sorted and written before the next run's come,
      // as a spilling sort does (the second run on reuses the first's memory).
      fc.array(fc.array(rowsArb, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 3 }), fc.boolean(), fc.integer({ min: 1, max: 23 }),
      (runs, desc, step) => {
        const keys: SortKey[] = [{ path: 'k', desc }];
        const buf = new SortBuffer(keys, () => { throw new Error('one numeric key sorts packed'); });
        for (const batches of runs) {
          for (const rows of batches) buf.add(toBatch(rows));
          const sorted = buf.sort();
          expect(sorted.encode).toBeDefined();
          const all = batches.flat();
          const cmp = makeRowComparator(keys), ref = toBatch(all), vecs = [ref.vectors.get('k')!];
          const order = all.map((_, i) => i).sort((i, j) => cmp(vecs, i, vecs, j) || i - j);
          const got: unknown[][] = [];
          for (let from = 0; from < sorted.length; from += step) {
            const b = decodeBatch(sorted.encode!(from, Math.min(sorted.length, from + step)));
            expect(b.length).toBe(Math.min(sorted.length, from + step) - from);
            for (let i = 0; i < b.length; i++) got.push(['k', 'x', 's', 't'].map((p) => cell(b, p, i)));
          }
          expect(got).toEqual(order.map((i) => [all[i].k, all[i].x, all[i].s, all[i].t]));
          // Gathering after encoding (an ASCII pack turns back into a string) gives the same rows.
          const again: unknown[][] = [];
          const b = sorted.gather(0, sorted.length);
          for (let i = 0; i < b.length; i++) again.push(['k', 'x', 's', 't'].map((p) => cell(b, p, i)));
          expect(again).toEqual(got);
        }
      },
    ), { numRuns: 300 });
  });

  it('counts ASCII strings held as bytes at a byte a character', () => {
    const keys: SortKey[] = [{ path: 'k', desc: false }];
    const bytesOf = (text: string) => {
      const buf = new SortBuffer(keys, () => { throw new Error('unused'); });
      buf.add(toBatch([{ k: 0, x: 1, s: 'a', t: 'b' }]));
      buf.sort(); // spilled: later ASCII packs are held as bytes
      const rows: Row[] = Array.from({ length: 1000 }, (_, i) => ({ k: i, x: 1, s: text, t: 'x' }));
      return buf.add(toBatch(rows));
    };
    // 1000 rows of 40 + 1 characters: as many bytes whether held as a latin1 string or ASCII bytes.
    expect(bytesOf('e'.repeat(40)) - bytesOf('')).toBeGreaterThanOrEqual(40_000);
    expect(bytesOf('e'.repeat(40))).toBe(bytesOf('é'.repeat(40)));
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
