// Spill runs: records written into pages of the database file (or image) read back exactly,
// dropping a run returns its pages, and spill pages never disturb the committed state:
// commits while spilling, a close with spill in use, or a crash with spill pages at the tail.
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { Pager } from '../../storage/pager.js';
import { StorageEngine } from '../../storage/engine.js';
import type { SpillRun } from '../../storage/spill-space.js';
import { ScratchPages } from '../../storage/scratch-pages.js';
import { PageType, sealPage } from '../../storage/page.js';
import {
  MODES, describeCell, describeContent, expectCode, expectVerifyOk, openEngine, seededBytes, tempDir, u32Key,
} from '../helpers/storage.js';

const PAGE_SIZE = 16384;
const MiB = 2 ** 20;

/** Writes `records` into a new run and finishes it. */
async function writeRun(engine: StorageEngine, records: readonly Uint8Array[], label = 'test'): Promise<SpillRun> {
  const writer = engine.spill.createRun(label);
  for (const r of records) await writer.append(r);
  return writer.finish();
}

/** The run's records, described (length and hash: toEqual on megabyte buffers is slow). */
async function readAll(run: SpillRun): Promise<string[]> {
  const out: string[] = [];
  for await (const r of run.records()) out.push(describeCell(r));
  return out;
}
const described = (records: readonly Uint8Array[]) => records.map(describeCell);

/** 1,000 committed rows, so there is something to keep intact. */
async function commitRows(engine: StorageEngine, from = 0, count = 1000): Promise<void> {
  await engine.write(async (tx) => {
    const t = await tx.tree('rows', 2);
    for (let i = from; i < from + count; i++) await t.put(u32Key(i), [seededBytes(i, 100), i % 7 === 0 ? null : u32Key(i)]);
  });
}

const sizeArb = fc.oneof(
  { weight: 20, arbitrary: fc.integer({ min: 0, max: 300 }) },
  { weight: 4, arbitrary: fc.integer({ min: 1000, max: 70_000 }) },
  { weight: 1, arbitrary: fc.integer({ min: MiB - 64, max: MiB + 64 }) },
  { weight: 1, arbitrary: fc.integer({ min: MiB + 1, max: 3 * MiB }) },
);

