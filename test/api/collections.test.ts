// Collections: insert/put/get/update/delete/count, composite keys, insertMany from every kind
// of source (atomic), secondary and unique indexes kept in step with the rows, persistence.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { Database, model, t, type Infer } from '../../src/index.js';
import { MODES, byId, expectCode, expectValidation, openDb, reopenDb, rng, tempDir } from '../helpers/db.js';

const Orders = model('orders', {
  id: t.int(),
  userId: t.int(),
  category: t.string(),
  amount: t.float(),
  qty: t.int(),
  ts: t.timestamp(),
  note: t.string().optional(),
  tags: t.list(t.string()),
  meta: t.object({ source: t.string(), score: t.float().optional() }).optional(),
}, {
  primaryKey: 'id',
  indexes: [
    { name: 'byUser', fields: ['userId'] },
    { name: 'byCategoryTs', fields: ['category', 'ts'] },
    { name: 'byNote', fields: ['note'], unique: true },
  ],
});
type Order = Infer<typeof Orders>;

const Lines = model('lines', {
  orderId: t.int(),
  lineNo: t.int(),
  sku: t.string(),
  qty: t.int(),
}, { primaryKey: ['orderId', 'lineNo'] });

const CATEGORIES = ['books', 'games', 'music', 'tools'];

function order(id: number, over: Partial<Order> = {}): Order {
  return {
    id,
    userId: id % 7,
    category: CATEGORIES[id % CATEGORIES.length],
    amount: id * 1.25,
    qty: (id % 5) + 1,
    ts: new Date(Date.UTC(2024, 0, 1) + id * 60_000),
    tags: id % 3 === 0 ? [] : [`t${id % 3}`],
    ...over,
  };
}

