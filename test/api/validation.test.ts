// Every write is validated against its model: each t.* type, modifier and constraint accepts
// good values and rejects bad ones with VALIDATION naming the field; hostile input never
// reaches a prototype; a rejected write stores nothing; accepted values round-trip exactly.
import { describe, expect, it } from 'vitest';
import { model, t, type Database } from '../../src/index.js';
import { MODES, expectCode, expectValidation, openDb, reopenDb, type Mode } from '../helpers/db.js';

const UUID = '123e4567-e89b-12d3-a456-426614174000';

const Everything = model('everything', {
  id: t.int(),
  i: t.int().min(0).max(100).optional(),
  n: t.int().optional(),
  f: t.float().min(-1).max(1).optional(),
  fl: t.float().optional(),
  big: t.bigint().optional(),
  bigr: t.bigint().min(-10).max(10).optional(),
  s: t.string().minLength(2).maxLength(5).optional(),
  re: t.string().regex(/^[a-z]+$/).optional(),
  rg: t.string().regex(/^a/g).optional(),
  email: t.string().email().optional(),
  url: t.string().url().optional(),
  ne: t.string().nonEmpty().optional(),
  bool: t.bool().optional(),
  ts: t.timestamp().min(new Date(0)).max(new Date('2100-01-01T00:00:00.000Z')).optional(),
  u: t.uuid().optional(),
  by: t.bytes().minLength(1).maxLength(4).optional(),
  j: t.json().optional(),
  tags: t.list(t.string().nonEmpty()).maxLength(3).optional(),
  ne_list: t.list(t.int()).nonEmpty().optional(),
  meta: t.object({ source: t.string(), score: t.float().min(0).optional() }).optional(),
  items: t.list(t.object({ sku: t.string(), qty: t.int().min(1) })).optional(),
  e: t.enum(['a', 'b']).optional(),
  d: t.string().default('dflt'),
  dl: t.list(t.int()).default([]),
}, { primaryKey: 'id' });

type Case = { field: string; good: unknown[]; bad: (unknown | { value: unknown; path: string })[] };
const at = (value: unknown, path: string) => ({ value, path });
const isAt = (x: unknown): x is { value: unknown; path: string } =>
  typeof x === 'object' && x !== null && Object.keys(x).length === 2 && 'value' in x && 'path' in x;

