// Point gets outside a transaction run synchronously on the newest commit, without pinning a
// snapshot. These tests check that this fast path always sees what a pinned read would: every
// commit as soon as it returns, the transaction's own writes inside db.transaction(), the
// rebuilt file after compact(), and errors as rejected promises rather than throws.
import { describe, expect, it } from 'vitest';
import { model, t } from '../../src/index.js';
import { MODES, expectCode, openDb } from '../helpers/db.js';

const Items = model('items', { id: t.int(), label: t.string(), n: t.float() }, { primaryKey: 'id' });

describe.each(MODES)('point get fast path (%s)', (mode) => {
  it('sees each commit as soon as it returns, and nothing of a rolled-back one', async () => {
    const db = await openDb(mode);
    const items = await db.register(Items);
    for (let i = 0; i < 200; i++) {
      await items.insert({ id: i, label: `item ${i}`, n: i / 2 });
      expect(await items.get(i)).toEqual({ id: i, label: `item ${i}`, n: i / 2 });
      if (i > 0) {
        await items.update(i - 1, { label: `changed ${i - 1}` });
        expect((await items.get(i - 1))?.label).toBe(`changed ${i - 1}`);
      }
    }
    await items.delete(5);
    expect(await items.get(5)).toBeUndefined();
    await expect(db.transaction(async (tx) => {
      await tx.collection(Items).insert({ id: 1000, label: 'never', n: 0 });
      throw new Error('roll back');
    })).rejects.toThrow('roll back');
    expect(await items.get(1000)).toBeUndefined();
  });

  it('inside a transaction reads the transaction\'s own writes; outside, only after commit', async () => {
    const db = await openDb(mode);
    const items = await db.register(Items);
    await items.insert({ id: 1, label: 'one', n: 1 });
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const running = db.transaction(async (tx) => {
      await tx.collection(Items).update(1, { label: 'uno' });
      expect((await tx.collection(Items).get(1))?.label).toBe('uno');
      expect((await items.get(1))?.label).toBe('uno'); // joins the transaction through its scope
      await gate;
    });
    await new Promise((r) => setTimeout(r, 10));
    expect((await items.get(1))?.label).toBe('one'); // not committed yet
    release();
    await running;
    expect((await items.get(1))?.label).toBe('uno');
  });

  it('reads the compacted file, and rejects (never throws) on bad keys and after close', async () => {
    const db = await openDb(mode);
    const items = await db.register(Items);
    await items.insertMany(Array.from({ length: 2000 }, (_, i) => ({ id: i, label: `x${i}`, n: i })));
    for (let i = 0; i < 2000; i += 2) await items.delete(i);
    expect(await items.get(7)).toEqual({ id: 7, label: 'x7', n: 7 });
    await db.compact();
    expect(await items.get(7)).toEqual({ id: 7, label: 'x7', n: 7 });
    expect(await items.get(8)).toBeUndefined();
    let pending: Promise<unknown> | undefined;
    expect(() => { pending = items.get('seven' as never); }).not.toThrow();
    await expectCode(pending!, 'VALIDATION');
    await db.close();
    expect(() => { pending = items.get(7); }).not.toThrow();
    await expectCode(pending!, 'CLOSED');
  });
});