describe.each(MODES)('spill space (%s)', (mode) => {
  it('small extents and small reads (a budget of a few pages) give back the same records, records longer than either included', async () => {
    const engine = await openEngine(mode, { pageSize: PAGE_SIZE });
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 70_000 }), { maxLength: 60 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 7 }), fc.nat(),
        async (sizes, extentPages, readPages, seed) => {
          const records = sizes.map((n, i) => seededBytes(seed + i, n));
          const writer = engine.spill.createRun('small', extentPages);
          for (const r of records) await writer.append(r);
          const run = await writer.finish();
          const reads: number[] = [];
          const spy = vi.spyOn(Pager.prototype, 'readRunInto');
          try {
            const out: string[] = [];
            for await (const r of run.records(readPages)) out.push(describeCell(r));
            reads.push(...spy.mock.calls.map((call) => call[1] as number));
            spy.mockRestore();
            expect(out).toEqual(described(records));
            // Reads of at most readPages pages, and no bigger than an extent, covering the run.
            for (const pages of reads) expect(pages).toBeLessThanOrEqual(Math.min(readPages, extentPages));
            expect(await readAll(run)).toEqual(described(records)); // whole extents at a time: the same
          } finally {
            spy.mockRestore();
            run.drop();
          }
        }),
      { numRuns: 25 },
    );
    expect(engine.stats().spill.pagesInUse).toBe(0);
    await engine.close();
  });

  it('runs of records of random sizes, some over 1 MiB, read back exactly; drop() returns every page', async () => {
    const engine = await openEngine(mode, { pageSize: PAGE_SIZE });
    await commitRows(engine);
    const committed = await describeContent(engine);
    await fc.assert(
      fc.asyncProperty(fc.array(sizeArb, { maxLength: 300 }), fc.array(sizeArb, { maxLength: 40 }), fc.nat(), async (sizesA, sizesB, seed) => {
        const a = sizesA.map((n, i) => seededBytes(seed + i, n));
        const b = sizesB.map((n, i) => seededBytes(seed - i - 1, n));
        // Two runs written at once: their extents interleave in the file.
        const wa = engine.spill.createRun('a'), wb = engine.spill.createRun('b');
        for (let i = 0; i < Math.max(a.length, b.length); i++) {
          if (i < a.length) await wa.append(a[i]);
          if (i < b.length) await wb.append(b[i]);
        }
        const [ra, rb] = [await wa.finish(), await wb.finish()];
        expect(ra.recordCount).toBe(a.length);
        expect(rb.recordCount).toBe(b.length);
        const total = [...a, ...b].reduce((n, r) => n + r.byteLength, 0);
        if (total > 0) expect(engine.stats().spill.pagesInUse).toBeGreaterThan(0);
        // Read twice, and interleaved with the other run: reading does not consume.
        expect(await readAll(rb)).toEqual(described(b));
        expect(await readAll(ra)).toEqual(described(a));
        expect(await readAll(ra)).toEqual(described(a));
        ra.drop();
        expect(await readAll(rb)).toEqual(described(b));
        rb.drop();
        rb.drop(); // twice is harmless
        expect(engine.stats().spill.pagesInUse).toBe(0);
      }),
      { numRuns: 12 },
    );
    expect(engine.stats().spill.runsWritten).toBe(24);
    expect(await describeContent(engine)).toEqual(committed);
    await expectVerifyOk(engine);
  });

  it('a run dropped while being read stops with ABORTED; an aborted writer returns its pages', async () => {
    const engine = await openEngine(mode, { pageSize: PAGE_SIZE });
    const run = await writeRun(engine, Array.from({ length: 8 }, (_, i) => seededBytes(i, 300_000)));
    const reading = run.records();
    expect(describeCell((await reading.next()).value as Buffer)).toBe(describeCell(seededBytes(0, 300_000)));
    run.drop();
    await expectCode((async () => { for await (const _ of reading); })(), 'ABORTED');
    expect(engine.stats().spill.pagesInUse).toBe(0);

    const writer = engine.spill.createRun('aborted');
    await writer.append(seededBytes(1, 3 * MiB));
    expect(engine.stats().spill.pagesInUse).toBeGreaterThan(0);
    writer.abort();
    expect(engine.stats().spill.pagesInUse).toBe(0);
  });

  it('a group drops at once what its writers and runs still hold, and forgets what they gave back', async () => {
    const engine = await openEngine(mode, { pageSize: PAGE_SIZE });
    const group = engine.spill.group();
    const records = Array.from({ length: 6 }, (_, i) => seededBytes(i, 100_000));
    const finished: SpillRun[] = [];
    for (let k = 0; k < 3; k++) {
      const w = group.createRun(`run ${k}`);
      for (const r of records) await w.append(r);
      finished.push(await w.finish());
    }
    const unfinished = group.createRun('unfinished');
    await unfinished.append(seededBytes(9, 2 * MiB)); // past one extent: pages already written
    const aborted = group.createRun('aborted');
    await aborted.append(seededBytes(8, 2 * MiB));
    aborted.abort();
    finished[0].drop();
    expect(group.size).toBe(3); // runs 1 and 2, and the unfinished writer
    expect(await readAll(finished[1])).toEqual(records.map(describeCell));
    expect(engine.stats().spill.pagesInUse).toBeGreaterThan(0);

    group.dropAll();
    expect(group.size).toBe(0);
    expect(engine.stats().spill.pagesInUse).toBe(0);
    await expectCode((async () => { for await (const _ of finished[2].records()); })(), 'ABORTED');
    // Runs outside any group are not touched by a group.
    const outside = await writeRun(engine, records);
    engine.spill.group().dropAll();
    expect(await readAll(outside)).toEqual(records.map(describeCell));
    outside.drop();
    expect(engine.stats().spill.pagesInUse).toBe(0);
  });

  it('scratch pages (read-only opens) reuse their space, verify what they read, and fail with IO where no file can be made', async () => {
    const pages = new ScratchPages(PAGE_SIZE);
    try {
      const a = pages.allocate(3), b = pages.allocate(2);
      expect([a, b]).toEqual([0, 3]);
      const image = Buffer.alloc(2 * PAGE_SIZE);
      for (let p = 0; p < 2; p++) sealPage(image.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE), PageType.Spill, b + p, 0, 10);
      await pages.write(b, image);
      const back = Buffer.alloc(2 * PAGE_SIZE);
      expect((await pages.readInto(b, 2, back)).map((i) => i.bodyLength)).toEqual([10, 10]);
      await expectCode(pages.readInto(a, 1, back), 'CORRUPT'); // never written: no valid page there
      pages.release(a);
      expect(pages.pagesInUse).toBe(2);
      expect(pages.allocate(3)).toBe(a); // the freed run is taken again
      expect(pages.fileBytes).toBe(5 * PAGE_SIZE);
      pages.release(a);
      pages.release(b);
      // Nothing in use: the file gives its space back, and the next run starts at page 0.
      expect(pages.allocate(1)).toBe(0);
      await pages.write(0, image.subarray(0, PAGE_SIZE).fill(0));
      expect(pages.fileBytes).toBe(PAGE_SIZE);
    } finally {
      await pages.close();
    }
    const nowhere = new ScratchPages(PAGE_SIZE, path.join(tempDir(), 'missing', 'dir'));
    nowhere.allocate(1);
    await expectCode(nowhere.write(0, Buffer.alloc(PAGE_SIZE)), 'IO');
    await expectCode(nowhere.write(0, Buffer.alloc(PAGE_SIZE)), 'IO'); // tried again, not a stuck failure
    await nowhere.close();
  });

  it('commits while spill pages are in use keep verify() ok, and dropped spill pages are reused', async () => {
    const engine = await openEngine(mode, { pageSize: PAGE_SIZE });
    await commitRows(engine, 0);
    const records = Array.from({ length: 40 }, (_, i) => seededBytes(i, i % 10 === 0 ? 1.5 * MiB : 20_000));
    const run = await writeRun(engine, records);
    const spillPages = engine.stats().spill.pagesInUse;
    expect(spillPages).toBeGreaterThan(4 * MiB / PAGE_SIZE);

    await commitRows(engine, 1000); // allocates while the spill holds its pages
    const committed = await describeContent(engine);
    expect(committed.rows.entries).toHaveLength(2000);
    await expectVerifyOk(engine); // spill pages are free as far as the file is concerned
    expect(await readAll(run)).toEqual(described(records));

    run.drop();
    expect(engine.stats().spill.pagesInUse).toBe(0);
    await commitRows(engine, 2000, 10);
    const report = await expectVerifyOk(engine);
    expect(report.freePages).toBeGreaterThanOrEqual(spillPages - 8);
    // The same run again goes (mostly) into the returned pages instead of growing the image.
    const pages = engine.stats().pageCount;
    const again = await writeRun(engine, records);
    await commitRows(engine, 3000, 10);
    expect(engine.stats().pageCount).toBeLessThan(pages + spillPages / 4);
    expect(await readAll(again)).toEqual(described(records));
    again.drop();
    await expectVerifyOk(engine);
  });
});