const CASES: Case[] = [
  { field: 'i', good: [0, 100, 42], bad: [-1, 101, 1.5, NaN, Infinity, -Infinity, '5', 5n, true, null, new Date(5)] },
  { field: 'n', good: [Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 0, -7], bad: [2 ** 53, -(2 ** 53), 0.1, NaN, Infinity, -Infinity, '1', [1], {}] },
  { field: 'f', good: [-1, 1, 0.5, -0.25], bad: [1.0001, -2, Infinity, -Infinity, '0.5', 1n, null, false] },
  { field: 'fl', good: [Infinity, -Infinity, 5e-324, Number.MAX_VALUE, 1e-300, 0.1 + 0.2], bad: ['x', new Date(0), {}, [1.5], 1n] },
  { field: 'big', good: [-(2n ** 63n), 2n ** 63n - 1n, 0n, -1n, 12345678901234567890n - 10000000000000000000n], bad: [2n ** 63n, -(2n ** 63n) - 1n, 5, '5', 1.5, null] },
  { field: 'bigr', good: [-10n, 10n, 0n], bad: [-11n, 11n, 10] },
  { field: 's', good: ['ab', 'abcde', '日本語'], bad: ['a', 'abcdef', '', 5, new Date(0), ['ab'], null, { toString: () => 'ab' }] },
  { field: 're', good: ['abc', 'z'], bad: ['ABC', 'ab1', '', ' abc'] },
  // a /g regex is stateful (lastIndex); the constraint must accept the same value twice in a row
  { field: 'rg', good: ['abc', 'abc', 'a', 'a'], bad: ['ba', 'b'] },
  { field: 'email', good: ['a@b.co', 'first.last+tag@example.org'], bad: ['a@b', 'not an email', 'a b@c.de', '@b.co', ''] },
  { field: 'url', good: ['https://example.com/x?y=1', 'ftp://host/path'], bad: ['example.com', 'http://', 'not a url', '', '/relative/path'] },
  { field: 'ne', good: ['x', ' '], bad: [''] },
  { field: 'bool', good: [true, false], bad: [0, 1, 'true', null, new Boolean(true)] },
  {
    field: 'ts',
    good: [new Date(0), new Date('2099-12-31T23:59:59.999Z'), new Date('2100-01-01T00:00:00.000Z')],
    bad: [new Date(-1), new Date('2100-01-01T00:00:00.001Z'), new Date(NaN), 0, '2020-01-01', Date.now(), null],
  },
  { field: 'u', good: [UUID, '00000000-0000-0000-0000-000000000000'], bad: [UUID.replace(/-/g, ''), 'zzz', '', 5, `${UUID} `, `{${UUID}}`] },
  {
    field: 'by',
    good: [Uint8Array.of(1), Uint8Array.of(0, 255, 1, 2)],
    bad: [new Uint8Array(5), new Uint8Array(0), [1, 2], 'ab', new Uint16Array(2), new ArrayBuffer(2), null],
  },
  {
    field: 'j',
    good: [1, 'x', true, null, [1, { a: 2 }], { a: { b: [1, 2n, 'c'] } }, { when: new Date(5) }, { constructor: { prototype: { x: 1 } } }, { bytes: Uint8Array.of(1, 2) }],
    bad: [() => 1, new Map([[1, 2]]), new Set([1]), new (class X {})(), new Date(NaN), at({ a: [new Date(NaN)] }, 'j.a'), at({ a: { f: () => 1 } }, 'j.a.f'), Symbol('s')],
  },
  {
    field: 'tags',
    good: [[], ['a', 'b', 'c']],
    bad: [at(['a', ''], 'tags.1'), ['a', 'b', 'c', 'd'], 'a', at([1], 'tags.0'), at([undefined], 'tags.0'), at([, 'a'], 'tags.0'), { 0: 'a', length: 1 }, new Set(['a'])],
  },
  { field: 'ne_list', good: [[0]], bad: [[], at([1, 'x'], 'ne_list.1')] },
  {
    field: 'meta',
    good: [{ source: 'x' }, { source: 'x', score: 0 }, { source: '', score: 1e9 }],
    bad: [
      at({ source: 'x', score: -1 }, 'meta.score'), at({ source: 'x', score: 'a' }, 'meta.score'), at({}, 'meta.source'),
      at({ source: 'x', zzz: 1 }, 'meta.zzz'), at({ source: 1 }, 'meta.source'), at({ source: 'x', score: null }, 'meta.score'),
      [], null, new Date(0), 'x', new (class M { source = 'x'; })(),
    ],
  },
  {
    field: 'items',
    good: [[], [{ sku: 'a', qty: 1 }, { sku: 'b', qty: 2 }]],
    bad: [at([{ sku: 'a', qty: 1 }, { sku: 'b', qty: 0 }], 'items.1.qty'), at([{ sku: 'a' }], 'items.0.qty'), at([{ sku: 'a', qty: 1 }, null], 'items.1')],
  },
  { field: 'e', good: ['a', 'b'], bad: ['c', 'A', '', 1, null] },
  { field: 'd', good: ['', 'other'], bad: [1, null] },
  { field: 'dl', good: [[], [1, 2]], bad: [at([1.5], 'dl.0'), 'x'] },
];

/** The value a good input reads back as. */
const expected = (field: string, v: unknown) => (field === 'u' ? (v as string).toLowerCase() : v);

async function setup(mode: Mode): Promise<{ db: Database; c: Awaited<ReturnType<Database['register']>> }> {
  const db = await openDb(mode);
  const c = await db.register(Everything);
  return { db, c };
}

