// The hash aggregate's column-wise group table and the dictionary codes the hash join attaches,
// against a plain Map reference: same groups in first-seen order, same counts and sums, whether
// key vectors come as Float64Arrays (absent, NaN, -0), plain values or dictionary-coded values.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GroupTable } from '../../operators/aggregate-op.js';
import type { Vector } from '../../operators/batch.js';
import { dictOf, encodeDict, type DictVector } from '../../operators/dict-vector.js';

const numKey = fc.oneof(fc.integer({ min: -5, max: 5 }), fc.constantFrom(0, -0, NaN, 1.5, undefined));
const strKey = fc.oneof(fc.constantFrom('a', 'b', 'c', '', 'dd'), fc.constant(undefined), fc.integer({ min: 0, max: 3 }));

function reference(rows: { k: unknown; x: number | undefined }[]) {
  const groups = new Map<unknown, { n: number; cnt: number; sum: number }>();
  for (const r of rows) {
    let g = groups.get(r.k);
    if (!g) groups.set(r.k, (g = { n: 0, cnt: 0, sum: 0 }));
    g.n++;
    if (r.x !== undefined) { g.cnt++; g.sum += r.x; }
  }
  return [...groups].map(([k, g]) => ({ k: Object.is(k, -0) ? 0 : k, ...g }));
}

function tableRows(t: GroupTable) {
  const out = [];
  for (let g = 0; g < t.size; g++) {
    const k = t.keys[0][g];
    out.push({ k: Object.is(k, -0) ? 0 : k, n: t.state(0, g).n, cnt: t.state(1, g).n, sum: t.state(1, g).sum });
  }
  return out;
}

const f64Vector = (xs: unknown[]): Vector => {
  const values = new Float64Array(xs.length), absent = new Uint8Array(xs.length);
  xs.forEach((x, i) => { if (x === undefined) absent[i] = 1; else values[i] = x as number; });
  return { kind: 'f64', values, absent };
};

describe('GroupTable', () => {
  it('groups like a Map, batch by batch, over f64, plain and dictionary-coded key vectors', () => {
    const batchArb = (key: fc.Arbitrary<unknown>) => fc.array(fc.record({ k: key, x: fc.option(fc.integer({ min: -100, max: 100 }), { nil: undefined }) }), { maxLength: 40 });
    const run = (numeric: boolean) => fc.property(
      fc.array(fc.tuple(batchArb(numeric ? numKey : strKey), fc.constantFrom('plain', 'dict', 'f64')), { maxLength: 8 }),
      (batches) => {
        const t = new GroupTable([{ fn: 'count' }, { fn: 'sum', path: 'x' }], 1);
        for (const [rows, form] of batches) {
          const ks = rows.map((r) => r.k);
          let key: Vector;
          if (form === 'f64' && numeric) key = f64Vector(ks);
          else if (form === 'dict') {
            const e = encodeDict(ks, 1000);
            if (e) {
              const dv: DictVector = { kind: 'any', values: ks, codes: e.codes, dict: e.dict };
              key = dv;
              expect(dictOf(key)).toBe(dv);
              ks.forEach((k, i) => expect(Object.is(e.dict[e.codes[i]], k)).toBe(true));
            } else {
              expect(ks.some((k) => Object.is(k, -0))).toBe(true);
              key = { kind: 'any', values: ks };
            }
          } else key = { kind: 'any', values: ks };
          t.addBatch([key], [null, f64Vector(rows.map((r) => r.x))], rows.length);
        }
        expect(tableRows(t)).toEqual(reference(batches.flatMap(([rows]) => rows)));
      },
    );
    fc.assert(run(true), { numRuns: 300 });
    fc.assert(run(false), { numRuns: 300 });
  });

  it('encodeDict gives up past maxDistinct values, and on -0', () => {
    expect(encodeDict(['a', 'b', 'c'], 2)).toBeNull();
    expect(encodeDict([0, -0], 2)).toBeNull();
    expect(encodeDict(['a', 'b', 'a'], 2)!.dict).toEqual(['a', 'b', undefined]);
  });
});
