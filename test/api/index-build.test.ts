// An index added to a collection that already holds rows is built in sorted batches of 65,536
// entries; with more rows than one batch, every row must still be found through the index, in
// index order, and verify() must pass.
import { describe, expect, it } from 'vitest';
import { model, t } from '../../src/index.js';
import { openDb, reopenDb } from '../helpers/db.js';

const shape = { id: t.int(), group: t.int(), label: t.string() };
const Plain = model('items', shape, { primaryKey: 'id' });
const Indexed = model('items', shape, { primaryKey: 'id', indexes: [{ name: 'byGroup', fields: ['group'] }] });
const ROWS = 150_000;
const groupOf = (i: number) => (i * 7919) % 1000;

describe('index build over existing rows', () => {
  it('finds every row through an index built in several sorted batches', async () => {
    let db = await openDb('file', { cacheSize: 4 << 20 });
    await (await db.register(Plain)).insertMany(Array.from({ length: ROWS }, (_, i) => ({ id: i, group: groupOf(i), label: `l${i}` })));
    const items = await db.register(Indexed);
    for (const g of [0, 1, 499, 998, 999]) {
      const q = items.query().where('group', '=', g);
      expect(q.explain()).toContain('byGroup');
      const got = (await q.toArray()).map((r) => r.id);
      const want = Array.from({ length: ROWS }, (_, i) => i).filter((i) => groupOf(i) === g);
      expect(got).toEqual(want); // equal group: primary-key order inside the index
    }
    const inOrder = await items.query().where('group', '>=', 990).orderBy('group').select('group').toArray();
    expect(inOrder.length).toBe(Array.from({ length: ROWS }, (_, i) => groupOf(i)).filter((g) => g >= 990).length);
    expect(inOrder.every((r, k) => k === 0 || inOrder[k - 1].group <= r.group)).toBe(true);
    db = await reopenDb(db);
    expect((await db.verify()).ok).toBe(true);
  });
});