describe('model definitions', () => {
  it('refuses, where the model is defined, fields no value could satisfy and constraints their kind ignores', async () => {
    const define = (field: Parameters<typeof model>[1][string]) => () => model('m', { id: t.int(), f: field }, { primaryKey: 'id' });
    const cases: [string, () => unknown, RegExp][] = [
      ['a default that breaks its own min', define(t.int().min(5).default(1)), /^f: its default is not a valid value \(f: must be >= 5\)$/],
      ['a default of the wrong type', define(t.int().default('x' as never)), /^f: its default is not a valid value \(f: expected a safe integer/],
      ['a default outside its enum', define(t.enum(['a', 'b']).default('c' as never)), /^f: its default is not a valid value/],
      ['default(undefined)', define(t.string().default(undefined as never)), /use optional\(\)/],
      ['min above max', define(t.float().min(5).max(1)), /^f: min 5 is above max 1/],
      ['minLength above maxLength', define(t.string().minLength(3).maxLength(2)), /^f: minLength 3 is above maxLength 2/],
      ['a negative maxLength', define(t.list(t.int()).maxLength(-1)), /maxLength\(\) needs a non-negative integer/],
      ['min(NaN)', define(t.int().min(NaN)), /min\(\) needs a number/],
      ['min() on a string', define(t.string().min(3)), /^f: min\(\) does not apply to a string field$/],
      ['regex() on an int', define(t.int().regex(/x/)), /regex\(\) does not apply to an int field/],
      ['an empty enum', define(t.enum([] as unknown as ['a'])), /at least one value/],
      ['an enum listing a value twice', define(t.enum(['a', 'a'])), /lists a value twice/],
      ['a list element with min above max', define(t.list(t.int().min(2).max(1))), /^f\.\*: min 2 is above max 1/],
      ['a nested object field', () => model('m', { id: t.int(), o: t.object({ x: t.string().email().min(1) }) }, { primaryKey: 'id' }), /^o\.x: min\(\) does not apply/],
    ];
    for (const [label, make, message] of cases) {
      const err = await expectCode(make, 'VALIDATION');
      expect(err.message, label).toMatch(message);
    }
    await expectCode(() => model('m', { id: t.int() }, {} as never), 'VALIDATION');
    // Sound definitions still pass, and a good default is stored for absent fields.
    const Good = model('good', { id: t.int(), n: t.int().min(0).max(9).default(3), s: t.string().minLength(1).maxLength(1).default('x'), e: t.enum(['a', 'b']).default('b') }, { primaryKey: 'id' });
    const db = await openDb('memory');
    const c = await db.register(Good);
    await c.insert({ id: 1 });
    expect(await c.get(1)).toEqual({ id: 1, n: 3, s: 'x', e: 'b' });
  });

  it('refuses at register a model wider than a leaf can hold a row of; a row too wide for its page says so', async () => {
    const wide = (name: string, fields: number) => {
      const shape: Record<string, ReturnType<typeof t.int>> = { id: t.int() };
      for (let i = 1; i < fields; i++) shape[`f${i}`] = t.int().optional() as never;
      return model(name, shape, { primaryKey: 'id' });
    };
    const db = await openDb('memory', { pageSize: 16384 });
    const err = await expectValidation(db.register(wide('too_wide', 101)), 'fields');
    expect(err.message).toMatch(/101 fields, and a row in 16384-byte pages holds at most 100/);
    expect((await db.collections()).length).toBe(0);
    await expectValidation(db.migrate(wide('too_wide', 101)), 'fields');
    const c = await db.register(wide('widest', 100)) as unknown as { insert(r: object): Promise<void>; count(): Promise<number> };
    await c.insert({ id: 1 }); // every other field absent: fits
    const full: Record<string, number> = { id: 2 };
    for (let i = 1; i < 100; i++) full[`f${i}`] = i;
    const tooBig = await expectValidation(c.insert(full), '');
    expect(tooBig.message).toMatch(/a row of 100 columns takes \d+ bytes of a leaf, more than the \d+ that 16384-byte pages leave .*larger pageSize/);
    expect(await c.count()).toBe(1);
  });
});

describe.each(MODES)('validation of every field type and constraint (%s)', (mode) => {
  it.each(CASES.map((c) => [c.field, c] as const))('%s accepts good values and rejects bad ones naming the field', async (_name, tc) => {
    const { c } = await setup(mode);
    const rows = c as unknown as { insert(r: unknown): Promise<void>; update(k: unknown, p: unknown): Promise<boolean>; get(k: unknown): Promise<Record<string, unknown> | undefined>; count(): Promise<number> };
    let id = 0;
    for (const v of tc.good) {
      id++;
      await rows.insert({ id, [tc.field]: v });
      const got = await rows.get(id);
      expect(got, `${tc.field} = ${String(v)}`).toBeDefined();
      expect(got![tc.field]).toEqual(expected(tc.field, v));
    }
    const stored = await rows.count();
    expect(stored).toBe(tc.good.length);
    for (const b of tc.bad) {
      const { value, path } = isAt(b) ? b : { value: b, path: tc.field };
      const err = await expectValidation(rows.insert({ id: 1000, [tc.field]: value }), path);
      expect(err.message).toContain(path);
      // a patch is validated the same way and changes nothing
      if (tc.good.length > 0) {
        await expectValidation(rows.update(1, { [tc.field]: value }), path);
        expect((await rows.get(1))![tc.field]).toEqual(expected(tc.field, tc.good[0]));
      }
    }
    expect(await rows.count()).toBe(stored);
    expect(await rows.get(1000)).toBeUndefined();
  });

  it('required fields, unknown fields and non-object rows', async () => {
    const { c } = await setup(mode);
    const rows = c as unknown as { insert(r: unknown): Promise<void>; put(r: unknown): Promise<void>; count(): Promise<number> };
    await expectValidation(rows.insert({}), 'id');
    await expectValidation(rows.insert({ id: undefined }), 'id');
    await expectValidation(rows.insert({ id: 1, zzz: 1 }), 'zzz');
    await expectValidation(rows.put({ id: 1, zzz: 1 }), 'zzz');
    for (const notARow of [null, undefined, 5, 'row', [], [{ id: 1 }], new Date(0), new (class R { id = 1; })(), new Map([['id', 1]])]) {
      await expectCode(rows.insert(notARow), 'VALIDATION');
    }
    expect(await rows.count()).toBe(0);
  });

  it('null is not a value for an optional field: leave it out', async () => {
    const { c } = await setup(mode);
    await expectValidation(c.insert({ id: 1, s: null as never }), 's');
    await c.insert({ id: 1, s: undefined });
    expect(await c.get(1)).toEqual({ id: 1, d: 'dflt', dl: [] });
  });

  it('defaults fill absent fields, are not shared between rows, and explicit values win', async () => {
    const { c } = await setup(mode);
    await c.insert({ id: 1 });
    await c.insert({ id: 2, d: 'mine', dl: [7] });
    const one = await c.get(1);
    expect(one).toEqual({ id: 1, d: 'dflt', dl: [] });
    one!.dl.push(99);
    expect((await c.get(1))!.dl).toEqual([]);
    await c.insert({ id: 3 });
    expect((await c.get(3))!.dl).toEqual([]);
    expect(await c.get(2)).toEqual({ id: 2, d: 'mine', dl: [7] });
  });

  it('uuids are stored in canonical lowercase', async () => {
    const { c } = await setup(mode);
    await c.insert({ id: 1, u: UUID.toUpperCase() });
    expect((await c.get(1))!.u).toBe(UUID);
  });

  it('a validation error inside a transaction that escapes rolls back the whole transaction', async () => {
    const { db, c } = await setup(mode);
    await c.insert({ id: 1 });
    const err = await expectValidation(db.transaction(async (tx) => {
      const tc = tx.collection(Everything);
      await tc.insert({ id: 2 });
      await tc.update(1, { s: 'ok' });
      await tc.insert({ id: 3, i: 1.5 });
    }), 'i');
    expect(err.message).toContain('i');
    expect(await c.count()).toBe(1);
    expect(await c.get(2)).toBeUndefined();
    expect(await c.get(1)).toEqual({ id: 1, d: 'dflt', dl: [] });
  });

  it('insertMany reports the failing row and its field', async () => {
    const { c } = await setup(mode);
    const err = await expectValidation(c.insertMany([{ id: 1 }, { id: 2 }, { id: 3, meta: { source: 'x', score: -5 } }]), 'meta.score');
    expect(err.details.row).toBe(2);
    expect(err.message).toContain('row 2');
    expect(await c.count()).toBe(0);
  });
});

describe.each(MODES)('hostile input (%s)', (mode) => {
  it('a parsed __proto__ key merged into a row is rejected and pollutes nothing', async () => {
    const { c } = await setup(mode);
    const rows = c as unknown as { insert(r: unknown): Promise<void>; put(r: unknown): Promise<void>; update(k: unknown, p: unknown): Promise<boolean>; get(k: unknown): Promise<unknown>; count(): Promise<number> };
    const evil = JSON.parse('{"__proto__":{"polluted":1}}');
    expect(Object.keys(evil)).toEqual(['__proto__']);
    await c.insert({ id: 1 });

    await expectValidation(rows.insert({ id: 2, ...evil }), '__proto__');
    await expectValidation(rows.put({ id: 2, ...evil }), '__proto__');
    await expectValidation(rows.update(1, { ...evil }), '__proto__');
    await expectValidation(rows.insert({ id: 2, meta: { source: 'x', ...evil } }), 'meta.__proto__');
    await expectValidation(rows.insert({ id: 2, items: [{ sku: 'a', qty: 1, ...evil }] }), 'items.0.__proto__');
    await expectValidation(rows.insert({ id: 2, j: evil }), 'j.__proto__');
    await expectValidation(rows.insert({ id: 2, j: { deep: [evil] } }), 'j.deep.__proto__');
    // Object.assign sets the prototype instead: the row is then no plain object
    await expectCode(rows.insert(Object.assign({ id: 2 }, evil)), 'VALIDATION');
    await expectCode(rows.insert({ id: 2, meta: Object.assign({ source: 'x' }, evil) }), 'VALIDATION');

    expect(await rows.count()).toBe(1);
    expect(await rows.get(2)).toBeUndefined();
    expect(await c.get(1)).toEqual({ id: 1, d: 'dflt', dl: [] });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
    const read = (await c.get(1)) as Record<string, unknown>;
    expect(Object.getPrototypeOf(read)).toBe(Object.prototype);
  });

  it('constructor and prototype keys are unknown fields in rows and plain data in json', async () => {
    const { c } = await setup(mode);
    const rows = c as unknown as { insert(r: unknown): Promise<void> };
    await expectValidation(rows.insert({ id: 1, constructor: { prototype: { polluted: 1 } } }), 'constructor');
    await expectValidation(rows.insert({ id: 1, prototype: 1 }), 'prototype');
    await expectValidation(rows.insert({ id: 1, meta: { source: 'x', constructor: 1 } }), 'meta.constructor');
    const j = { constructor: { prototype: { polluted: 1 } }, prototype: 'p', toString: 'not a function' };
    await c.insert({ id: 1, j });
    const got = await c.get(1);
    expect(got!.j).toEqual(j);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(typeof ({}).toString).toBe('function');
    expect(await c.count()).toBe(1);
  });

  it('NaN and ±Infinity in an int field, an invalid Date, a Date where a string belongs', async () => {
    const { c } = await setup(mode);
    const rows = c as unknown as { insert(r: unknown): Promise<void>; count(): Promise<number> };
    for (const v of [NaN, Infinity, -Infinity]) {
      await expectValidation(rows.insert({ id: v }), 'id');
      await expectValidation(rows.insert({ id: 1, n: v }), 'n');
    }
    await expectValidation(rows.insert({ id: 1, ts: new Date('not a date') }), 'ts');
    await expectValidation(rows.insert({ id: 1, s: new Date(0) }), 's');
    await expectValidation(rows.insert({ id: 1, d: new Date(0) }), 'd');
    await expectValidation(rows.insert({ id: 1, n: '42' }), 'n');
    expect(await rows.count()).toBe(0);
  });

  it('keys are validated too: get/update/delete with a wrongly typed key', async () => {
    const { c } = await setup(mode);
    const rows = c as unknown as { get(k: unknown): Promise<unknown>; update(k: unknown, p: unknown): Promise<boolean>; delete(k: unknown): Promise<boolean> };
    await c.insert({ id: 1 });
    await expectCode(rows.get('1'), 'VALIDATION');
    await expectCode(rows.get(NaN), 'VALIDATION');
    await expectCode(rows.get(null), 'VALIDATION');
    await expectCode(rows.update(1.5, { s: 'ab' }), 'VALIDATION');
    await expectCode(rows.delete([1]), 'VALIDATION');
    await expectCode(rows.update(1, null), 'VALIDATION');
    await expectCode(rows.update(1, [1]), 'VALIDATION');
    expect(await c.count()).toBe(1);
  });

  it('a 10 MB string is stored and read back exactly (overflow pages)', async () => {
    const db = await openDb(mode);
    const Docs = model('docs', { id: t.int(), body: t.string(), after: t.int() }, { primaryKey: 'id' });
    let docs = await db.register(Docs);
    // varied content, with multi-byte characters, so a misplaced page or byte shows
    const chunk = Array.from({ length: 1000 }, (_, i) => String.fromCharCode(0x20 + (i * 7919) % 0x5e)).join('') + 'é漢🙂';
    const body = chunk.repeat(Math.ceil((10 * 2 ** 20) / chunk.length)).slice(0, 10 * 2 ** 20 - 3) + 'end';
    expect(body.length).toBe(10 * 2 ** 20);
    await docs.insert({ id: 1, body: 'small', after: 1 });
    await docs.insert({ id: 2, body, after: 2 });
    await docs.insert({ id: 3, body: 'tail', after: 3 });
    const check = async () => {
      const got = await docs.get(2);
      expect(got!.body.length).toBe(body.length);
      expect(got!.body === body).toBe(true);
      expect(got!.after).toBe(2);
      expect(await docs.get(3)).toEqual({ id: 3, body: 'tail', after: 3 });
      const all = await docs.query().toArray();
      expect(all.map((r) => r.id)).toEqual([1, 2, 3]);
      expect(all[1].body === body).toBe(true);
    };
    await check();
    expect((await db.verify()).ok).toBe(true);
    const again = await reopenDb(db);
    docs = await again.register(Docs);
    await check();
  });

  it('1,000-deep nested json is a clear VALIDATION error; moderately deep json round-trips', async () => {
    const { c } = await setup(mode);
    let deep: unknown = 'leaf';
    for (let i = 0; i < 1000; i++) deep = i % 2 ? { a: deep } : [deep];
    const err = await expectCode(c.insert({ id: 1, j: deep }), 'VALIDATION');
    expect(err.message).toMatch(/nesting deeper than \d+ levels/);
    expect(String(err.details.path)).toMatch(/^j(\.a)*$/);
    expect(await c.count()).toBe(0);
    expect(await c.get(1)).toBeUndefined();

    let ok: unknown = 'leaf';
    for (let i = 0; i < 100; i++) ok = i % 2 ? { a: ok } : [ok];
    await c.insert({ id: 1, j: ok });
    expect((await c.get(1))!.j).toEqual(ok);
  });

  it('a json value that contains itself is named a cycle where it closes; shared parts are not cycles', async () => {
    const { c } = await setup(mode);
    const loop: Record<string, unknown> = { name: 'x', child: { list: [1] } };
    ((loop.child as Record<string, unknown>).list as unknown[]).push(loop);
    const err = await expectCode(c.insert({ id: 1, j: loop }), 'VALIDATION');
    expect(err.message).toBe('j.child.list: the value contains itself (a cycle)');
    expect(err.details.path).toBe('j.child.list');
    const shared = { a: 1 };
    await c.insert({ id: 2, j: { x: shared, y: [shared, shared] } });
    expect((await c.get(2))!.j).toEqual({ x: { a: 1 }, y: [{ a: 1 }, { a: 1 }] });
    // Objects that are not plain data say what they are.
    class Point { x = 1; }
    expect((await expectCode(c.insert({ id: 3, j: new Point() }), 'VALIDATION')).message).toBe('j: an instance of Point cannot be stored in a json field');
    expect((await expectCode(c.insert({ id: 3, j: { m: new Map() } }), 'VALIDATION')).message).toBe('j.m: an instance of Map cannot be stored in a json field');
    expect(await c.count()).toBe(1);
  });
});

describe.each(MODES)('exact round trips (%s)', (mode) => {
  const RoundTrip = model('round_trip', {
    id: t.int(),
    ts: t.timestamp(),
    tsList: t.list(t.timestamp()),
    bytes: t.bytes(),
    big: t.bigint(),
    bigs: t.list(t.bigint()),
    negZero: t.float(),
    negZeros: t.list(t.float()),
    nan: t.float(),
    inf: t.float(),
    text: t.string(),
    tags: t.list(t.string()),
    empty: t.list(t.int()),
    note: t.string().optional(),
    nested: t.object({
      label: t.string(),
      when: t.timestamp().optional(),
      score: t.float(),
      inner: t.object({ values: t.list(t.list(t.int())), blob: t.bytes().optional() }),
      missing: t.string().optional(),
    }),
    objs: t.list(t.object({ k: t.string(), v: t.float().optional() })),
    j: t.json(),
  }, { primaryKey: 'id', indexes: [{ name: 'byText', fields: ['text'] }, { name: 'byTs', fields: ['ts'] }] });

  const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);
  const unicode = '👩‍👩‍👧‍👦 漢字かな交じり 한국어 e\u0301 n\u0303 \u0000 \uFEFF 🇫🇷 𝕏';
  const row = {
    id: 1,
    ts: new Date('1969-07-20T20:17:40.123Z'),
    tsList: [new Date(0), new Date(-8.64e15), new Date(8.64e15)],
    bytes: allBytes.subarray(1),
    big: -(2n ** 63n),
    bigs: [2n ** 63n - 1n, 0n, -1n],
    negZero: -0,
    negZeros: [-0, 0, -0],
    nan: NaN,
    inf: -Infinity,
    text: unicode,
    tags: ['😀', '中文', 'a\u030A', ''],
    empty: [],
    nested: {
      label: 'n',
      when: new Date(1),
      score: -0,
      inner: { values: [[], [1, -2], [Number.MAX_SAFE_INTEGER]], blob: new Uint8Array(0) },
    },
    objs: [{ k: 'a', v: NaN }, { k: 'b' }],
    j: { s: 'x', n: 1.5, big: 7n, list: [1, 'two', null, { three: [true] }], d: new Date(3), b: Uint8Array.of(9) },
  };

  const pristine = structuredClone(row);

  async function check(c: { get(k: number): Promise<unknown>; query(): { toArray(): Promise<unknown[]> } }) {
    for (const got of [await c.get(1), (await c.query().toArray())[0]] as Record<string, any>[]) {
      // json bytes come back as a Uint8Array (a Node Buffer, which is one): compared by content below
      expect(got).toEqual({ ...pristine, j: { ...pristine.j, b: expect.any(Uint8Array) } });
      expect([...got.j.b]).toEqual([9]);
      expect(got.ts).toBeInstanceOf(Date);
      expect(got.ts.getTime()).toBe(row.ts.getTime());
      expect(got.tsList.map((d: Date) => d.getTime())).toEqual([0, -8.64e15, 8.64e15]);
      expect(got.bytes).toBeInstanceOf(Uint8Array);
      expect(Buffer.from(got.bytes).equals(Buffer.from(allBytes.subarray(1)))).toBe(true);
      expect(got.big).toBe(-(2n ** 63n));
      expect(got.bigs).toEqual([2n ** 63n - 1n, 0n, -1n]);
      expect(typeof got.bigs[0]).toBe('bigint');
      expect(Object.is(got.negZero, -0)).toBe(true);
      expect(got.negZeros.map((z: number) => Object.is(z, -0))).toEqual([true, false, true]);
      expect(Object.is(got.nested.score, -0)).toBe(true);
      expect(Number.isNaN(got.nan)).toBe(true);
      expect(Number.isNaN(got.objs[0].v)).toBe(true);
      expect(got.inf).toBe(-Infinity);
      expect(got.text).toBe(unicode);
      expect(got.text.normalize('NFC')).not.toBe(got.text); // combining marks kept, not normalized
      expect(got.empty).toEqual([]);
      expect('note' in got).toBe(false);
      expect('missing' in got.nested).toBe(false);
      expect('v' in got.objs[1]).toBe(false);
      expect(Object.keys(got).sort()).toEqual(Object.keys(pristine).sort());
      expect(got.j.big).toBe(7n);
      expect(got.j.d).toEqual(new Date(3));
    }
  }

  it('Date, bytes, bigint extremes, -0, NaN, unicode, empty lists, absent optionals, nested values', async () => {
    const db = await openDb(mode);
    const c = await db.register(RoundTrip);
    await c.insert(row);
    await check(c);
    // the input was copied: mutating it afterwards changes nothing stored
    row.tags.push('later');
    row.nested.inner.values[1].push(3);
    try {
      await check(c);
    } finally {
      row.tags.pop();
      row.nested.inner.values[1].pop();
    }
    // and so is the output: mutating a row read back changes nothing stored
    const got = (await c.get(1))!;
    got.tags.push('x');
    got.ts.setTime(0);
    got.bytes[0] = 99;
    await check(c);
    // indexes over unicode strings and timestamps find the row
    expect((await c.query().where('text', '=', unicode).toArray()).map((r) => r.id)).toEqual([1]);
    expect((await c.query().where('ts', '=', new Date('1969-07-20T20:17:40.123Z')).toArray()).map((r) => r.id)).toEqual([1]);
    const again = await reopenDb(db);
    await check(await again.register(RoundTrip));
  });

  it('the largest and smallest bigints are usable as keys and keep their order', async () => {
    const db = await openDb(mode);
    const Big = model('big_keys', { id: t.bigint(), v: t.int() }, { primaryKey: 'id' });
    const c = await db.register(Big);
    const keys = [2n ** 63n - 1n, -(2n ** 63n), 0n, -1n, 1n, 2n ** 53n + 1n];
    for (const [i, k] of keys.entries()) await c.insert({ id: k, v: i });
    for (const [i, k] of keys.entries()) expect(await c.get(k)).toEqual({ id: k, v: i });
    expect((await c.query().orderBy('id').toArray()).map((r) => r.id)).toEqual([...keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    await expectValidation(c.insert({ id: 2n ** 63n, v: 0 }), 'id');
  });

  it('a string with a lone surrogate is rejected with VALIDATION rather than stored altered', async () => {
    const db = await openDb(mode);
    const Texts = model('texts', { id: t.int(), s: t.string() }, { primaryKey: 'id' });
    const c = await db.register(Texts);
    await expectValidation(c.insert({ id: 1, s: 'a\uD800b' }), 's');
    await expectValidation(c.insert({ id: 2, s: '\uDC00' }), 's');
    await c.insert({ id: 3, s: 'ok \uD83D\uDE00' });
    expect((await c.get(3))!.s).toBe('ok \uD83D\uDE00');
    expect(await c.count()).toBe(1);
  });
});
