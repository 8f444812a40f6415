// The hash join's build table against a Map of key → rows: numeric keys through the typed-array
// hash table and, for dense integer keys, the direct array; chains keep input order; absent and
// NaN keys match nothing; -0 matches 0.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BuildTable } from '../../operators/join-op.js';

const keyArb = fc.oneof(fc.integer({ min: -20, max: 20 }), fc.constantFrom(undefined, NaN, -0, 0.5, 1e9));

function rowsOf(t: BuildTable, k: number): number[] {
  let j: number;
  if (t.direct) {
    const x = k - t.directMin;
    j = k !== k || x < 0 || x >= t.direct.length || (x | 0) !== x ? -1 : t.direct[x];
  } else {
    const id = t.idOf(k);
    j = id < 0 ? -1 : t.first[id];
  }
  const out: number[] = [];
  for (; j >= 0; j = t.next[j]) out.push(j);
  return out;
}

describe('BuildTable', () => {
  it('finds the rows of each key in input order', () => {
    fc.assert(fc.property(fc.array(keyArb, { maxLength: 200 }), fc.array(keyArb, { maxLength: 30 }), (keys, probes) => {
      const values = new Float64Array(keys.length), absent = new Uint8Array(keys.length);
      keys.forEach((k, i) => { if (k === undefined) absent[i] = 1; else values[i] = k; });
      const t = new BuildTable({ length: keys.length, vectors: new Map([['id', { kind: 'f64', values, absent }]]) }, 'id');
      const ref = new Map<number, number[]>();
      keys.forEach((k, i) => { if (k !== undefined && !Number.isNaN(k)) { const r = ref.get(k) ?? []; r.push(i); ref.set(k, r); } });
      for (const k of [...keys, ...probes]) {
        if (k === undefined) continue;
        expect(rowsOf(t, k)).toEqual(Number.isNaN(k) ? [] : ref.get(k) ?? []);
      }
      if (t.numeric) expect(t.unique).toBe([...ref.values()].every((r) => r.length === 1));
    }), { numRuns: 400 });
  });

  it('uses the direct array for dense integer keys only', () => {
    const make = (ks: number[]) => new BuildTable({ length: ks.length, vectors: new Map([['id', { kind: 'f64', values: Float64Array.from(ks), absent: null }]]) }, 'id');
    expect(make([3, 1, 2]).direct).not.toBeNull();
    expect(make([0, 1e9]).direct).toBeNull();
    expect(make([0, 1.5]).direct).toBeNull();
  });
});
