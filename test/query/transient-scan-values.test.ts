// Table scans and index fetches read leaves around a full buffer pool into one reused buffer.
// Every value a query hands out must be its own copy: rows kept after it has moved on (json
// with binary inside, bytes, strings, lists) must still hold exactly what was stored.
import { describe, expect, it } from 'vitest';
import { Database, model, t } from '../../src/index.js';

const Docs = model('docs', {
  id: t.int(),
  blob: t.bytes(),
  meta: t.json(),
  tags: t.list(t.string()),
  note: t.string(),
}, { primaryKey: 'id' });

const IndexedDocs = model('docs', {
  id: t.int(),
  group: t.int(),
  blob: t.bytes(),
  meta: t.json(),
  tags: t.list(t.string()),
  note: t.string(),
}, { primaryKey: 'id', indexes: [{ name: 'byGroup', fields: ['group'] }] });

const ROWS = 20_000; // about 5 MiB of leaves against a 1 MiB pool (the smallest cacheSize)
const bytesOf = (i: number) => Uint8Array.from({ length: 24 }, (_, k) => (i * 31 + k * 7) & 0xff);
const doc = (i: number) => ({ id: i, blob: bytesOf(i), meta: { i, raw: bytesOf(i + 1), nested: [bytesOf(i + 2)] }, tags: [`t${i % 7}`, `u${i}`], note: `note ${i} `.repeat(4) });

describe('values from a scan larger than the pool', () => {
  it('stay intact after the scan has read past their pages', async () => {
    const db = await Database.openInMemory({ cacheSize: 1 << 20, pageSize: 16384 });
    try {
      const docs = await db.register(Docs);
      await docs.insertMany(Array.from({ length: ROWS }, (_, i) => doc(i)));
      const kept = await docs.query().toArray(); // every row kept while the scan walks on
      expect(kept.length).toBe(ROWS);
      expect(db.stats().cache.bytesRead).toBeGreaterThan(3 << 20); // most leaves were read around the pool
      for (let i = 0; i < ROWS; i++) expect(kept[i]).toEqual(doc(i));
    } finally {
      await db.close();
    }
  });
});

describe('rows fetched through an index larger than the pool', () => {
  it('are exact, and stay intact after the fetch has read past their pages', async () => {
    const db = await Database.openInMemory({ cacheSize: 1 << 20, pageSize: 16384 });
    try {
      const docs = await db.register(IndexedDocs);
      // group scatters each group's rows over every leaf of the rows tree.
      const groupOf = (i: number) => (i * 7919) % 97;
      await docs.insertMany(Array.from({ length: ROWS }, (_, i) => ({ ...doc(i), group: groupOf(i) })));
      for (const [lo, hi] of [[3, 3], [10, 12], [50, 51]]) {
        const q = docs.query().where('group', '>=', lo).where('group', '<=', hi);
        expect(q.explain()).toMatch(/IndexScan.*byGroup/);
        const missesBefore = db.stats().cache.misses;
        const kept = await q.toArray();
        const want = Array.from({ length: ROWS }, (_, i) => i).filter((i) => groupOf(i) >= lo && groupOf(i) <= hi);
        expect(kept.map((r) => r.id).sort((a, b) => a - b)).toEqual(want);
        for (const r of kept) expect(r).toEqual({ ...doc(r.id), group: groupOf(r.id) });
        expect(db.stats().cache.misses - missesBefore).toBeGreaterThan(0);
        expect(db.stats().cache.bytes).toBeLessThanOrEqual(db.stats().cache.maxBytes);
      }
    } finally {
      await db.close();
    }
  });
});
