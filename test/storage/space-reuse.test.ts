// Pages freed by commits are reused, so a database updated in place stays the size of its
// data; pages a pinned snapshot can still reach are not reused until it is released.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { StorageEngine } from '../../storage/engine.js';
import { MemoryStore } from '../../storage/memory-store.js';
import { PAGE_HEADER_BYTES, PageType } from '../../storage/page.js';
import { Pager, type DirtyPage } from '../../storage/pager.js';
import { MODES, describeEntry, expectVerifyOk, openEngine, readEntries, seededBytes, u32Key } from '../helpers/storage.js';

const PAGE_SIZE = 16384;
const ROWS = 1000;
const VALUE_BYTES = 200; // 1,000 rows fill about 15 leaves: a two-level tree

const valueOf = (row: number, version: number) => seededBytes(row * 100_003 + version, VALUE_BYTES);
/** Spreads consecutive updates over the whole tree. */
const rowFor = (update: number) => (update * 7919) % ROWS;

async function load(engine: StorageEngine): Promise<void> {
  await engine.write(async (tx) => {
    const rows = await tx.tree('rows', 1);
    for (let i = 0; i < ROWS; i++) await rows.put(u32Key(i), [valueOf(i, 0)]);
  });
}

/** One commit updating one row to `version`. */
async function updateOne(engine: StorageEngine, row: number, version: number): Promise<void> {
  await engine.write(async (tx) => {
    const result = await (await tx.tree('rows', 1)).put(u32Key(row), [valueOf(row, version)], 'update');
    if (result !== 'replaced') throw new Error(`update of row ${row} gave ${result}`);
  });
}

/** The entries of `rows` when row i holds version `versions[i]`. */
const expectedRows = (versions: readonly number[]) => versions.map((v, i) => describeEntry(u32Key(i), [valueOf(i, v)]));

describe.each(MODES)('space reuse (%s)', (mode) => {
  it('20,000 single-row update commits keep the file within 4x of its size after the first 1,000', { timeout: 300_000 }, async () => {
    const engine = await openEngine(mode, { pageSize: PAGE_SIZE });
    await load(engine);
    const versions = new Array<number>(ROWS).fill(0);
    /** Image size per the superblock, the store's size and, for a file, the size on disk. */
    const sizes = () => {
      const s = engine.stats();
      return [s.pageCount * s.pageSize, s.fileBytes, ...(engine.path ? [fs.statSync(engine.path).size] : [])];
    };
    let baseline = 0;
    let largest = 0;
    for (let u = 1; u <= 20_000; u++) {
      const row = rowFor(u);
      await updateOne(engine, row, u);
      versions[row] = u;
      if (u === 1000) baseline = Math.max(...sizes());
      if (u > 1000 && u % 100 === 0) largest = Math.max(largest, ...sizes());
    }
    expect(baseline).toBeGreaterThan(0);
    expect(largest).toBeLessThanOrEqual(4 * baseline);
    const [imageBytes, storeBytes, diskBytes] = sizes();
    expect(storeBytes).toBe(imageBytes); // nothing past the committed image
    if (diskBytes !== undefined) expect(diskBytes).toBe(imageBytes);
    expect(engine.stats().commits).toBe(20_001);

    using snap = engine.snapshot();
    expect(await readEntries(snap, 'rows')).toEqual(expectedRows(versions));
    snap.release();
    const report = await expectVerifyOk(engine);
    expect(report.entries).toBe(ROWS);
  });

  it('a pinned snapshot keeps its values and its pages through 2,000 updates; after release the space is reused', async () => {
    const engine = await openEngine(mode, { pageSize: PAGE_SIZE, cacheSize: 0 });
    await load(engine);
    const versions = new Array<number>(ROWS).fill(0);
    for (let u = 1; u <= 200; u++) { // reach a steady state with free pages to reuse
      await updateOne(engine, rowFor(u), u);
      versions[rowFor(u)] = u;
    }
    const pinnedVersions = [...versions];
    const snap = engine.snapshot();
    expect(engine.stats().snapshots).toBe(1);
    const pagesAtPin = engine.stats().pageCount;

    for (let u = 201; u <= 2200; u++) {
      await updateOne(engine, rowFor(u), u);
      versions[rowFor(u)] = u;
      if (u % 500 === 0) expect((await snap.get('rows', u32Key(rowFor(u))))?.[0]).toEqual(valueOf(rowFor(u), pinnedVersions[rowFor(u)]));
    }
    // Every commit wrote its leaf to a page the snapshot does not use: the file had to grow.
    const pagesWhilePinned = engine.stats().pageCount;
    expect(pagesWhilePinned - pagesAtPin).toBeGreaterThanOrEqual(1000);

    // Read the snapshot from the store, not the pool: its pages still hold its state.
    engine.pager.pool.clear();
    expect(await readEntries(snap, 'rows')).toEqual(expectedRows(pinnedVersions));
    expect(await readEntries(snap, 'rows', { gte: u32Key(100), lt: u32Key(200), reverse: true }))
      .toEqual(expectedRows(pinnedVersions).slice(100, 200).reverse());
    {
      using now = engine.snapshot();
      expect(await readEntries(now, 'rows')).toEqual(expectedRows(versions));
    }
    await expectVerifyOk(engine);

    snap.release();
    expect(engine.stats().snapshots).toBe(0);
    for (let u = 2201; u <= 4200; u++) {
      await updateOne(engine, rowFor(u), u);
      versions[rowFor(u)] = u;
    }
    // The pages held for the snapshot were enough for as many commits again.
    expect(engine.stats().pageCount).toBe(pagesWhilePinned);
    expect(engine.stats().freePages).toBeGreaterThan(1000);
    {
      using now = engine.snapshot();
      expect(await readEntries(now, 'rows')).toEqual(expectedRows(versions));
    }
    await expectVerifyOk(engine);
  });

  it('rolled-back transactions give their pages back', async () => {
    const engine = await openEngine(mode, { pageSize: PAGE_SIZE });
    await load(engine);
    for (let u = 1; u <= 50; u++) await updateOne(engine, rowFor(u), u);
    const pages = engine.stats().pageCount;
    for (let u = 0; u < 500; u++) {
      await expect(engine.write(async (tx) => {
        const rows = await tx.tree('rows', 1);
        for (let k = 0; k < 20; k++) await rows.put(u32Key(rowFor(u * 20 + k)), [seededBytes(u, VALUE_BYTES)]);
        await rows.put(u32Key(ROWS + u), [seededBytes(u, 40_000)]); // an overflow run too
        throw new Error('roll back');
      })).rejects.toThrow('roll back');
    }
    // The next commit publishes the allocator's state: at most one transaction's worth of tail
    // pages (taken when no free run was long enough) was added; 500 leaked transactions would be thousands.
    await updateOne(engine, 0, 99);
    expect(engine.stats().pageCount).toBeLessThanOrEqual(pages + 30);
    const report = await expectVerifyOk(engine);
    expect(report.entries).toBe(ROWS);
  });
});

