// Schema evolution: register() accepts additive changes (and builds new indexes), rejects
// the others with SCHEMA_INCOMPATIBLE naming each change; planMigration() describes and
// migrate() applies a change in one transaction, all or nothing; everything persists.
import { describe, expect, it } from 'vitest';
import { model, t, type Database } from '../../src/index.js';
import { MODES, byId, expectCode, openDb, reopenDb } from '../helpers/db.js';

const V1 = model('people', {
  id: t.int(),
  name: t.string(),
  age: t.int(),
  email: t.string().optional(),
  kind: t.enum(['a', 'b']),
}, { primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'] }] });

const people = (n: number) => Array.from({ length: n }, (_, i) => ({ id: i, name: `p${i % 50}`, age: 20 + (i % 30), kind: i % 2 ? 'a' as const : 'b' as const }));

async function seeded(mode: (typeof MODES)[number], n = 200): Promise<Database> {
  const db = await openDb(mode);
  const c = await db.register(V1);
  await c.insertMany(people(n));
  return db;
}

describe.each(MODES)('register() on an existing collection (%s)', (mode) => {
  it('the same model again is accepted and changes nothing', async () => {
    const db = await seeded(mode, 10);
    const again = await db.register(model('people', { ...V1.shape }, { primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'] }] }));
    expect(await again.count()).toBe(10);
    expect(await db.planMigration(V1)).toEqual({ collection: 'people', compatible: true, changes: [], steps: [] });
  });

  it('a new optional field: old rows lack it, new rows may carry it', async () => {
    let db = await seeded(mode, 10);
    const V2 = model('people', { ...V1.shape, nick: t.string().optional() }, { primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'] }] });
    let c = await db.register(V2);
    const old = await c.get(3);
    expect(old).toEqual(people(10)[3]);
    expect('nick' in old!).toBe(false);
    await c.insert({ id: 100, name: 'x', age: 1, kind: 'a', nick: 'xx' });
    await c.update(3, { nick: 'three' });
    expect((await c.query().where('nick', 'is not', null).toArray()).map((r) => r.id).sort((a, b) => a - b)).toEqual([3, 100]);
    db = await reopenDb(db);
    c = await db.register(V2);
    expect((await c.get(3))!.nick).toBe('three');
    expect(await c.count()).toBe(11);
  });

  it('a new field with a default: old rows read back with the default, everywhere', async () => {
    let db = await seeded(mode, 40);
    const V2 = model('people', { ...V1.shape, status: t.string().default('active'), score: t.float().default(1.5), tags: t.list(t.string()).default([]) }, {
      primaryKey: 'id',
      indexes: [{ name: 'byName', fields: ['name'] }, { name: 'byStatus', fields: ['status'] }],
    });
    let c = await db.register(V2);
    // 40 old rows (default status) and 200 new ones with other statuses: 'active' is selective
    await c.insertMany(Array.from({ length: 200 }, (_, i) => ({ id: 1000 + i, name: 'new', age: 1, kind: 'a' as const, status: `s${i % 10}`, score: 2 })));
    const check = async () => {
      expect(await c.get(5)).toEqual({ ...people(40)[5], status: 'active', score: 1.5, tags: [] });
      const old = (await c.query().toArray()).sort(byId).slice(0, 40);
      expect(old).toEqual(people(40).map((p) => ({ ...p, status: 'active', score: 1.5, tags: [] })));
      // filters and the new index see the default too, not an absent value
      const active = c.query().where('status', '=', 'active');
      expect(active.explain()).toContain('via index byStatus');
      expect(await active.count()).toBe(40);
      expect((await active.toArray()).map((r) => r.id).sort((a, b) => a - b)).toEqual(people(40).map((p) => p.id));
      expect(await c.query().where('status', 'is', null).count()).toBe(0);
      expect(await c.query().where('score', '=', 1.5).count()).toBe(40);
      expect(await c.query().where('score', '=', 1.5).where('age', '=', 25).count()).toBe(people(40).filter((p) => p.age === 25).length);
      expect(await c.query().where('status', '=', 's3').count()).toBe(20);
    };
    await check();
    // updating an old row keeps its index entries right
    await c.update(5, { status: 's3' });
    expect(await c.query().where('status', '=', 's3').count()).toBe(21);
    expect(await c.query().where('status', '=', 'active').count()).toBe(39);
    await c.update(5, { status: 'active' });
    db = await reopenDb(db);
    c = await db.register(V2);
    await check();
    expect((await db.verify()).ok).toBe(true);
  });

  it('an optional field that gains a default: absent values read back (and are indexed) as the default', async () => {
    const db = await openDb(mode);
    const A = model('things', { id: t.int(), color: t.string().optional() }, { primaryKey: 'id', indexes: [{ name: 'byColor', fields: ['color'] }] });
    const B = model('things', { id: t.int(), color: t.string().default('grey') }, { primaryKey: 'id', indexes: [{ name: 'byColor', fields: ['color'] }] });
    const a = await db.register(A);
    const absent = (i: number) => i % 20 < 3; // 15 of 100 rows
    await a.insertMany(Array.from({ length: 100 }, (_, i) => (absent(i) ? { id: i } : { id: i, color: `c${i % 8}` })));
    const plan = await db.planMigration(B);
    expect(plan.compatible).toBe(true);
    const b = await db.register(B);
    expect(await b.get(1)).toEqual({ id: 1, color: 'grey' });
    expect(await b.get(4)).toEqual({ id: 4, color: 'c4' });
    const grey = b.query().where('color', '=', 'grey');
    expect(grey.explain()).toContain('via index byColor');
    expect((await grey.toArray()).map((r) => r.id).sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i).filter(absent));
    expect(await b.query().where('color', 'is', null).count()).toBe(0);
    expect(await b.query().where('color', '=', 'c4').count()).toBe(Array.from({ length: 100 }, (_, i) => i).filter((i) => !absent(i) && i % 8 === 4).length);
    expect((await db.verify()).ok).toBe(true);
  });

  it('a new defaulted field over many old rows (several rewrite chunks) is stored in every row', async () => {
    const db = await seeded(mode, 1300);
    const V2 = model('people', { ...V1.shape, level: t.int().default(3) }, { primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'] }] });
    const c = await db.register(V2);
    expect(await c.query().where('level', '=', 3).count()).toBe(1300);
    expect(await c.query().where('level', 'is', null).count()).toBe(0);
    expect((await c.query().orderBy('id').toArray())).toEqual(people(1300).map((p) => ({ ...p, level: 3 })));
    expect(await c.count()).toBe(1300);
    expect((await db.verify()).ok).toBe(true);
  });

  it('a new non-unique index is built: queries through it return the right rows and explain() names it', async () => {
    let db = await seeded(mode, 300);
    const V2 = model('people', { ...V1.shape }, {
      primaryKey: 'id',
      indexes: [{ name: 'byName', fields: ['name'] }, { name: 'byAgeName', fields: ['age', 'name'] }],
    });
    let c = await db.register(V2);
    const q = () => c.query().where('age', '=', 33);
    expect(q().explain()).toContain('via index byAgeName');
    const want = people(300).filter((p) => p.age === 33);
    expect((await q().toArray()).sort(byId)).toEqual(want);
    // kept in step with later writes
    await c.update(13, { age: 34 });
    await c.insert({ id: 999, name: 'z', age: 33, kind: 'a' });
    const want2 = [...want.filter((p) => p.id !== 13), { id: 999, name: 'z', age: 33, kind: 'a' }];
    expect((await q().toArray()).sort(byId)).toEqual(want2);
    db = await reopenDb(db);
    c = await db.register(V2);
    expect(q().explain()).toContain('via index byAgeName');
    expect((await q().toArray()).sort(byId)).toEqual(want2);
  });

  it('a widened enum and a dropped index are accepted', async () => {
    const db = await seeded(mode, 20);
    const V2 = model('people', { ...V1.shape, kind: t.enum(['a', 'b', 'c']) }, { primaryKey: 'id' });
    const c = await db.register(V2);
    await c.insert({ id: 100, name: 'p1', age: 1, kind: 'c' });
    expect((await c.query().where('name', '=', 'p1').toArray()).map((r) => r.id).sort((x, y) => x - y)).toEqual([1, 100]);
    expect(c.query().where('name', '=', 'p1').explain()).not.toContain('byName');
  });

  const incompatible = [
    ['a removed field', model('people', { id: t.int(), name: t.string(), email: t.string().optional(), kind: t.enum(['a', 'b']) }, { primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'] }] }), ['age'], ['field age is removed']],
    ['a type change', model('people', { ...V1.shape, age: t.string() }, { primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'] }] }), ['age'], ['age changes type from int to string']],
    ['a new required field', model('people', { ...V1.shape, city: t.string() }, { primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'] }] }), ['city'], ['new required field city']],
    ['a new unique index', model('people', { ...V1.shape }, { primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'] }, { name: 'byEmail', fields: ['email'], unique: true }] }), ['byEmail'], ['new unique index byEmail']],
    ['an optional field becoming required', model('people', { ...V1.shape, email: t.string() }, { primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'] }] }), ['email'], ['email becomes required']],
    ['a narrowed enum', model('people', { ...V1.shape, kind: t.enum(['a']) }, { primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'] }] }), ['kind'], ['kind changes type']],
    ['a new primary key', model('people', { ...V1.shape }, { primaryKey: ['name', 'id'], indexes: [{ name: 'byName', fields: ['name'] }] }), [], ['primary key changes']],
  ] as const;

  it.each(incompatible)('%s is SCHEMA_INCOMPATIBLE, named in the message, and changes nothing', async (_what, next, names, phrases) => {
    let db = await seeded(mode, 30);
    const err = await expectCode(db.register(next), 'SCHEMA_INCOMPATIBLE');
    for (const p of phrases) expect(err.message).toContain(p);
    expect(err.details.collection).toBe('people');
    const changes = err.details.changes as { field?: string; index?: string; compatible: boolean }[];
    expect(changes.length).toBeGreaterThan(0);
    expect(changes.every((c) => !c.compatible)).toBe(true);
    for (const n of names) expect(changes.some((c) => c.field === n || c.index === n)).toBe(true);
    // the old model still works and the data is intact, now and after reopening
    db = await reopenDb(db);
    const c = await db.register(V1);
    expect(await c.count()).toBe(30);
    expect((await c.query().toArray()).sort(byId)).toEqual(people(30));
    await expectCode(db.register(next), 'SCHEMA_INCOMPATIBLE');
  });

  it('several incompatible changes are all named in one error', async () => {
    const db = await seeded(mode, 5);
    const next = model('people', { id: t.int(), name: t.bool(), email: t.string().optional(), kind: t.enum(['a', 'b']), city: t.string() }, {
      primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'] }, { name: 'byEmail', fields: ['email'], unique: true }],
    });
    const err = await expectCode(db.register(next), 'SCHEMA_INCOMPATIBLE');
    for (const p of ['field age is removed', 'name changes type from string to bool', 'new required field city', 'new unique index byEmail']) {
      expect(err.message).toContain(p);
    }
    expect((err.details.changes as unknown[]).length).toBe(4);
  });
});

describe.each(MODES)('planMigration() and migrate() (%s)', (mode) => {
  const V2 = model('people', {
    id: t.int(),
    name: t.string(),
    email: t.string().optional(),
    kind: t.enum(['a', 'b']),
    city: t.string(),
    level: t.int().default(1),
  }, { primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'] }, { name: 'byCity', fields: ['city'] }] });

  it('planMigration lists every change and the steps, without doing them', async () => {
    const db = await seeded(mode, 10);
    const plan = await db.planMigration(V2);
    expect(plan.collection).toBe('people');
    expect(plan.compatible).toBe(false);
    const kinds = plan.changes.map((c) => `${c.kind}:${'field' in c ? c.field : 'index' in c ? c.index : ''}:${c.compatible}`).sort();
    expect(kinds).toEqual(['addField:city:false', 'addField:level:true', 'addIndex:byCity:true', 'removeField:age:false'].sort());
    expect(plan.steps).toEqual(expect.arrayContaining([
      expect.stringContaining('backfill field city'),
      expect.stringContaining('rewrite rows without field age'),
      expect.stringContaining('build index byCity'),
    ]));
    const unique = await db.planMigration(model('people', { ...V1.shape }, { primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'], unique: true }] }));
    expect(unique.changes.map((c) => c.kind)).toEqual(['changeIndex']);
    const uniqueNew = await db.planMigration(model('people', { ...V1.shape }, { primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'] }, { name: 'u', fields: ['age'], unique: true }] }));
    expect(uniqueNew.steps).toEqual(expect.arrayContaining([expect.stringContaining('build unique index u')]));
    expect(await db.planMigration(model('fresh', { id: t.int() }, { primaryKey: 'id' }))).toMatchObject({ compatible: true, steps: ['create collection fresh'] });
    // nothing was applied
    const c = await db.register(V1);
    expect((await c.query().toArray()).sort(byId)).toEqual(people(10));
  });

  it('migrate() with a backfill rewrites every row: values present, removed fields gone, indexes built', async () => {
    let db = await seeded(mode, 120);
    const result = await db.migrate(V2, { backfill: { city: 'Paris' } });
    expect(result.rows).toBe(120);
    expect(result.changes.length).toBe(4);
    let c = await db.register(V2);
    const want = people(120).map(({ age: _age, ...p }) => ({ ...p, city: 'Paris', level: 1 }));
    const check = async () => {
      expect(await c.count()).toBe(120);
      expect((await c.query().toArray()).sort(byId)).toEqual(want);
      expect(await c.get(7)).toEqual(want[7]);
      expect(await c.query().where('city', '=', 'Paris').count()).toBe(120);
      expect((await c.query().where('name', '=', 'p7').toArray()).map((r) => r.id).sort((a, b) => a - b)).toEqual([7, 57, 107]);
    };
    await check();
    expect(await db.planMigration(V2)).toMatchObject({ compatible: true, changes: [] });
    db = await reopenDb(db);
    c = await db.register(V2);
    await check();
    await expectCode(db.register(V1), 'SCHEMA_INCOMPATIBLE');
    expect((await db.verify()).ok).toBe(true);
  });

  it('migrate() without a needed backfill is VALIDATION and changes nothing', async () => {
    const db = await seeded(mode, 10);
    const err = await expectCode(db.migrate(V2), 'VALIDATION');
    expect(err.details.path).toBe('city');
    await expectCode(db.migrate(V2, { backfill: { nope: 1 } }), 'VALIDATION');
    await expectCode(db.migrate(V2, { backfill: { city: 5 } }), 'VALIDATION');
    const c = await db.register(V1);
    expect((await c.query().toArray()).sort(byId)).toEqual(people(10));
  });

  it('a unique index built by migrate() over duplicates is DUPLICATE_KEY; the old schema and data stay', async () => {
    let db = await seeded(mode, 100); // names repeat every 50 rows
    const Unique = model('people', { ...V1.shape }, { primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'] }, { name: 'uName', fields: ['name'], unique: true }] });
    await expectCode(db.migrate(Unique), 'DUPLICATE_KEY');
    let c = await db.register(V1);
    expect(await c.count()).toBe(100);
    expect((await c.query().toArray()).sort(byId)).toEqual(people(100));
    expect((await db.planMigration(Unique)).changes.map((x) => x.kind)).toEqual(['addIndex']);
    // the old index still answers
    expect((await c.query().where('name', '=', 'p3').toArray()).map((r) => r.id).sort((a, b) => a - b)).toEqual([3, 53]);
    db = await reopenDb(db);
    c = await db.register(V1);
    expect((await c.query().toArray()).sort(byId)).toEqual(people(100));
    expect((await db.verify()).ok).toBe(true);

    // without the duplicates it succeeds, and the index is enforced from then on
    for (let i = 50; i < 100; i++) await c.delete(i);
    expect((await db.migrate(Unique)).rows).toBe(50);
    const u = await db.register(Unique);
    await expectCode(u.insert({ id: 500, name: 'p3', age: 1, kind: 'a' }), 'DUPLICATE_KEY');
    await u.insert({ id: 500, name: 'fresh', age: 1, kind: 'a' });
    expect(await u.count()).toBe(51);
  });

  it('migrate() on a model that is already current does nothing; on a new collection creates it', async () => {
    const db = await seeded(mode, 5);
    expect(await db.migrate(V1)).toEqual({ changes: [], rows: 0 });
    const Fresh = model('fresh', { id: t.int() }, { primaryKey: 'id' });
    expect(await db.migrate(Fresh)).toEqual({ changes: [], rows: 0 });
    const f = await db.register(Fresh);
    await f.insert({ id: 1 });
    expect(await f.count()).toBe(1);
  });

  it('register() of an additive change inside db.transaction(), after writes to that collection, widens the open trees', async () => {
    const db = await seeded(mode, 300);
    const V2 = model('people', { ...V1.shape, nick: t.string().optional() }, { primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'] }] });
    await db.transaction(async (tx) => {
      await tx.collection(V1).insert({ id: 1000, name: 'before', age: 1, kind: 'a' });
      await tx.collection(V1).update(3, { age: 99 });
      await db.register(V2);
      await tx.collection(V2).insert({ id: 1001, name: 'after', age: 2, kind: 'b', nick: 'n' });
      await tx.collection(V2).update(4, { nick: 'four' });
    });
    const c = await db.register(V2);
    expect(await c.count()).toBe(302);
    expect(await c.get(1000)).toEqual({ id: 1000, name: 'before', age: 1, kind: 'a' });
    expect(await c.get(1001)).toEqual({ id: 1001, name: 'after', age: 2, kind: 'b', nick: 'n' });
    expect((await c.get(3))!.age).toBe(99);
    expect((await c.get(4))!.nick).toBe('four');
    expect((await c.query().where('nick', 'is not', null).toArray()).map((r) => r.id).sort((a, b) => a - b)).toEqual([4, 1001]);
    expect((await db.verify()).ok).toBe(true);
  });
});
