// Page buffers that leave the buffer pool are reused for later reads, but only once no reader
// that could still hold them is running (a grace period). These tests check the reuse happens,
// that a reader's views of an evicted page never change under it, and that pages read around
// a full pool (`nodeAround`) are exact and leave the pool as it was.
import { describe, expect, it } from 'vitest';
import { BufferPool } from '../../storage/buffer-pool.js';
import type { LeafLike } from '../../storage/btree-node.js';
import { StorageEngine } from '../../storage/engine.js';
import { PageType } from '../../storage/page.js';
import { MODES, fillTree, openEngine, u32Key } from '../helpers/storage.js';

const PAGE = 16384;
const ROWS = 30_000;
const value = (i: number) => Buffer.from(`value ${i} `.repeat(1 + (i % 7)));

const fill = (engine: StorageEngine) => fillTree(engine, 't', ROWS, value);

/** Point gets of `count` keys spread over the tree (a 1 MiB pool holds a small part of it). */
function churn(engine: StorageEngine, count: number, seed: number): void {
  const reader = engine.latestSync();
  for (let k = 0; k < count; k++) {
    const i = (seed + k * 7919) % ROWS;
    const cells = reader.getSync('t', u32Key(i));
    expect(Buffer.from(cells![0]!).equals(value(i))).toBe(true);
  }
}

const page = (fill: number) => {
  const b = Buffer.alloc(PAGE, fill);
  return { bytes: b, info: { type: PageType.Leaf, pageNo: 1, generation: 1, bodyLength: 0 } };
};

describe('BufferPool recycling', () => {
  it('hands a buffer that left the pool back only after the readers running then have ended', () => {
    const pool = new BufferPool(1 << 20, PAGE); // room for 63 pages
    const first = pool.beginRead();
    const evicted: Buffer[] = [];
    for (let p = 0; p < 80; p++) {
      const entry = page(p);
      if (p < 17) evicted.push(entry.bytes);
      pool.set(p, entry);
    }
    // A buffer from the quarantine would be one of the evicted pages' buffers.
    const fresh = pool.pageBuffer();
    expect(evicted.includes(fresh)).toBe(false);
    expect(pool.stats().buffersReused).toBe(0);
    const second = pool.beginRead(); // began after the evictions: does not hold the old pages
    pool.endRead(first);
    const reused = pool.pageBuffer();
    expect(evicted.includes(reused)).toBe(true);
    expect(pool.stats().buffersReused).toBe(1);
    pool.endRead(second);
  });

  it('reuses at once when no reader is running, and keeps at most a sixteenth of cacheSize aside', () => {
    const pool = new BufferPool(1 << 20, PAGE);
    for (let p = 0; p < 200; p++) pool.set(p, page(p));
    let reused = 0;
    for (let k = 0; k < 40; k++) {
      pool.pageBuffer();
      reused = pool.stats().buffersReused;
    }
    expect(reused).toBe(Math.max(16, (1 << 20) / 16 / PAGE));
  });

  it('never recycles a view into a larger buffer', () => {
    const pool = new BufferPool(1 << 20, PAGE);
    const big = Buffer.alloc(PAGE * 4);
    pool.set(0, { bytes: big.subarray(0, PAGE), info: page(0).info });
    pool.delete(0);
    pool.pageBuffer();
    expect(pool.stats().buffersReused).toBe(0);
  });
});

describe.each(MODES)('page buffer recycling (%s)', (mode) => {
  it('point gets through a small pool reuse buffers and return exact values', async () => {
    const engine = await openEngine(mode, { pageSize: PAGE, cacheSize: 1 << 20 });
    await fill(engine);
    churn(engine, 5_000, 1);
    const s = engine.stats().cache;
    expect(s.misses).toBeGreaterThan(1_000);
    expect(s.buffersReused).toBeGreaterThan(s.misses / 2);
    expect(s.bytes).toBeLessThanOrEqual(s.maxBytes);
  });

  it('a pinned reader keeps its views of evicted pages intact while gets churn the pool', async () => {
    const engine = await openEngine(mode, { pageSize: PAGE, cacheSize: 1 << 20 });
    await fill(engine);
    using snap = engine.snapshot();
    const walk = snap.slices('t')[Symbol.asyncIterator]();
    const held: { leaf: LeafLike; start: number; end: number }[] = [];
    const copies: string[] = [];
    for (let n = 0; n < 3; n++) {
      const slice = (await walk.next()).value!;
      held.push(slice);
      for (let i = slice.start; i < slice.end; i++) copies.push(`${slice.leaf.key(i).toString('hex')}=${Buffer.from(slice.leaf.cell(i, 0) as Buffer).toString()}`);
    }
    const reusedBefore = engine.stats().cache.buffersReused;
    churn(engine, 6_000, 17); // evicts the held leaves many times over
    const again = held.flatMap((s) => Array.from({ length: s.end - s.start }, (_, k) =>
      `${s.leaf.key(s.start + k).toString('hex')}=${Buffer.from(s.leaf.cell(s.start + k, 0) as Buffer).toString()}`));
    expect(again).toEqual(copies);
    // While the reader runs, buffers that left the pool wait; gets still allocate afresh.
    expect(engine.stats().cache.buffersReused).toBe(reusedBefore);
    await walk.return?.(undefined);
    snap.release();
    churn(engine, 2_000, 29);
    expect(engine.stats().cache.buffersReused).toBeGreaterThan(reusedBefore);
  });

  it('nodeAround reads exact leaves around a full pool without changing it', async () => {
    const engine = await openEngine(mode, { pageSize: PAGE, cacheSize: 1 << 20 });
    await fill(engine);
    churn(engine, 2_000, 3); // the pool is full now
    using snap = engine.snapshot();
    const src = snap.nodeSource;
    const root = await snap.treeRoot('t');
    const leaves: number[] = [];
    const walkTree = (pageNo: number) => {
      const node = src.node(pageNo);
      if (node.isLeaf) leaves.push(pageNo);
      else for (let i = 0; i < node.count; i++) walkTree(node.child(i));
    };
    walkTree(root);
    const scratch = Buffer.alloc(PAGE);
    const cached = leaves.filter((p) => engine.pager.pool.has(p)).length;
    expect(leaves.length - cached).toBeGreaterThan(30);
    const before = engine.stats().cache;
    let rows = 0;
    for (const pageNo of leaves) {
      const leaf = src.nodeAround(pageNo, scratch) as LeafLike;
      for (let i = 0; i < leaf.count; i++) {
        const key = leaf.key(i).readUInt32BE(0);
        expect(Buffer.from(leaf.cell(i, 0) as Buffer).equals(value(key))).toBe(true);
        rows++;
      }
    }
    expect(rows).toBe(ROWS);
    const after = engine.stats().cache;
    expect(after.misses - before.misses).toBe(leaves.length - cached); // every other leaf was read around the pool
    expect(after.bytes).toBe(before.bytes);
    expect(after.buffersReused).toBe(before.buffersReused);
  });
});
