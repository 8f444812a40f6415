// Scans that read around the buffer pool (`slices(..., { transient: true })`): once the pool is
// full they read runs of leaves into one reused buffer. They must return exactly what a pooled
// walk returns (forward, reverse, bounded), must not evict the pool's pages, and a page that
// fails its checksum must still be CORRUPT.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { StorageEngine } from '../../storage/engine.js';
import type { KeyBounds } from '../../storage/btree.js';
import { MODES, expectCode, fillTree, openEngine, reopenEngine, tempFile, u32Key } from '../helpers/storage.js';

const PAGE = 16384;
const ROWS = 40_000;
const value = (i: number) => Buffer.from(`value ${i} `.repeat(1 + (i % 5)));

const fill = (engine: StorageEngine) => fillTree(engine, 't', ROWS, value);

/** Keys and values of a walk, copied out of each slice before the next is pulled. */
async function walk(engine: StorageEngine, bounds: KeyBounds, transient: boolean): Promise<string[]> {
  using snap = engine.snapshot();
  const out: string[] = [];
  for await (const { leaf, start, end } of snap.slices('t', bounds, { transient })) {
    for (let k = start; k < end; k++) {
      const i = bounds.reverse ? end - 1 - (k - start) : k;
      out.push(`${leaf.key(i).readUInt32BE(0)}=${Buffer.from(leaf.cell(i, 0) as Buffer).toString()}`);
    }
  }
  return out;
}

describe.each(MODES)('transient leaf walks (%s)', (mode) => {
  it('return what a pooled walk returns and leave the pool as it was', async () => {
    const engine = await openEngine(mode, { pageSize: PAGE, cacheSize: 1 << 20 });
    await fill(engine);
    const cases: KeyBounds[] = [{}, { reverse: true }, { gte: u32Key(1234), lt: u32Key(30_000) }, { gt: u32Key(5), lte: u32Key(39_000), reverse: true }];
    for (const bounds of cases) {
      const pooled = await walk(engine, bounds, false);
      // Fill the pool with the first leaves again, then check a transient walk keeps them.
      await walk(engine, { lt: u32Key(2_000) }, false);
      const before = engine.stats().cache;
      const transient = await walk(engine, bounds, true);
      expect(transient).toEqual(pooled);
      const after = engine.stats().cache;
      expect(after.bytes).toBeLessThanOrEqual(before.maxBytes);
      const hits = engine.stats().cache.hits;
      await walk(engine, { lt: u32Key(2_000) }, false);
      expect(engine.stats().cache.misses).toBe(after.misses); // the hot leaves were not evicted
      expect(engine.stats().cache.hits).toBeGreaterThan(hits);
    }
    const all = await walk(engine, {}, true);
    expect(all.length).toBe(ROWS);
    expect(all[ROWS - 1]).toBe(`${ROWS - 1}=${value(ROWS - 1).toString()}`);
  });
});

describe.each(MODES)('bulk reads (%s)', (mode) => {
  it('a transient walk of a tree over twice the pool leaves the pool to lookups; a smaller tree is cached', async () => {
    // 40,000 rows of 200-byte values: about 9 MiB of leaves, over twice a 1 MiB pool.
    const written = await openEngine(mode, { pageSize: PAGE, cacheSize: 1 << 20 });
    await fillTree(written, 't', ROWS, (i) => Buffer.alloc(200, i % 251));
    await fillTree(written, 'small', 6000, value); // about 0.3 MiB: cached
    const engine = await reopenEngine(written); // an empty pool
    const cached = () => engine.stats().cache.bytes;
    const walkAll = async (tree: string) => {
      using snap = engine.snapshot();
      let n = 0;
      for await (const { start, end } of snap.slices(tree, {}, { transient: true })) n += end - start;
      return n;
    };
    const start = cached();
    expect(await walkAll('t')).toBe(ROWS);
    // Only the branches on the way down entered the pool, not the leaves.
    expect(cached() - start).toBeLessThanOrEqual(8 * PAGE);
    expect(await walkAll('t')).toBe(ROWS);
    expect(cached() - start).toBeLessThanOrEqual(8 * PAGE);

    const beforeSmall = cached();
    expect(await walkAll('small')).toBe(6000);
    expect(cached() - beforeSmall).toBeGreaterThan(8 * PAGE); // its leaves stay for the next walk
    const misses = engine.stats().cache.misses;
    expect(await walkAll('small')).toBe(6000);
    expect(engine.stats().cache.misses).toBe(misses);
  });
});

describe('transient leaf walks over damaged pages', () => {
  it('report CORRUPT for a leaf that fails its checksum', async () => {
    const file = tempFile();
    const engine = await StorageEngine.open(file, { pageSize: PAGE, cacheSize: 1 << 20 });
    await fill(engine);
    await engine.close();
    // Flip a byte in the body of a page near the end (a leaf: the tree is mostly leaves).
    const fd = fs.openSync(file, 'r+');
    const pages = fs.fstatSync(fd).size / PAGE;
    const at = (pages - 40) * PAGE + 1000;
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, at);
    fs.closeSync(fd);
    const reopened = await StorageEngine.open(file, { pageSize: PAGE, cacheSize: 1 << 20 });
    try {
      await expectCode(walk(reopened, {}, true), 'CORRUPT');
    } finally {
      await reopened.close();
    }
  });
});
