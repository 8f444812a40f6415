// Hostile input across the public API: wrong types everywhere (numbers as paths, objects as
// keys, functions, symbols), huge values, deep nesting, cycles, prototype keys, unbalanced and
// injected SQL, absurd limits and offsets, negative or NaN memory limits, bad options to the
// open functions. Each call must fail with a ModelVaultError carrying a known code (whether it
// throws at once or rejects later), store nothing (row counts, rows and indexes unchanged), leave
// Object.prototype alone, and leave the database usable.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database, ModelVaultError, count, model, sum, t, type ErrorCode, type Query } from '../../src/index.js';

const CODES: ReadonlySet<ErrorCode> = new Set([
  'NOT_A_DATABASE', 'CORRUPT', 'UNSUPPORTED_VERSION', 'LOCKED', 'READ_ONLY', 'CLOSED', 'VALIDATION', 'DUPLICATE_KEY',
  'SCHEMA_INCOMPATIBLE', 'UNKNOWN_COLLECTION', 'TRANSACTION_CLOSED', 'ABORTED', 'IO',
]);

const Items = model('items', {
  id: t.int(),
  name: t.string().maxLength(10_000_000),
  price: t.float(),
  qty: t.int().min(0),
  tags: t.list(t.string()),
  meta: t.object({ source: t.string(), score: t.float().optional() }).optional(),
  blob: t.json().optional(),
  when: t.timestamp(),
  code: t.string().optional(),
}, {
  primaryKey: 'id',
  indexes: [{ name: 'byName', fields: ['name'] }, { name: 'byCode', fields: ['code'], unique: true }],
});

const good = (id: number) => ({ id, name: `item ${id}`, price: id * 1.5, qty: id, tags: ['a'], when: new Date(Date.UTC(2024, 0, 1)), code: `c${id}` });
const SEEDED = 50;

let dir: string;
let db: Database;
let cases = 0;
const byCode: Record<string, number> = {};

/** Runs `call` (sync throw or rejection) and expects a ModelVaultError with `code` (or any known code). */
async function hostile(what: string, call: () => unknown, code?: ErrorCode | readonly ErrorCode[]): Promise<ModelVaultError> {
  cases++;
  let err: unknown;
  try {
    const r = call();
    // A query builder that accepted its input must fail when it runs.
    if (r && typeof r === 'object' && typeof (r as Query).toArray === 'function') await (r as Query).toArray();
    else await r;
  } catch (e) {
    err = e;
  }
  if (err === undefined) expect.fail(`${what}: succeeded`);
  if (!(err instanceof ModelVaultError)) expect.fail(`${what}: threw ${(err as Error)?.name}: ${(err as Error)?.message ?? String(err)}`);
  expect(CODES.has(err.code), `${what}: code ${err.code}`).toBe(true);
  if (code !== undefined) expect(typeof code === 'string' ? [code] : code, `${what}: ${err.message}`).toContain(err.code);
  byCode[err.code] = (byCode[err.code] ?? 0) + 1;
  return err;
}

/** Nothing was stored: the count, every row and every index are exactly the seeded ones. */
async function expectUnchanged(what: string): Promise<void> {
  const items = await db.collection('items');
  expect(await items.count(), what).toBe(SEEDED);
  const rows = await items.query().orderBy('id').toArray();
  expect(rows.map((r) => r.id), what).toEqual(Array.from({ length: SEEDED }, (_, i) => i));
  expect(rows.every((r) => r.name === `item ${r.id}` && r.qty === r.id), what).toBe(true);
  expect(await items.query().where('name', '=', 'item 7').count(), `${what}: byName`).toBe(1);
  expect(await items.query().where('code', '=', 'c9').count(), `${what}: byCode`).toBe(1);
  expect(({} as Record<string, unknown>).polluted, `${what}: Object.prototype`).toBeUndefined();
  expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted'), what).toBe(false);
}

const deep = (n: number, leaf: unknown = 1): unknown => {
  let v: unknown = leaf;
  for (let i = 0; i < n; i++) v = [v];
  return v;
};
const deepObject = (n: number): Record<string, unknown> => {
  let v: Record<string, unknown> = { x: 1 };
  for (let i = 0; i < n; i++) v = { x: v };
  return v;
};
const withOwn = (o: Record<string, unknown>, key: string, value: unknown) => {
  Object.defineProperty(o, key, { value, enumerable: true, configurable: true, writable: true });
  return o;
};

