// A scan whose every row goes into a full sort reads a collection larger than a quarter of the
// buffer pool around the pool (the sort keeps what it needs; cached pages would only add to its
// memory), while other scans of a collection up to twice the pool still fill the pool. A file
// store: the in-memory store does not page its collections through the pool.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Database, model, t } from '../../src/index.js';

const Items = model('items', {
  id: t.int(),
  score: t.float(),
  note: t.string(),
}, { primaryKey: 'id' });

const ROWS = 8_000; // about 1 MiB of leaves against a 1 MiB pool: under twice the pool, over a quarter
const item = (i: number) => ({ id: i, score: (i * 7919) % 1000 + i / ROWS, note: `item ${i} `.repeat(8) });
const opts = { cacheSize: 1 << 20, pageSize: 16384 };

let dir: string;
beforeEach(async () => { dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mv-read-once-')); });
afterEach(async () => { await fs.rm(dir, { recursive: true, force: true }); });

describe('a full sort over a scan', () => {
  it('reads the collection around the pool, where a filtered scan fills it', async () => {
    const file = path.join(dir, 'db.modelvault');
    const loading = await Database.open(file, opts);
    await (await loading.register(Items)).insertMany(Array.from({ length: ROWS }, (_, i) => item(i)));
    await loading.close();
    const db = await Database.open(file, opts);
    try {
      const items = await db.register(Items);
      const max = db.stats().cache.maxBytes;
      const readBefore = db.stats().cache.bytesRead;
      const sorted = await items.query().orderBy('score', 'desc').toArray();
      expect(sorted).toEqual(Array.from({ length: ROWS }, (_, i) => item(i)).sort((a, b) => b.score - a.score));
      expect(db.stats().cache.bytesRead - readBefore).toBeGreaterThan(max / 2); // the leaves were read…
      expect(db.stats().cache.bytes).toBeLessThan(max / 8); // …but not kept

      const all = await items.query().where('score', '>=', 0).toArray();
      expect(all.length).toBe(ROWS);
      expect(db.stats().cache.bytes).toBeGreaterThan(max / 2);
    } finally {
      await db.close();
    }
  });
});
