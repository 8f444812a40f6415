// Key searches in leaf and branch pages (interpolation first, then binary search) against a
// linear scan with Buffer.compare, over key sets dense, gapped, random, sharing long prefixes
// and of mixed lengths, and probes present, between, before and past every key.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BranchView, LeafView, MutableBranch, MutableLeaf, childIndexFor, firstAtOrAfter, packRow } from '../../storage/btree-node.js';
import { encodeKey, type KeyPart } from '../../storage/keys.js';

const sortedUnique = (keys: Buffer[]): Buffer[] => {
  const out = [...keys].sort(Buffer.compare);
  return out.filter((k, i) => i === 0 || !k.equals(out[i - 1]));
};

const keySets: fc.Arbitrary<Buffer[]> = fc.oneof(
  // dense ids counting up from anywhere (the case interpolation settles in two probes)
  fc.tuple(fc.integer({ min: -1e9, max: 1e9 }), fc.integer({ min: 1, max: 700 }), fc.integer({ min: 1, max: 3 }))
    .map(([from, n, step]) => Array.from({ length: n }, (_, i) => encodeKey([from + i * step]))),
  // numbers with gaps and clusters
  fc.array(fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.double({ noNaN: true }), fc.integer()), { minLength: 1, maxLength: 500 })
    .map((xs) => xs.map((x) => encodeKey([x]))),
  // strings, some sharing a long prefix, some prefixes of others
  fc.array(fc.tuple(fc.constantFrom('', 'user/', 'user/2026-12-06/', 'zz'), fc.string({ maxLength: 12 })), { minLength: 1, maxLength: 400 })
    .map((xs) => xs.map(([p, s]) => encodeKey([p + s]))),
  // composite keys (an index key with its primary key)
  fc.array(fc.tuple(fc.constantFrom('books', 'toys', 'garden'), fc.integer({ min: 0, max: 1e6 }), fc.nat()), { minLength: 1, maxLength: 400 })
    .map((xs) => xs.map((parts) => encodeKey(parts as KeyPart[]))),
  // raw bytes of any length (branch separators need not be whole keys)
  fc.array(fc.uint8Array({ maxLength: 10 }).map((b) => Buffer.from(b)), { minLength: 1, maxLength: 300 }),
).map(sortedUnique);

/** Probes: every key, a byte past and short of it, and keys from elsewhere. */
function probesFor(keys: Buffer[], extra: Buffer[]): Buffer[] {
  const probes = [...extra, Buffer.alloc(0), Buffer.from([0xff, 0xff, 0xff])];
  for (const k of keys) {
    probes.push(k, Buffer.concat([k, Buffer.from([0])]));
    if (k.byteLength > 0) probes.push(k.subarray(0, k.byteLength - 1), Buffer.from([...k.subarray(0, k.byteLength - 1), k[k.byteLength - 1] ^ 1]));
  }
  return probes;
}

/** The reference: the first index whose key is > probe (`after`) or >= probe. */
const linearSearch = (keys: Buffer[], from: number, probe: Buffer, after: boolean): number => {
  for (let i = from; i < keys.length; i++) {
    const c = Buffer.compare(keys[i], probe);
    if (c > 0 || (!after && c === 0)) return i;
  }
  return keys.length;
};

function leafOf(keys: Buffer[]): LeafView {
  const leaf = new MutableLeaf(1);
  const row = packRow([]);
  keys.forEach((k, i) => leaf.insert(i, k, row));
  const page = Buffer.alloc(1 << 20);
  return new LeafView(page.subarray(0, leaf.encodeInto(page)), 0);
}

function branchOf(keys: Buffer[]): BranchView {
  const branch = new MutableBranch(1, keys, keys.map((_, i) => i + 10));
  const page = Buffer.alloc(1 << 20);
  return new BranchView(page.subarray(0, branch.encodeInto(page)), 0);
}

const extraProbes = fc.array(fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b)), { maxLength: 20 });

describe('key search in pages', () => {
  it('a leaf finds the first key at or after (and after) any probe, as a linear scan does', () => {
    fc.assert(fc.property(keySets, extraProbes, (keys, extra) => {
      const leaf = leafOf(keys);
      for (const probe of probesFor(keys, extra)) {
        expect(leaf.search(probe, false)).toBe(linearSearch(keys, 0, probe, false));
        expect(leaf.search(probe, true)).toBe(linearSearch(keys, 0, probe, true));
        expect(firstAtOrAfter(leaf, probe)).toBe(linearSearch(keys, 0, probe, false));
      }
    }), { numRuns: 100 });
  });

  it('a branch picks the child covering any probe, key 0 being no bound', () => {
    fc.assert(fc.property(keySets, extraProbes, (keys, extra) => {
      const branch = branchOf(keys);
      for (const probe of probesFor(keys, extra)) {
        // The last child whose separator (from key 1 on) is <= probe, else child 0.
        const want = Math.max(0, linearSearch(keys, 1, probe, true) - 1);
        expect(childIndexFor(branch, probe)).toBe(want);
        for (const from of [1, Math.floor(keys.length / 2)]) {
          if (from >= 1 && from <= keys.length) expect(branch.search(probe, true, from)).toBe(linearSearch(keys, from, probe, true));
        }
      }
    }), { numRuns: 100 });
  });

  it('dense keys are found whatever the first key of the page, including a page whose key 0 is out of order', () => {
    // A branch's key 0 may sort after key 1 (a smaller key went into child 0): the spread starts at key 1.
    const keys = [encodeKey([5_000_000]), ...Array.from({ length: 600 }, (_, i) => encodeKey([1000 + i]))];
    const branch = new BranchView((() => {
      const page = Buffer.alloc(1 << 20);
      return page.subarray(0, new MutableBranch(1, keys, keys.map((_, i) => i)).encodeInto(page));
    })(), 0);
    for (let id = 990; id < 1610; id++) {
      const want = id < 1000 ? 0 : Math.min(id - 999, 600);
      expect(childIndexFor(branch, encodeKey([id]))).toBe(want);
    }
  });
});