describe('hostile input through the public API', () => {
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mv-hostile-'));
    db = await Database.open(path.join(dir, 'hostile.modelvault'), { pageSize: 16384, memoryLimit: 2 ** 20 });
    await (await db.register(Items)).insertMany(Array.from({ length: SEEDED }, (_, i) => good(i)));
  });

  afterAll(async () => {
    await db?.close().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
    console.log(`hostile-api: ${cases} hostile calls, each a ModelVaultError: ${JSON.stringify(byCode)}`);
  });

  it('opening: wrong types, bad options, garbage images', async () => {
    const file = path.join(dir, 'new.modelvault');
    const open = (p: unknown, o?: unknown) => () => Database.open(p as string, o as never);
    for (const p of [123, null, undefined, {}, [], () => 'x', Symbol('s'), '', new String('x')]) await hostile(`open(${String(typeof p)})`, open(p), 'VALIDATION');
    const badOptions: Record<string, unknown>[] = [
      { cacheSize: -1 }, { cacheSize: NaN }, { cacheSize: Infinity }, { cacheSize: '64MB' }, { cacheSize: -0.5 },
      { memoryLimit: -1 }, { memoryLimit: NaN }, { memoryLimit: -Infinity }, { memoryLimit: {} },
      { pageSize: 1000 }, { pageSize: 3 * 16384 }, { pageSize: 2 ** 21 }, { pageSize: NaN }, { pageSize: -16384 },
      { recovery: 'maybe' }, { recovery: 1 }, { lockTimeoutMs: -5 }, { lockTimeoutMs: NaN },
      { readOnly: 'yes' }, { readOnly: 1 }, { create: 'no' }, { create: 0 },
      { memorylimit: 2 ** 20 }, { cachesize: 2 ** 20 }, { cacheSize: 2 ** 20, bogus: true }, // misspelt, unknown
    ];
    for (const o of badOptions) await hostile(`open(file, ${JSON.stringify(o)})`, open(file, o), 'VALIDATION');
    for (const o of [null, 42, 'fast', [1, 2], () => ({})]) await hostile(`open(file, ${String(o)})`, open(file, o), 'VALIDATION');
    expect(fs.existsSync(file), 'a refused open created the file').toBe(false);
    await hostile('open(directory)', open(dir), ['IO', 'NOT_A_DATABASE']);
    await hostile('open(path with NUL)', open(path.join(dir, 'a\0b')), ['IO', 'VALIDATION']);
    await hostile('open(missing, readOnly)', open(path.join(dir, 'missing.modelvault'), { readOnly: true }), 'IO');
    await hostile('open(missing, create: false)', open(path.join(dir, 'missing.modelvault'), { create: false }), 'IO');
    const junk = path.join(dir, 'junk.modelvault');
    fs.writeFileSync(junk, Buffer.alloc(100_000, 0x41));
    await hostile('open(a file of junk)', open(junk), 'NOT_A_DATABASE');
    expect(fs.readFileSync(junk).equals(Buffer.alloc(100_000, 0x41)), 'open changed a foreign file').toBe(true);

    for (const o of [{ memoryLimit: NaN }, { cacheSize: -1 }, { pageSize: 5 }, null, 7]) {
      await hostile(`openInMemory(${JSON.stringify(o)})`, () => Database.openInMemory(o as never), 'VALIDATION');
    }
    for (const img of ['bytes', 42, null, [1, 2, 3], new ArrayBuffer(8)]) {
      await hostile(`openSnapshotBytes(${typeof img})`, () => Database.openSnapshotBytes(img as never), 'VALIDATION');
    }
    await hostile('openSnapshotBytes(empty)', () => Database.openSnapshotBytes(new Uint8Array(0)), 'NOT_A_DATABASE');
    await hostile('openSnapshotBytes(junk)', () => Database.openSnapshotBytes(new Uint8Array(70_000).fill(7)), 'NOT_A_DATABASE');
    const image = await db.snapshotBytes();
    await hostile('openSnapshotBytes(a cut image)', () => Database.openSnapshotBytes(image.subarray(0, 20_000)), 'CORRUPT');
    await hostile('openSnapshotBytes(image, { memoryLimit: -1 })', () => Database.openSnapshotBytes(image, { memoryLimit: -1 }), 'VALIDATION');
    await expectUnchanged('after hostile opens');
  });

  it('models and registration', async () => {
    await hostile('register(null)', () => db.register(null as never), 'VALIDATION');
    await hostile('register("items")', () => db.register('items' as never), 'VALIDATION');
    await hostile('register({})', () => db.register({} as never), 'VALIDATION');
    await hostile('model(bad name)', () => model('bad name', { id: t.int() }, { primaryKey: 'id' }), 'VALIDATION');
    await hostile('model(__proto__ field)', () => model('m1', withOwn({ id: t.int() }, '__proto__', t.string()) as never, { primaryKey: 'id' }), 'VALIDATION');
    await hostile('model(constructor field)', () => model('m2', { id: t.int(), constructor: t.string() } as never, { primaryKey: 'id' }), 'VALIDATION');
    await hostile('model(no options)', () => model('m3', { id: t.int() }, undefined as never), 'VALIDATION');
    await hostile('model(json key)', () => model('m4', { id: t.json() }, { primaryKey: 'id' }), 'VALIDATION');
    await hostile('model(index on unknown field)', () => model('m5', { id: t.int() }, { primaryKey: 'id', indexes: [{ name: 'x', fields: ['nope' as 'id'] }] }), 'VALIDATION');
    await hostile('model(shape of numbers)', () => model('m6', { id: 5 } as never, { primaryKey: 'id' }), 'VALIDATION');
    const Changed = model('items', { id: t.string(), name: t.string() }, { primaryKey: 'id' });
    await hostile('register(incompatible items)', () => db.register(Changed), 'SCHEMA_INCOMPATIBLE');
    await hostile('collection(42)', () => db.collection(42 as never), 'VALIDATION');
    await hostile('collection(unknown)', () => db.collection('nope'), 'UNKNOWN_COLLECTION');
    await hostile('collection(__proto__)', () => db.collection('__proto__'), 'UNKNOWN_COLLECTION');
    await hostile('migrate(backfill unknown)', () => db.migrate(Items, { backfill: { nope: 1 } as never }), 'VALIDATION');
    await hostile('planMigration(42)', () => db.planMigration(42 as never), 'VALIDATION');
    expect((await db.collections()).map((c) => c.name)).toEqual(['items']);
    await expectUnchanged('after hostile models');
  });

  it('writes: wrong types, objects and functions as keys, huge values, deep nesting, cycles, prototype keys', async () => {
    const items = await db.register(Items);
    const rows: [string, unknown][] = [
      ['null row', null], ['number row', 42], ['string row', 'row'], ['array row', [good(100)]], ['function row', () => good(100)],
      ['a Map', new Map(Object.entries(good(100)))], ['class instance', Object.assign(new (class X {})(), good(100))],
      ['id as string', { ...good(100), id: '100' }], ['id as object', { ...good(100), id: {} }], ['id as function', { ...good(100), id: () => 1 }],
      ['id NaN', { ...good(100), id: NaN }], ['id 1e300', { ...good(100), id: 1e300 }], ['id 1.5', { ...good(100), id: 1.5 }], ['id -Infinity', { ...good(100), id: -Infinity }],
      ['id symbol', { ...good(100), id: Symbol('id') }], ['id bigint', { ...good(100), id: 100n }], ['missing id', { ...good(100), id: undefined }],
      ['price as string', { ...good(100), price: '1.5' }], ['qty negative', { ...good(100), qty: -1 }], ['qty NaN', { ...good(100), qty: NaN }],
      ['tags with a number', { ...good(100), tags: ['a', 1] }], ['tags as string', { ...good(100), tags: 'a' }], ['tags with a hole', { ...good(100), tags: [, 'b'] }],
      ['when invalid Date', { ...good(100), when: new Date('nope') }], ['when as number', { ...good(100), when: 1700000000000 }],
      ['meta as array', { ...good(100), meta: ['x'] }], ['meta missing source', { ...good(100), meta: {} }], ['meta null', { ...good(100), meta: null }],
      ['unknown field', { ...good(100), extra: 1 }], ['lone surrogate', { ...good(100), name: 'a\uD800b' }],
      ['__proto__ key', JSON.parse(JSON.stringify({ ...good(100), when: undefined }).replace('{', '{"__proto__":{"polluted":1},'))],
      ['own __proto__ key', withOwn({ ...good(100) }, '__proto__', { polluted: 1 })],
      ['constructor key', { ...good(100), constructor: { prototype: { polluted: 1 } } }],
      ['meta.__proto__', { ...good(100), meta: withOwn({ source: 's' }, '__proto__', { polluted: 1 }) }],
      ['blob with __proto__', { ...good(100), blob: JSON.parse('{"a":{"__proto__":{"polluted":1}}}') }],
      ['blob 100k deep', { ...good(100), blob: deep(100_000) }], ['blob deep object', { ...good(100), blob: deepObject(50_000) }],
      ['blob cycle', { ...good(100), blob: (() => { const a: unknown[] = []; a.push(a); return a; })() }],
      ['blob function', { ...good(100), blob: { f: () => 1 } }], ['blob symbol', { ...good(100), blob: [Symbol('s')] }],
      ['blob Map', { ...good(100), blob: new Map([[1, 2]]) }], ['blob invalid Date', { ...good(100), blob: { d: new Date(NaN) } }],
      ['indexed name of 5 MB', { ...good(100), name: 'n'.repeat(5_000_000) }], ['indexed name of 20 KB', { ...good(100), name: 'é'.repeat(10_000) }],
      ['unique code of 100 KB', { ...good(100), code: 'c'.repeat(100_000) }],
      ['duplicate id', good(3)], ['duplicate unique code', { ...good(100), code: 'c4' }],
    ];
    for (const [what, row] of rows) {
      await hostile(`insert(${what})`, () => items.insert(row as never));
      if (what !== 'duplicate id') await hostile(`put(${what})`, () => items.put(row as never)); // put replaces: a duplicate id is its purpose
    }
    // The same rows inside a transaction: the transaction fails as a whole and stores nothing.
    for (const [what, row] of rows.slice(0, 12)) {
      await hostile(`transaction insert(${what})`, () => db.transaction(async (tx) => {
        const c = tx.collection(Items);
        await c.insert(good(200));
        await c.insert(row as never);
      }));
    }
    await hostile('insertMany(42)', () => items.insertMany(42 as never), 'VALIDATION');
    await hostile('insertMany(null)', () => items.insertMany(null as never), 'VALIDATION');
    await hostile('insertMany("abc")', () => items.insertMany('abc' as never), 'VALIDATION');
    await hostile('insertMany(good rows, then a bad one)', () => items.insertMany([good(300), good(301), { ...good(302), qty: 'x' }] as never), 'VALIDATION');
    await hostile('insertMany(good rows, then a 20 KB indexed name)', () => items.insertMany([good(303), { ...good(304), name: 'z'.repeat(20_000) }]), 'VALIDATION');
    await hostile('insertMany(a duplicate inside the stream)', () => items.insertMany([good(305), good(305)]), 'DUPLICATE_KEY');

    const keys: [string, unknown][] = [
      ['object key', {}], ['array key', [1]], ['function key', () => 1], ['symbol key', Symbol('k')], ['NaN key', NaN], ['string key', '1'],
      ['null key', null], ['undefined key', undefined], ['1e300 key', 1e300], ['Date key', new Date()], ['bigint key', 5n],
    ];
    for (const [what, key] of keys) {
      await hostile(`get(${what})`, () => items.get(key as never), 'VALIDATION');
      await hostile(`delete(${what})`, () => items.delete(key as never), 'VALIDATION');
      await hostile(`update(${what})`, () => items.update(key as never, { qty: 1 }), 'VALIDATION');
    }
    for (const [what, patch] of [['null', null], ['string', 'x'], ['array', [1]], ['unknown field', { nope: 1 }], ['pk change', { id: 7 }],
      ['bad type', { qty: 'many' }], ['required removed', { name: undefined }], ['__proto__', JSON.parse('{"__proto__":{"polluted":1}}')],
      ['function', () => ({ qty: 1 })], ['huge indexed value', { name: 'q'.repeat(50_000) }], ['duplicate unique', { code: 'c1' }]] as [string, unknown][]) {
      await hostile(`update(5, ${what})`, () => items.update(5, patch as never));
    }
    await expectUnchanged('after hostile writes');
  });

  it('queries: bad paths, operators, values, absurd limits, offsets and memory limits', async () => {
    const items = await db.register(Items);
    const q = () => items.query();
    const queries: [string, () => unknown][] = [
      ['where(123)', () => q().where(123 as never, '=', 1)],
      ['where(object path)', () => q().where({} as never, '=', 1)],
      ['where(path with spaces)', () => q().where('na me', '=', 1)],
      ['where(__proto__)', () => q().where('__proto__', '=', 1)],
      ['where(constructor.prototype)', () => q().where('constructor.prototype', '=', 1)],
      ['where(unknown field)', () => q().where('nope', '=', 1)],
      ['where(bad op)', () => q().where('qty', 'LIKE' as never, 1)],
      ['where(op as object)', () => q().where('qty', {} as never, 1)],
      ['where(string for a number)', () => q().where('qty', '=', 'five')],
      ['where(object value)', () => q().where('qty', '=', { $gt: 1 })],
      ['where(function value)', () => q().where('qty', '=', () => 1)],
      ['where(in with a non-array)', () => q().where('qty', 'in', 5)],
      ['where(callback returning junk)', () => q().where(() => 42 as never)],
      ['where(callback throwing)', () => q().where((eb) => eb.or([null as never]))],
      ['orderBy(123)', () => q().orderBy(123 as never)],
      ['orderBy(direction)', () => q().orderBy('qty', 'sideways' as never)],
      ['orderBy(unknown)', () => q().orderBy('nope')],
      ...([-1, 1e300, NaN, Infinity, -Infinity, 1.5, '10', null, 2 ** 53] as unknown[]).flatMap((n): [string, () => unknown][] => [
        [`limit(${String(n)})`, () => q().limit(n as number)],
        [`offset(${String(n)})`, () => q().offset(n as number)],
      ]),
      ...([-1, 0, NaN, -Infinity, Infinity, '1MB', {}, 1e-300] as unknown[]).map((m): [string, () => unknown] =>
        [`options({ memoryLimit: ${String(m)} })`, () => q().orderBy('price').options({ memoryLimit: m as number })]),
      ['options({ signal: "x" })', () => q().options({ signal: 'x' as never })],
      ['options({ memorylimit })', () => q().orderBy('price').options({ memorylimit: 2 ** 20 } as never)],
      ['options(null)', () => q().options(null as never)],
      ['options(aborted signal)', () => q().options({ signal: AbortSignal.abort() })],
      ['select()', () => q().select()],
      ['select(123)', () => q().select(123 as never)],
      ['groupBy()', () => q().groupBy()],
      ['aggregate({})', () => q().aggregate({})],
      ['aggregate(junk)', () => q().aggregate({ n: 'count' as never })],
      ['aggregate(sum of a string)', () => q().aggregate({ s: sum('name') })],
      ['aggregate(bad name)', () => q().aggregate({ 'bad name': count() })],
      ['aggregate(own __proto__ name)', () => q().aggregate(withOwn({}, '__proto__', count()) as never)],
      ['having() before aggregate()', () => q().having('qty', '>', 1)],
      ['having(unknown name)', () => q().groupBy('name').aggregate({ n: count() }).having('nope', '>', 1)],
      ['having(__proto__)', () => q().groupBy('name').aggregate({ n: count() }).having('__proto__', '>', 1)],
      ['having(string for a count)', () => q().groupBy('name').aggregate({ n: count() }).having('n', '>', 'many')],
      ['select(field) after aggregate()', () => q().groupBy('name').aggregate({ n: count() }).select('qty' as never)],
      ['where() after aggregate()', () => q().groupBy('name').aggregate({ n: count() }).where('qty', '>', 1)],
      ['join(null)', () => q().join(null as never, 'id', 'id', { as: 'x' })],
      ['join(no as)', () => q().join(Items, 'id', 'id', undefined as never)],
      ['join(bad type)', () => q().join(Items, 'id', 'id', { as: 'x', type: 'outer' as never })],
      ['a 1-byte memory limit sort', () => q().orderBy('price').options({ memoryLimit: 1 })],
    ];
    for (const [what, build] of queries) await hostile(what, build);
    // Paging far past the end is not an error: it is empty.
    expect(await q().offset(Number.MAX_SAFE_INTEGER).limit(5).toArray()).toEqual([]);
    expect(await q().limit(0).toArray()).toEqual([]);
    await expectUnchanged('after hostile queries');
  });

  it('SQL: unbalanced, injected, oversized and mistyped', async () => {
    await db.register(Items);
    const sqls: [string, unknown, unknown?][] = [
      ['unbalanced (', 'SELECT * FROM items WHERE (qty > ?', [1]],
      ['unbalanced )', 'SELECT * FROM items WHERE qty > ?)', [1]],
      ['deep parentheses', `SELECT * FROM items WHERE ${'('.repeat(50_000)}qty > ?${')'.repeat(50_000)}`, [1]],
      ['only parentheses', '('.repeat(99_000)],
      ['oversized text', `SELECT * FROM items WHERE ${Array.from({ length: 30_000 }, () => 'qty = ?').join(' OR ')}`, Array(30_000).fill(1)],
      ['unterminated string', "SELECT * FROM items WHERE name = 'abc"],
      ['a literal', "SELECT * FROM items WHERE name = 'abc'"],
      ['stacked statement', 'SELECT * FROM items; DELETE FROM items'],
      ['DELETE', 'DELETE FROM items'],
      ['DROP', 'DROP TABLE items'],
      ['UPDATE', 'UPDATE items SET qty = 0'],
      ['a statement after a comment', 'SELECT * FROM items -- all\n; DROP TABLE items'],
      ['an unterminated comment', 'SELECT * FROM items /* WHERE qty > 1'],
      ['missing FROM', 'SELECT *'],
      ['unknown collection', 'SELECT * FROM nope'],
      ['unknown column', 'SELECT nope FROM items'],
      ['too few params', 'SELECT * FROM items WHERE qty > ? AND price < ?', [1]],
      ['too many params', 'SELECT * FROM items WHERE qty > ?', [1, 2, 3]],
      ['param of the wrong type', 'SELECT * FROM items WHERE qty > ?', ['x']],
      ['param as object', 'SELECT * FROM items WHERE qty = ?', [{ toString: () => '1' }]],
      ['params not an array', 'SELECT * FROM items WHERE qty > ?', 5],
      ['LIMIT -1', 'SELECT * FROM items LIMIT -1'],
      ['LIMIT 1e300', 'SELECT * FROM items LIMIT 1e300'],
      ['LIMIT NaN', 'SELECT * FROM items LIMIT NaN'],
      ['LIMIT ?', 'SELECT * FROM items LIMIT ?', [NaN]],
      ['OFFSET -5', 'SELECT * FROM items LIMIT 5 OFFSET -5'],
      ['GROUP BY without aggregate', 'SELECT name FROM items GROUP BY'],
      ['aggregate of nothing', 'SELECT SUM() FROM items'],
      ['JOIN without ON', 'SELECT * FROM items JOIN items'],
      ['AS __proto__', 'SELECT qty AS __proto__ FROM items'],
      ['HAVING without GROUP BY', 'SELECT qty FROM items HAVING qty > ?', [1]],
      ['HAVING of an unknown column', 'SELECT name, COUNT(*) AS n FROM items GROUP BY name HAVING nope > ?', [1]],
      ['HAVING with a string for a count', 'SELECT name, COUNT(*) AS n FROM items GROUP BY name HAVING COUNT(*) > ?', ['x']],
      ['DISTINCT *', 'SELECT DISTINCT * FROM items'],
      ['DISTINCT with an aggregate', 'SELECT DISTINCT name, COUNT(*) FROM items GROUP BY name'],
      ['LIKE with a middle wildcard', 'SELECT * FROM items WHERE name LIKE ?', ['a%b']],
      ['LIKE with _', 'SELECT * FROM items WHERE name LIKE ?', ['a_']],
      ['LIKE with a number', 'SELECT * FROM items WHERE name LIKE ?', [5]],
      ['LIKE on a number field', 'SELECT * FROM items WHERE qty LIKE ?', ['1%']],
      ['NUL byte', 'SELECT * FROM items\0'],
      ['empty', ''],
      ['number', 42],
      ['null', null],
      ['object', { toString: () => 'SELECT * FROM items' }],
    ];
    for (const [what, text, params] of sqls) await hostile(`sql(${what})`, () => db.sql(text as string, params as never));
    await expectUnchanged('after hostile SQL');
  });

  it('transactions, maintenance calls and a closed database', async () => {
    await hostile('transaction(42)', () => db.transaction(42 as never), 'VALIDATION');
    await hostile('transaction(null)', () => db.transaction(null as never), 'VALIDATION');
    let leaked: { insert(row: unknown): Promise<void> } | null = null;
    await db.transaction(async (tx) => { leaked = tx.collection(Items) as never; });
    await hostile('a transaction used after it ended', () => leaked!.insert(good(400)), 'TRANSACTION_CLOSED');
    await hostile('tx.collection(null)', () => db.transaction(async (tx) => { tx.collection(null as never); }), 'VALIDATION');
    await hostile('tx.collection(unregistered)', () => db.transaction(async (tx) => {
      await tx.collection(model('ghost', { id: t.int() }, { primaryKey: 'id' })).insert({ id: 1 });
    }), 'UNKNOWN_COLLECTION');
    // A rejected write inside a transaction leaves the transaction as it was: it goes on and commits.
    await db.transaction(async (tx) => {
      const c = tx.collection(Items);
      await hostile('tx insert(20 KB indexed name)', () => c.insert({ ...good(600), name: 'z'.repeat(20_000) }), 'VALIDATION');
      await hostile('tx put(20 KB indexed name)', () => c.put({ ...good(601), name: 'z'.repeat(20_000) }), 'VALIDATION');
      await hostile('tx update(5, 20 KB indexed name)', () => c.update(5, { name: 'z'.repeat(20_000) }), 'VALIDATION');
      await hostile('tx insert(wrong type)', () => c.insert({ ...good(602), qty: 'x' } as never), 'VALIDATION');
      await c.insert(good(603));
    });
    const items = await db.register(Items);
    expect(await items.get(603)).toEqual(good(603));
    expect(await items.get(600)).toBeUndefined();
    expect((await items.get(5))?.name).toBe('item 5');
    expect(await items.delete(603)).toBe(true);
    await hostile('backup(123)', () => db.backup(123 as never), 'VALIDATION');
    await hostile('backup("")', () => db.backup(''), 'VALIDATION');
    await hostile('backup(into a missing directory)', () => db.backup(path.join(dir, 'no', 'such', 'dir', 'b.modelvault')), 'IO');
    await expectUnchanged('after hostile maintenance');

    const other = await Database.openInMemory();
    const c = await other.register(Items);
    await other.close();
    await hostile('insert after close', () => c.insert(good(1)), 'CLOSED');
    await hostile('get after close', () => c.get(1), 'CLOSED');
    await hostile('query after close', () => c.query(), 'CLOSED');
    await hostile('sql after close', () => other.sql('SELECT * FROM items'), 'CLOSED');
    await hostile('register after close', () => other.register(Items), 'CLOSED');
    await hostile('transaction after close', () => other.transaction(async () => 1), 'CLOSED');
    await hostile('verify after close', () => other.verify(), 'CLOSED');
    await hostile('compact after close', () => other.compact(), 'CLOSED');
    await hostile('snapshotBytes after close', () => other.snapshotBytes(), 'CLOSED');
    await hostile('backup after close', () => other.backup(path.join(dir, 'closed.modelvault')), 'CLOSED');
    expect(fs.existsSync(path.join(dir, 'closed.modelvault'))).toBe(false);

    // After all of it: the database still works and verifies clean.
    await items.insert(good(500));
    expect(await items.count()).toBe(SEEDED + 1);
    await items.delete(500);
    await expectUnchanged('after the final write');
    expect((await db.verify()).problems).toEqual([]);
  });
});
