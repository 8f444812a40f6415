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

// Spill runs are read back through one reused buffer per run (SpillRun.records): binary values
// decoded from a record must be copies, or rows a sort or join handed out would change.
const Owners = model('owners', { id: t.int(), badge: t.bytes(), name: t.string() }, { primaryKey: 'id' });
const badgeOf = (i: number) => Uint8Array.from({ length: 16 }, (_, k) => (i * 13 + k * 5 + 1) & 0xff);

const SPILL_ROWS = ROWS / 2; // about 2 MiB of rows against a 1 MiB memoryLimit

describe('values that went through spill runs', () => {
  it('stay intact after a spilling sort and a spilling join', async () => {
    const db = await Database.openInMemory({ cacheSize: 1 << 20, pageSize: 16384, memoryLimit: 1 << 20 });
    try {
      const docs = await db.register(Docs);
      const owners = await db.register(Owners);
      await docs.insertMany(Array.from({ length: SPILL_ROWS }, (_, i) => doc(i)));
      await owners.insertMany(Array.from({ length: SPILL_ROWS }, (_, i) => ({ id: i, badge: badgeOf(i), name: `owner ${i}` })));

      const sorted = docs.query().orderBy('note', 'desc');
      expect(await sorted.explain({ analyze: true })).toMatch(/Sort[^\n]*spilled [1-9][\d.]* [KM]iB in \d+ runs/);
      const kept = await sorted.toArray();
      const want = Array.from({ length: SPILL_ROWS }, (_, i) => doc(i)).sort((a, b) => (a.note < b.note ? 1 : a.note > b.note ? -1 : 0));
      expect(kept.length).toBe(SPILL_ROWS);
      for (let k = 0; k < SPILL_ROWS; k++) expect(kept[k]).toEqual(want[k]);

      const joined = docs.query().join(Owners, 'id', 'id', { as: 'owner' });
      expect(await joined.explain({ analyze: true })).toMatch(/HashJoin[^\n]*spilled [1-9]/);
      const rows = await joined.toArray();
      expect(rows.length).toBe(SPILL_ROWS);
      for (const r of rows) {
        expect(r.blob).toEqual(bytesOf(r.id));
        expect(r.meta).toEqual(doc(r.id).meta);
        expect(r.owner).toEqual({ id: r.id, badge: badgeOf(r.id), name: `owner ${r.id}` });
      }
    } finally {
      await db.close();
    }
  });
});