describe.each(MODES)('collection writes (%s)', (mode) => {
  it('insert, get, count, put, update, delete', async () => {
    const db = await openDb(mode);
    const orders = await db.register(Orders);
    expect(await orders.count()).toBe(0);
    expect(await orders.get(1)).toBeUndefined();

    await orders.insert(order(1, { note: 'first', meta: { source: 'web', score: 2 } }));
    await orders.insert(order(2));
    expect(await orders.count()).toBe(2);
    expect(await orders.get(1)).toEqual(order(1, { note: 'first', meta: { source: 'web', score: 2 } }));
    expect(await orders.get(2)).toEqual(order(2));

    // put replaces the whole row: fields it leaves out are gone
    await orders.put(order(1, { qty: 99 }));
    expect(await orders.get(1)).toEqual(order(1, { qty: 99 }));
    expect(await orders.count()).toBe(2);
    // put inserts when absent
    await orders.put(order(3));
    expect(await orders.count()).toBe(3);
    expect(await orders.get(3)).toEqual(order(3));

    expect(await orders.update(2, { qty: 4, note: 'two' })).toBe(true);
    expect(await orders.get(2)).toEqual(order(2, { qty: 4, note: 'two' }));
    expect(await orders.update(2, {})).toBe(true);
    expect(await orders.get(2)).toEqual(order(2, { qty: 4, note: 'two' }));

    expect(await orders.delete(3)).toBe(true);
    expect(await orders.get(3)).toBeUndefined();
    expect(await orders.count()).toBe(2);
    expect(await orders.delete(3)).toBe(false);
    expect(await orders.count()).toBe(2);
    expect((await orders.query().toArray()).sort(byId)).toEqual([order(1, { qty: 99 }), order(2, { qty: 4, note: 'two' })]);
  });

  it('insert of an existing key is DUPLICATE_KEY and changes nothing', async () => {
    const db = await openDb(mode);
    const orders = await db.register(Orders);
    await orders.insert(order(1));
    const err = await expectCode(orders.insert(order(1, { qty: 5, note: 'other' })), 'DUPLICATE_KEY');
    expect(err.details.collection).toBe('orders');
    expect(err.message).toContain('primary key');
    expect(await orders.get(1)).toEqual(order(1));
    expect(await orders.count()).toBe(1);
    // the unique value the failed insert carried was not claimed
    await orders.insert(order(2, { note: 'other' }));
    expect(await orders.count()).toBe(2);
  });

  it('update and delete of an absent key return false and store nothing', async () => {
    const db = await openDb(mode);
    const orders = await db.register(Orders);
    expect(await orders.update(42, { qty: 3 })).toBe(false);
    expect(await orders.delete(42)).toBe(false);
    expect(await orders.get(42)).toBeUndefined();
    expect(await orders.count()).toBe(0);
  });

  it('update with undefined removes an optional field; a required one cannot be removed', async () => {
    const db = await openDb(mode);
    const orders = await db.register(Orders);
    await orders.insert(order(1, { note: 'n', meta: { source: 's' } }));
    expect(await orders.update(1, { note: undefined })).toBe(true);
    const got = await orders.get(1);
    expect(got).toEqual(order(1, { meta: { source: 's' } }));
    expect('note' in got!).toBe(false);
    // the index entry went with it: the value is free again and no longer found
    expect(await orders.query().where('note', '=', 'n').toArray()).toEqual([]);
    await orders.insert(order(2, { note: 'n' }));

    await expectValidation(orders.update(1, { qty: undefined }), 'qty');
    expect(await orders.get(1)).toEqual(order(1, { meta: { source: 's' } }));
  });

  it('update cannot change the primary key', async () => {
    const db = await openDb(mode);
    const orders = await db.register(Orders);
    await orders.insert(order(1));
    await expectValidation(orders.update(1, { id: 2 }), 'id');
    expect(await orders.get(1)).toEqual(order(1));
    expect(await orders.get(2)).toBeUndefined();
    // the same value is fine
    expect(await orders.update(1, { id: 1, qty: 9 })).toBe(true);
    expect((await orders.get(1))!.qty).toBe(9);
  });

  it('composite primary keys', async () => {
    const db = await openDb(mode);
    const lines = await db.register(Lines);
    await lines.insert({ orderId: 1, lineNo: 2, sku: 'b', qty: 1 });
    await lines.insert({ orderId: 1, lineNo: 1, sku: 'a', qty: 1 });
    await lines.insert({ orderId: 2, lineNo: 1, sku: 'c', qty: 1 });
    expect(await lines.get([1, 2])).toEqual({ orderId: 1, lineNo: 2, sku: 'b', qty: 1 });
    expect(await lines.get([2, 1])).toEqual({ orderId: 2, lineNo: 1, sku: 'c', qty: 1 });
    expect(await lines.get([2, 2])).toBeUndefined();
    await expectCode(lines.insert({ orderId: 1, lineNo: 2, sku: 'x', qty: 1 }), 'DUPLICATE_KEY');
    await expectCode(lines.get(1 as never), 'VALIDATION');
    await expectCode(lines.get([1] as never), 'VALIDATION');
    await expectCode(lines.get([1, '2'] as never), 'VALIDATION');
    expect(await lines.update([1, 1], { qty: 5 })).toBe(true);
    expect(await lines.update([9, 9], { qty: 5 })).toBe(false);
    await expectValidation(lines.update([1, 1], { lineNo: 3 }), 'lineNo');
    expect(await lines.delete([2, 1])).toBe(true);
    expect(await lines.count()).toBe(2);
    // rows come back in key order
    expect(await lines.query().toArray()).toEqual([
      { orderId: 1, lineNo: 1, sku: 'a', qty: 5 },
      { orderId: 1, lineNo: 2, sku: 'b', qty: 1 },
    ]);
  });

  describe('insertMany', () => {
    const rows = Array.from({ length: 50 }, (_, i) => order(i + 1));

    async function expectAll(db: Database) {
      const orders = await db.register(Orders);
      expect(await orders.count()).toBe(rows.length);
      expect((await orders.query().toArray()).sort(byId)).toEqual(rows);
    }

    it('from an array', async () => {
      const db = await openDb(mode);
      expect(await (await db.register(Orders)).insertMany(rows)).toBe(rows.length);
      await expectAll(db);
    });

    it('from a generator', async () => {
      const db = await openDb(mode);
      function* gen() { yield* rows; }
      expect(await (await db.register(Orders)).insertMany(gen())).toBe(rows.length);
      await expectAll(db);
    });

    it('from an async generator', async () => {
      const db = await openDb(mode);
      async function* gen() {
        for (const r of rows) {
          await new Promise((resolve) => setImmediate(resolve));
          yield r;
        }
      }
      expect(await (await db.register(Orders)).insertMany(gen())).toBe(rows.length);
      await expectAll(db);
    });

    it('from a Node Readable', async () => {
      const db = await openDb(mode);
      expect(await (await db.register(Orders)).insertMany(Readable.from(rows))).toBe(rows.length);
      await expectAll(db);
    });

    it('from an empty source', async () => {
      const db = await openDb(mode);
      const orders = await db.register(Orders);
      expect(await orders.insertMany([])).toBe(0);
      expect(await orders.count()).toBe(0);
    });

    it('a source that is not iterable is VALIDATION', async () => {
      const db = await openDb(mode);
      const orders = await db.register(Orders);
      for (const bad of [null, undefined, 5, { length: 1, 0: order(1) }]) {
        await expectCode(orders.insertMany(bad as never), 'VALIDATION');
      }
    });

    it('is atomic: an invalid row in the middle stores nothing', async () => {
      const db = await openDb(mode);
      const orders = await db.register(Orders);
      await orders.insert(order(1000));
      const bad = [...rows.slice(0, 25), { ...order(26), qty: 'x' }, ...rows.slice(26)];
      const err = await expectValidation(orders.insertMany(bad as Order[]), 'qty');
      expect(err.details.row).toBe(25);
      expect(await orders.count()).toBe(1);
      expect(await orders.get(1)).toBeUndefined();
      expect(await orders.query().toArray()).toEqual([order(1000)]);
    });

    it('is atomic: a duplicate key in the middle (in the batch or already stored) stores nothing', async () => {
      const db = await openDb(mode);
      const orders = await db.register(Orders);
      await orders.insert(order(1000));
      await expectCode(orders.insertMany([...rows.slice(0, 30), order(5), ...rows.slice(30)]), 'DUPLICATE_KEY');
      await expectCode(orders.insertMany([...rows.slice(0, 30), order(1000), ...rows.slice(30)]), 'DUPLICATE_KEY');
      await expectCode(orders.insertMany([order(1, { note: 'u' }), order(2, { note: 'u' })]), 'DUPLICATE_KEY');
      expect(await orders.count()).toBe(1);
      expect(await orders.query().where('userId', '=', 1).toArray()).toEqual([]);
    });

    it('is atomic: a source that throws midway stores nothing, and its error comes out as is', async () => {
      const db = await openDb(mode);
      const orders = await db.register(Orders);
      const boom = new Error('source failed');
      async function* gen() {
        yield* rows.slice(0, 20);
        throw boom;
      }
      await expect(orders.insertMany(gen())).rejects.toBe(boom);
      const stream = Readable.from((function* () { yield* rows.slice(0, 10); throw boom; })());
      await expect(orders.insertMany(stream)).rejects.toBe(boom);
      expect(await orders.count()).toBe(0);
      expect(await orders.query().toArray()).toEqual([]);
    });

    it('many rows in one call (pages flushed as they fill)', async () => {
      const db = await openDb(mode, { cacheSize: 2 ** 20 });
      const orders = await db.register(Orders);
      function* many() { for (let i = 0; i < 10_000; i++) yield order(i, { note: `n${i}`, tags: ['x'.repeat(i % 50)] }); }
      expect(await orders.insertMany(many())).toBe(10_000);
      expect(await orders.count()).toBe(10_000);
      expect(await orders.get(9_876)).toEqual(order(9_876, { note: 'n9876', tags: ['x'.repeat(9_876 % 50)] }));
      expect(await orders.query().where('userId', '=', 3).count()).toBe(Array.from({ length: 10_000 }, (_, i) => i).filter((i) => i % 7 === 3).length);
      expect((await db.verify()).ok).toBe(true);
    });
  });

  it('secondary indexes stay in step with random inserts, puts, updates and deletes', async () => {
    const db = await openDb(mode);
    const orders = await db.register(Orders);
    const ref = new Map<number, Order>();
    const rand = rng(42);
    const pick = (n: number) => Math.floor(rand() * n);
    await orders.insertMany(Array.from({ length: 300 }, (_, i) => order(i)));
    for (let i = 0; i < 300; i++) ref.set(i, order(i));
    for (let step = 0; step < 250; step++) {
      const id = pick(400);
      const op = pick(4);
      if (op === 0) {
        const row = order(id, { userId: pick(20), category: CATEGORIES[pick(4)] });
        if (ref.has(id)) await expectCode(orders.insert(row), 'DUPLICATE_KEY');
        else { await orders.insert(row); ref.set(id, row); }
      } else if (op === 1) {
        const row = order(id, { userId: pick(20), ts: new Date(pick(1e6)) });
        await orders.put(row);
        ref.set(id, row);
      } else if (op === 2) {
        const patch = { userId: pick(20), category: CATEGORIES[pick(4)] };
        expect(await orders.update(id, patch)).toBe(ref.has(id));
        if (ref.has(id)) ref.set(id, { ...ref.get(id)!, ...patch });
      } else {
        expect(await orders.delete(id)).toBe(ref.delete(id));
      }
    }
    const all = [...ref.values()];
    expect(await orders.count()).toBe(ref.size);
    expect((await orders.query().toArray()).sort(byId)).toEqual(all.sort(byId));

    const q = (u: number) => orders.query().where('userId', '=', u);
    expect(q(3).explain()).toContain('via index byUser');
    for (let u = 0; u < 20; u++) {
      expect((await q(u).toArray()).sort(byId), `userId ${u}`).toEqual(all.filter((r) => r.userId === u).sort(byId));
    }
    const since = new Date(Date.UTC(2024, 0, 1) + 100 * 60_000);
    const books = orders.query().where('category', '=', 'books').where('ts', '>=', since);
    expect(books.explain()).toContain('via index byCategoryTs');
    expect((await books.toArray()).sort(byId)).toEqual(all.filter((r) => r.category === 'books' && r.ts >= since).sort(byId));

    // and after reopening
    const again = await reopenDb(db);
    const orders2 = await again.register(Orders);
    expect(await orders2.count()).toBe(ref.size);
    for (const u of [0, 7, 19]) {
      expect((await orders2.query().where('userId', '=', u).toArray()).sort(byId)).toEqual(all.filter((r) => r.userId === u).sort(byId));
    }
  });

  it('a unique index refuses a second row with the same value (insert, put, update) and stores nothing', async () => {
    const db = await openDb(mode);
    const orders = await db.register(Orders);
    await orders.insert(order(1, { note: 'same' }));
    await orders.insert(order(2, { note: 'other' }));

    let err = await expectCode(orders.insert(order(3, { note: 'same' })), 'DUPLICATE_KEY');
    expect(err.message).toContain('byNote');
    await expectCode(orders.put(order(3, { note: 'same' })), 'DUPLICATE_KEY');
    err = await expectCode(orders.put(order(2, { note: 'same' })), 'DUPLICATE_KEY');
    await expectCode(orders.update(2, { note: 'same' }), 'DUPLICATE_KEY');
    expect(await orders.count()).toBe(2);
    expect(await orders.get(3)).toBeUndefined();
    expect(await orders.get(2)).toEqual(order(2, { note: 'other' }));
    expect((await orders.query().where('note', '=', 'same').toArray()).map((r) => r.id)).toEqual([1]);
    expect((await orders.query().where('note', '=', 'other').toArray()).map((r) => r.id)).toEqual([2]);

    // a row may keep its own value
    await orders.put(order(1, { note: 'same', qty: 7 }));
    expect(await orders.update(1, { note: 'same', qty: 8 })).toBe(true);
    expect((await orders.get(1))!.qty).toBe(8);
    // a value freed by delete or by update can be taken again
    await orders.delete(1);
    await orders.insert(order(3, { note: 'same' }));
    await orders.update(2, { note: 'moved' });
    await orders.insert(order(4, { note: 'other' }));
    expect((await orders.query().toArray()).sort(byId).map((r) => [r.id, r.note])).toEqual([[2, 'moved'], [3, 'same'], [4, 'other']]);
  });

  it('a unique index allows many rows without a value', async () => {
    const db = await openDb(mode);
    const orders = await db.register(Orders);
    for (let i = 0; i < 5; i++) await orders.insert(order(i));
    await orders.put(order(5));
    await orders.update(0, { note: 'x' });
    await orders.update(0, { note: undefined });
    expect(await orders.count()).toBe(6);
    expect((await orders.query().where('note', 'is', null).toArray()).map((r) => r.id).sort()).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('data, counts and indexes persist across reopen', async () => {
    let db = await openDb(mode);
    let orders = await db.register(Orders);
    let lines = await db.register(Lines);
    await orders.insertMany(Array.from({ length: 100 }, (_, i) => order(i, i % 10 === 0 ? { note: `n${i}` } : {})));
    await orders.delete(5);
    await orders.update(6, { qty: 42 });
    await lines.insert({ orderId: 1, lineNo: 1, sku: 'a', qty: 1 });
    db = await reopenDb(db);
    orders = await db.register(Orders);
    lines = await db.register(Lines);
    expect(await orders.count()).toBe(99);
    expect(await lines.count()).toBe(1);
    expect(await orders.get(5)).toBeUndefined();
    expect((await orders.get(6))!.qty).toBe(42);
    expect(await lines.get([1, 1])).toEqual({ orderId: 1, lineNo: 1, sku: 'a', qty: 1 });
    await expectCode(orders.insert(order(7, { note: 'n10' })), 'DUPLICATE_KEY');
    // writes after reopening keep counting from the stored count
    await orders.insert(order(5));
    expect(await orders.count()).toBe(100);
    db = await reopenDb(db);
    orders = await db.register(Orders);
    expect(await orders.count()).toBe(100);
    expect((await orders.query().toArray()).length).toBe(100);
  });

  it('a collection of a model that was never registered is UNKNOWN_COLLECTION', async () => {
    const db = await openDb(mode);
    const tx = await db.transaction(async (t) => t.collection(Lines).count().catch((e: unknown) => e));
    expect(tx).toMatchObject({ code: 'UNKNOWN_COLLECTION' });
  });
});

describe('a second open of the same file in one process', () => {
  it('for writing is LOCKED and says the file is open in this process; read-only works beside the writer', async () => {
    const file = path.join(tempDir(), 'twice.modelvault');
    const first = await Database.open(file);
    const err = await expectCode(Database.open(file), 'LOCKED');
    expect(err.message).toMatch(/open for writing already in this process/);
    const reader = await Database.open(file, { readOnly: true });
    expect(Array.isArray(await reader.collections())).toBe(true);
    await reader.close();
    await first.close();
    const again = await Database.open(file); // the lock went with the close
    await again.close();
  });
});
