// FreeSpace, the allocator's set of free pages kept as coalesced ranges, against a plain
// Set<number>: every operation returns what the set says and leaves the same pages free.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FreeSpace, type PageRange } from '../../storage/free-space.js';

const PAGES = 120; // small, so random adds overlap and ranges touch

type Op =
  | { readonly t: 'add'; readonly start: number; readonly length: number }
  | { readonly t: 'addAll'; readonly ranges: readonly (readonly [number, number])[] }
  | { readonly t: 'remove'; readonly page: number }
  | { readonly t: 'takeOne' }
  | { readonly t: 'takeRun'; readonly length: number }
  | { readonly t: 'takeLast' }
  | { readonly t: 'takeRangeEndingAt'; readonly end: number }
  | { readonly t: 'clone' };

const pageArb = fc.integer({ min: 0, max: PAGES - 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('add' as const), start: pageArb, length: fc.integer({ min: 0, max: 12 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('addAll' as const), ranges: fc.array(fc.tuple(pageArb, fc.integer({ min: 1, max: 4 })), { maxLength: 4 }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('remove' as const), page: pageArb }) },
  { weight: 3, arbitrary: fc.constant({ t: 'takeOne' as const }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('takeRun' as const), length: fc.integer({ min: 1, max: 10 }) }) },
  { weight: 2, arbitrary: fc.constant({ t: 'takeLast' as const }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('takeRangeEndingAt' as const), end: fc.integer({ min: 0, max: PAGES + 12 }) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'clone' as const }) },
);

/** Maximal runs of consecutive pages in `set`, ascending: what `ranges()` must return. */
function runsOf(set: ReadonlySet<number>): PageRange[] {
  const pages = [...set].sort((a, b) => a - b);
  const out: [number, number][] = [];
  for (const p of pages) {
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === p) last[1]++;
    else out.push([p, 1]);
  }
  return out;
}

function expectSame(space: FreeSpace, set: ReadonlySet<number>): void {
  const runs = runsOf(set);
  expect(space.ranges()).toEqual(runs);
  expect(space.rangeCount).toBe(runs.length);
  expect(space.pageCount).toBe(set.size);
  const pages = Array.from({ length: PAGES + 14 }, (_, p) => p);
  expect(pages.filter((p) => space.has(p))).toEqual(pages.filter((p) => set.has(p)));
}

/** Applies `op` to both; returns nothing, asserting results along the way. */
function apply(space: FreeSpace, set: Set<number>, op: Op): void {
  switch (op.t) {
    case 'add': {
      const overlaps = Array.from({ length: op.length }, (_, i) => op.start + i).some((p) => set.has(p));
      if (overlaps) {
        expect(() => space.add(op.start, op.length)).toThrow(/freed twice/);
      } else {
        space.add(op.start, op.length);
        for (let i = 0; i < op.length; i++) set.add(op.start + i);
      }
      return;
    }
    case 'addAll': {
      // Only disjoint batches: a failing addAll may have added part of its input.
      const pages = op.ranges.flatMap(([s, n]) => Array.from({ length: n }, (_, i) => s + i));
      if (new Set(pages).size !== pages.length || pages.some((p) => set.has(p))) return;
      space.addAll(op.ranges);
      for (const p of pages) set.add(p);
      return;
    }
    case 'remove':
      if (set.has(op.page)) {
        space.remove(op.page);
        set.delete(op.page);
      } else {
        expect(() => space.remove(op.page)).toThrow(/not in the set/);
      }
      return;
    case 'takeOne': {
      const expected = set.size === 0 ? -1 : Math.min(...set);
      expect(space.takeOne()).toBe(expected);
      set.delete(expected);
      return;
    }
    case 'takeRun': {
      const fit = runsOf(set).find(([, n]) => n >= op.length); // first fit, lowest pages first
      const expected = fit ? fit[0] : -1;
      expect(space.takeRun(op.length)).toBe(expected);
      if (fit) for (let i = 0; i < op.length; i++) set.delete(expected + i);
      return;
    }
    case 'takeLast': {
      const expected = set.size === 0 ? -1 : Math.max(...set);
      expect(space.takeLast()).toBe(expected);
      set.delete(expected);
      return;
    }
    case 'takeRangeEndingAt': {
      const last = runsOf(set).at(-1);
      const expected = last && last[0] + last[1] === op.end ? last : null;
      expect(space.takeRangeEndingAt(op.end)).toEqual(expected);
      if (expected) for (let i = 0; i < expected[1]; i++) set.delete(expected[0] + i);
      return;
    }
    case 'clone': {
      // A clone is independent: emptying it leaves the original as it was.
      const copy = space.clone();
      expectSame(copy, set);
      while (copy.takeOne() >= 0);
      expect(copy.pageCount).toBe(0);
      expect(copy.ranges()).toEqual([]);
      return;
    }
  }
}

describe('FreeSpace', () => {
  it('behaves like a set of page numbers under random operations', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 120 }), (ops) => {
        const space = new FreeSpace();
        const set = new Set<number>();
        for (const op of ops) {
          apply(space, set, op);
          expectSame(space, set);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('coalesces adjacent ranges, whichever order they arrive in', () => {
    const space = new FreeSpace();
    space.add(10, 5);   // [10, 15)
    space.add(20, 5);   // [20, 25)
    space.add(15, 5);   // joins both
    expect(space.ranges()).toEqual([[10, 15]]);
    space.add(9);       // joins on the left
    space.add(25, 2);   // joins on the right
    expect(space.ranges()).toEqual([[9, 18]]);
    space.remove(15);   // splits
    expect(space.ranges()).toEqual([[9, 6], [16, 11]]);
    expect(space.takeRun(7)).toBe(16);
    expect(space.takeRangeEndingAt(27)).toEqual([23, 4]);
    expect(space.takeRangeEndingAt(27)).toBeNull();
    expect(space.ranges()).toEqual([[9, 6]]);
    expect(space.pageCount).toBe(6);
  });
});
