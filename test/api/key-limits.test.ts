// Values too long to be keys. A key part (one field's value in a primary key or an index) takes
// at most 4 KiB, and a whole key at most a sixteenth of the page. A write whose value breaks
// either limit is a VALIDATION error naming the field, and stores nothing. A query may still
// compare with such a value: it cannot bound an index range, so it is left to the filter, and
// the answer is the reference's.
import { describe, expect, it } from 'vitest';
import { model, t } from '../../src/index.js';
import { MODES, expectValidation, openDb, rng } from '../helpers/db.js';

const Docs = model('docs', {
  id: t.int(),
  category: t.string(),
  name: t.string(),
  body: t.string().optional(),
}, { primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'] }, { name: 'byCategoryName', fields: ['category', 'name'] }] });

const Slugs = model('slugs', { slug: t.string(), n: t.int() }, { primaryKey: 'slug', indexes: [{ name: 'byN', fields: ['n'], unique: true }] });

const long = (c: string, bytes: number) => c.repeat(bytes);

describe.each(MODES)('key limits (%s)', (mode) => {
  it('refuses an indexed value over 4 KiB, naming the field, and stores nothing', async () => {
    const db = await openDb(mode);
    const docs = await db.register(Docs);
    await docs.insert({ id: 1, category: 'a', name: 'fine', body: long('b', 100_000) }); // unindexed: any length
    const err = await expectValidation(docs.insert({ id: 2, category: 'a', name: long('x', 5000) }), 'name');
    expect(err.message).toMatch(/5000 bytes.*index byName/);
    await expectValidation(docs.insertMany([{ id: 3, category: 'a', name: 'ok' }, { id: 4, category: 'a', name: long('é', 3000) }]), 'name');
    await expectValidation(docs.put({ id: 1, category: 'a', name: long('x', 4097) }), 'name');
    await expectValidation(docs.update(1, { name: long('x', 10_000) }), 'name');
    await expectValidation(db.transaction(async (tx) => {
      await tx.collection(Docs).insert({ id: 5, category: 'a', name: 'in the transaction' });
      await tx.collection(Docs).insert({ id: 6, category: 'a', name: long('x', 4200) });
    }), 'name');
    expect(await docs.count()).toBe(1);
    expect((await docs.get(1))?.name).toBe('fine');
    expect(await docs.query().where('name', '=', 'in the transaction').count()).toBe(0);
  });

  it('refuses a primary key over 4 KiB, naming the field, for writes and lookups', async () => {
    const db = await openDb(mode);
    const slugs = await db.register(Slugs);
    await expectValidation(slugs.insert({ slug: long('s', 5000), n: 1 }), 'slug');
    await expectValidation(slugs.put({ slug: long('s', 5000), n: 1 }), 'slug');
    await expectValidation(slugs.get(long('s', 5000)), 'slug');
    await expectValidation(slugs.delete(long('s', 5000)), 'slug');
    expect(await slugs.count()).toBe(0);
  });

  it('names the longest field when a whole key is over its limit (16 KiB pages: 1 KiB keys)', async () => {
    const db = await openDb(mode, { pageSize: 16384 });
    const docs = await db.register(Docs);
    // Each part fits 4 KiB, but (category, name, id) is over 1 KiB.
    const err = await expectValidation(docs.insert({ id: 1, category: long('c', 300), name: long('n', 900) }), 'name');
    expect(err.message).toMatch(/index byCategoryName/);
    expect(await docs.count()).toBe(0);
  });

  it('NaN has no place in a key: an indexed float refuses it, and queries comparing with NaN match as JS does', async () => {
    const Floats = model('floats', { id: t.int(), f: t.float(), g: t.float() }, { primaryKey: 'id', indexes: [{ name: 'byF', fields: ['f'] }] });
    const db = await openDb(mode);
    const floats = await db.register(Floats);
    const rows = [-Infinity, -1.5, -0, 0, 2.5, Infinity].map((f, id) => ({ id, f, g: NaN }));
    await floats.insertMany(rows);
    const err = await expectValidation(floats.insert({ id: 99, f: NaN, g: 1 }), 'f');
    expect(err.message).toMatch(/NaN cannot be part of a key.*index byF/);
    expect(await floats.get(3)).toEqual({ id: 3, f: 0, g: NaN }); // NaN in an unindexed float is stored
    const ids = async (q: { toArray(): Promise<{ id: number }[]> }) => (await q.toArray()).map((r) => r.id).sort((a, b) => a - b);
    const want = (keep: (f: number) => boolean) => rows.filter((r) => keep(r.f)).map((r) => r.id);
    const nan = Number.parseFloat('not a number'); // the reference compares as JS does
    expect(await ids(floats.query().where('f', '=', NaN))).toEqual(want((f) => f === nan));
    expect(await ids(floats.query().where('f', '>', NaN))).toEqual(want((f) => f > nan));
    expect(await ids(floats.query().where('f', '<=', NaN))).toEqual(want((f) => f <= nan));
    expect(await ids(floats.query().where('f', '!=', NaN))).toEqual(want((f) => f !== nan));
    expect(await floats.query().where('f', '=', NaN).count()).toBe(0);
    expect(await ids(floats.query().where('f', '>=', -1.5).where('f', '<', NaN))).toEqual([]);
    const badDate = await expectValidation(db.register(model('dated', { id: t.int(), ts: t.timestamp() }, { primaryKey: 'id' })).then((c) => c.query().where('ts', '>', new Date(NaN)).toArray()), 'ts');
    expect(badDate.message).toMatch(/an invalid Date/);
  });

  it('answers queries that compare with values too long to be keys, as the reference does', async () => {
    const db = await openDb(mode);
    const docs = await db.register(Docs);
    const r = rng(11);
    const letters = 'wxyz';
    const rows = Array.from({ length: 600 }, (_, id) => {
      let name = '';
      for (let k = 1 + Math.floor(r() * 6); k > 0; k--) name += letters[Math.floor(r() * letters.length)];
      return { id, category: r() < 0.05 ? 'a' : 'b', name };
    });
    await docs.insertMany(rows);
    const huge = long('x', 6000); // ASCII, so JS string order is the engine's byte order
    const ids = (xs: { id: number }[]) => xs.map((x) => x.id).sort((a, b) => a - b);
    const cases: [string, (name: string) => boolean, () => Promise<{ id: number }[]>][] = [
      ['=', (n) => n === huge, () => docs.query().where('name', '=', huge).toArray()],
      ['>', (n) => n > huge, () => docs.query().where('name', '>', huge).toArray()],
      ['>=', (n) => n >= huge, () => docs.query().where('name', '>=', huge).toArray()],
      ['<', (n) => n < huge, () => docs.query().where('name', '<', huge).toArray()],
      ['between', (n) => n >= 'x' && n <= huge, () => docs.query().where('name', '>=', 'x').where('name', '<=', huge).toArray()],
      ['!=', (n) => n !== huge, () => docs.query().where('name', '!=', huge).toArray()],
    ];
    for (const [label, keep, run] of cases) {
      expect(ids(await run()), label).toEqual(ids(rows.filter((x) => keep(x.name))));
    }
    // The equality prefix still bounds the index; the long value is left to the filter.
    const q = docs.query().where('category', '=', 'a').where('name', '>', huge);
    expect(q.explain()).toMatch(/IndexScan: docs via index byCategoryName, bounds category = "a", residual filter: .*name > "x{60}"… \(6000 chars\)$/);
    expect(ids(await q.toArray())).toEqual(ids(rows.filter((x) => x.category === 'a' && x.name > huge)));
    expect(await q.count()).toBe(rows.filter((x) => x.category === 'a' && x.name > huge).length);
    expect(await db.sql('SELECT id FROM docs WHERE name > ?', [huge]).count()).toBe(rows.filter((x) => x.name > huge).length);
  });
});
