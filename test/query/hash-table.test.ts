// The typed-array hash table of the hash join and hash aggregate against a Map: same ids in
// first-seen order, SameValueZero keys (-0 = 0, NaN = NaN), misses are -1, across rehashes.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { F64HashTable } from '../../operators/hash-table.js';

const keyArb = fc.oneof(
  fc.integer({ min: -50, max: 50 }),
  fc.double(),
  fc.constantFrom(0, -0, NaN, Infinity, -Infinity, 2 ** 31, -(2 ** 31), 2 ** 53, 0.1, 1e-300),
);

describe('F64HashTable', () => {
  it('assigns the ids a Map would, and finds exactly the added keys', () => {
    fc.assert(fc.property(fc.array(keyArb, { maxLength: 400 }), fc.array(keyArb, { maxLength: 50 }), fc.nat(64), (keys, probes, expected) => {
      const table = new F64HashTable(expected);
      const ref = new Map<number, number>();
      for (const k of keys) {
        if (!ref.has(k)) ref.set(k, ref.size);
        expect(table.add(k)).toBe(ref.get(k));
        expect(table.size).toBe(ref.size);
      }
      for (const k of [...keys, ...probes]) expect(table.get(k)).toBe(ref.get(k) ?? -1);
      for (const [k, id] of ref) expect(Object.is(table.keys[id], k) || (k === 0 && table.keys[id] === 0)).toBe(true);
    }), { numRuns: 300 });
  });

  it('holds many keys', () => {
    const table = new F64HashTable();
    for (let i = 0; i < 100_000; i++) expect(table.add(i * 7.5)).toBe(i);
    for (let i = 0; i < 100_000; i++) expect(table.get(i * 7.5)).toBe(i);
    expect(table.get(3.25)).toBe(-1);
  });
});