describe('the free list', () => {
  it('lists every free page when taking a page for the list itself splits a free range', async () => {
    // One free-list page holds PER_PAGE ranges. Build exactly PER_PAGE free ranges, then commit
    // frees that join the highest reusable page to both neighbours: taking that page for the
    // list splits the joined range in two, one range more than the pages counted for.
    const PER_PAGE = Math.floor((PAGE_SIZE - PAGE_HEADER_BYTES - 8) / 8);
    const store = new MemoryStore();
    const pager = await Pager.open(store, { pageSize: PAGE_SIZE });
    const blank: DirtyPage = { pageType: PageType.Leaf, encodeInto: () => 0 };
    let txn = pager.beginWrite();
    for (let i = 0; i < 2 * PER_PAGE + 4; i++) txn.setDirty(txn.allocatePage(), blank); // pages 1 .. 2N+4
    await txn.commit();
    txn = pager.beginWrite();
    for (let p = 3; p <= 2 * PER_PAGE + 1; p += 2) txn.freePage(p); // N single-page ranges
    await txn.commit();
    txn = pager.beginWrite();
    txn.freePage(2 * PER_PAGE);     // joins 2N-1, 2N, 2N+1 (reusable, the highest), 2N+2
    txn.freePage(2 * PER_PAGE + 2);
    await txn.commit();
    const freePages = pager.freePageCount; // what the superblock counts
    const image = store.copyBytes();
    await pager.close();

    const engine = await StorageEngine.openMemory({}, image);
    try {
      expect((await engine.verify()).freePages).toBe(freePages); // what the free list holds
    } finally {
      await engine.close();
    }
    // Reopened, every free page is handed out again before the file grows.
    const reopened = await Pager.open(new MemoryStore(image));
    txn = reopened.beginWrite();
    let reused = 0;
    while (txn.allocatePage() < reopened.pageCount) reused++;
    expect(reused).toBe(freePages);
    txn.rollback();
    await reopened.close();
  });
});