describe('spill space in a file', () => {
  it('a close with spill pages at the tail leaves only the committed image, which reopens intact', async () => {
    const engine = await openEngine('file', { pageSize: PAGE_SIZE });
    await commitRows(engine);
    const committed = await describeContent(engine);
    const imageBytes = engine.stats().pageCount * PAGE_SIZE;
    await writeRun(engine, [seededBytes(1, 5 * MiB)]); // never dropped
    expect(fs.statSync(engine.path!).size).toBeGreaterThan(imageBytes);
    await engine.close();
    expect(fs.statSync(engine.path!).size).toBe(imageBytes);

    const reopened = await StorageEngine.open(engine.path!);
    try {
      expect(reopened.recoveryInfo).toBeNull();
      expect(reopened.stats().spill.pagesInUse).toBe(0);
      expect(await describeContent(reopened)).toEqual(committed);
      await expectVerifyOk(reopened);
    } finally {
      await reopened.close();
    }
  });

  it('a close with spill pages inside the committed image (a commit happened meanwhile) reopens with them free', async () => {
    const engine = await openEngine('file', { pageSize: PAGE_SIZE });
    await commitRows(engine);
    const run = await writeRun(engine, [seededBytes(2, 3 * MiB), seededBytes(3, 10)]);
    const spillPages = engine.stats().spill.pagesInUse;
    await commitRows(engine, 1000, 100); // its image covers the spill pages, listed as free
    const committed = await describeContent(engine);
    expect(engine.stats().freePages).toBeGreaterThanOrEqual(spillPages);
    await engine.close();
    await expectCode(readAll(run), 'CLOSED');

    const reopened = await StorageEngine.open(engine.path!);
    try {
      expect(reopened.recoveryInfo).toBeNull();
      expect(await describeContent(reopened)).toEqual(committed);
      const report = await expectVerifyOk(reopened);
      expect(report.freePages).toBeGreaterThanOrEqual(spillPages);
      // The spill pages are reused by the next allocations instead of growing the file.
      const pages = reopened.stats().pageCount;
      await commitRows(reopened, 5000, 1000);
      expect(reopened.stats().pageCount).toBe(pages);
      await expectVerifyOk(reopened);
    } finally {
      await reopened.close();
    }
  });

  it('a crash with spill in use (the file as it is on disk) reopens with the committed state, the tail truncated', async () => {
    const engine = await openEngine('file', { pageSize: PAGE_SIZE });
    await commitRows(engine);
    const committed = await describeContent(engine);
    const imageBytes = engine.stats().pageCount * PAGE_SIZE;
    const writer = engine.spill.createRun('crash');
    for (let i = 0; i < 5; i++) await writer.append(seededBytes(i, MiB)); // extents written, run unfinished
    // No close: copy the file as a crash would leave it.
    const crashed = path.join(tempDir(), 'crashed.modelvault');
    fs.copyFileSync(engine.path!, crashed);
    const crashedBytes = fs.statSync(crashed).size;
    expect(crashedBytes).toBeGreaterThan(imageBytes);

    const reopened = await StorageEngine.open(crashed);
    try {
      expect(reopened.recoveryInfo?.truncatedBytes).toBe(crashedBytes - imageBytes);
      expect(fs.statSync(crashed).size).toBe(imageBytes);
      expect(await describeContent(reopened)).toEqual(committed);
      await expectVerifyOk(reopened);
    } finally {
      await reopened.close();
    }
    writer.abort();
  });
});
