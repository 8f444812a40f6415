// The external key sorter behind bulk index loads: its in-memory radix sort agrees with
// Buffer.compare; every key comes back in byte order (duplicates kept) however many spill runs
// it took, including merges of more runs than fit at once and runs read back in several reads;
// its spill pages are released when it finishes, is stopped early or is dropped.
// An indexed insertMany large enough to spill its index entries loads an index equal to a
// reference.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KeySorter, sortByteKeys } from '../../storage/key-sorter.js';
import { model, t } from '../../src/index.js';
import { MODES as DB_MODES, openDb } from '../helpers/db.js';
import { MODES, openEngine } from '../helpers/storage.js';

async function collect(it: AsyncIterable<Buffer>): Promise<string[]> {
  const out: string[] = [];
  for await (const k of it) out.push(k.toString('hex'));
  return out;
}

describe('sortByteKeys', () => {
  it('sorts like Buffer.compare: shared prefixes, prefixes of other keys, duplicates, empty keys', () => {
    const key = fc.oneof(
      fc.uint8Array({ maxLength: 12 }),
      fc.tuple(fc.constantFrom('', 'user/', 'user/2026/'), fc.uint8Array({ maxLength: 6 })).map(([p, b]) => Uint8Array.from([...Buffer.from(p), ...b])),
      fc.uint8Array({ maxLength: 4 }).map((b) => b.map((x) => x % 3)), // few distinct bytes: deep, tied buckets
    );
    fc.assert(fc.property(fc.array(key, { maxLength: 3_000 }), (raw) => {
      const keys = raw.map((k) => Buffer.from(k));
      const want = [...keys].sort(Buffer.compare).map((k) => k.toString('hex'));
      expect(sortByteKeys(keys).map((k) => k.toString('hex'))).toEqual(want);
    }), { numRuns: 300 });
    // Keys that are prefixes of each other, and 200 keys sharing a 20 KB prefix: past the radix
    // depth limit such ranges go to a comparison sort (one recursion a byte overflowed the stack).
    const long = [
      ...Array.from({ length: 600 }, (_, i) => Buffer.alloc(1 + i * 7, 0x61)),
      ...Array.from({ length: 200 }, (_, i) => Buffer.concat([Buffer.alloc(20_000, 0x62), Buffer.from(String((i * 7919) % 200))])),
    ];
    const shuffled = long.map((k, i) => [(i * 2654435761) % 4093, k] as const).sort((a, b) => a[0] - b[0]).map(([, k]) => k);
    expect(sortByteKeys(shuffled).map((k) => k.toString('hex'))).toEqual([...long].sort(Buffer.compare).map((k) => k.toString('hex')));
  });
});

describe.each(MODES)('KeySorter (%s)', (mode) => {
  it('returns every key in byte order through runs and multi-pass merges', async () => {
    const engine = await openEngine(mode, { pageSize: 16384 });
    await fc.assert(fc.asyncProperty(
      fc.array(fc.uint8Array({ minLength: 0, maxLength: 40 }), { maxLength: 2_000 }),
      fc.integer({ min: 1, max: 120 }),
      async (keys, runKeys) => {
        const sorter = new KeySorter(engine.spill, 'test', runKeys);
        for (const k of keys) await sorter.add(Buffer.from(k));
        const want = keys.map((k) => Buffer.from(k)).sort(Buffer.compare).map((k) => k.toString('hex'));
        expect(await collect(sorter.sorted())).toEqual(want);
        expect(engine.pager.spillPagesInUse).toBe(0);
      },
    ), { numRuns: 40 });
    // 60 runs: more than a merge reads at once (16), so some are merged into longer runs first.
    const sorter = new KeySorter(engine.spill, 'test', 50);
    const keys = Array.from({ length: 3_000 }, (_, i) => Buffer.from(`${(i * 7919) % 1_000}`.padStart(i % 5, '0')));
    for (const k of keys) await sorter.add(k);
    const runsBefore = engine.stats().spill.runsWritten;
    expect(await collect(sorter.sorted())).toEqual([...keys].sort(Buffer.compare).map((k) => k.toString('hex')));
    expect(engine.stats().spill.runsWritten).toBeGreaterThan(runsBefore); // the first merge pass wrote runs
    expect(engine.pager.spillPagesInUse).toBe(0);
  });

  it('runs longer than one read: each chunk of sortedChunks() read as it comes is in order', async () => {
    const engine = await openEngine(mode, { pageSize: 16384 });
    // Keys of 200–400 bytes, 10,500 a run: runs of ~3.2 MB, four 1 MiB extents read one at a
    // time into a reused buffer, so the merge moves each run on to its next read (which
    // overwrites the memory the previous read's keys viewed) mid-way. Deterministic keys: a
    // failure is not shrunk for minutes.
    let seed = 12345;
    const byte = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) >>> 8) & 0xff;
    const keys = Array.from({ length: 22_000 }, () => Buffer.from(Array.from({ length: 200 + byte() % 201 }, byte)));
    const sorter = new KeySorter(engine.spill, 'test', 10_500);
    for (const k of keys) await sorter.add(k);
    const got: string[] = [];
    for await (const chunk of sorter.sortedChunks()) for (const k of chunk) got.push(k.toString('hex'));
    expect(got).toEqual([...keys].sort(Buffer.compare).map((k) => k.toString('hex')));
    expect(engine.pager.spillPagesInUse).toBe(0);
  });

  it('releases its spill pages when stopped early or dropped', async () => {
    const engine = await openEngine(mode, { pageSize: 16384 });
    const fill = async () => {
      const sorter = new KeySorter(engine.spill, 'test', 100);
      for (let i = 0; i < 5_000; i++) await sorter.add(Buffer.from(`key ${(i * 7919) % 5_000}`));
      expect(engine.pager.spillPagesInUse).toBeGreaterThan(0);
      return sorter;
    };
    const stopped = await fill();
    for await (const key of stopped.sorted()) { expect(key.toString()).toBe('key 0'); break; }
    expect(engine.pager.spillPagesInUse).toBe(0);
    (await fill()).drop();
    expect(engine.pager.spillPagesInUse).toBe(0);
  });
});

const Events = model('events', { id: t.int(), kind: t.int(), label: t.string() }, {
  primaryKey: 'id', indexes: [{ name: 'byKind', fields: ['kind'] }],
});

describe.each(DB_MODES)('an indexed insertMany that spills its index entries (%s)', (mode) => {
  it('loads an index equal to the reference, in one or in two loads', async () => {
    const db = await openDb(mode);
    const events = await db.register(Events);
    const kindOf = (i: number) => (i * 2654435761) % 1_000;
    const rows = (from: number, n: number) => Array.from({ length: n }, (_, k) => ({ id: from + k, kind: kindOf(from + k), label: `e${from + k}` }));
    await events.insertMany(rows(0, 70_000)); // more entries than one in-memory run (65,536)
    expect(db.stats().spill.runsWritten).toBeGreaterThan(0);
    await events.insertMany(rows(70_000, 10_000)); // into an index that is no longer empty
    expect(db.stats().spill.pagesInUse).toBe(0);
    for (const kind of [0, 1, 499, 999]) {
      const q = events.query().where('kind', '=', kind);
      expect(q.explain()).toMatch(/IndexScan.*byKind/);
      const ids = (await q.toArray()).map((r) => r.id).sort((a, b) => a - b);
      expect(ids).toEqual(Array.from({ length: 80_000 }, (_, i) => i).filter((i) => kindOf(i) === kind));
    }
    expect((await db.verify()).ok).toBe(true);
  });
});
