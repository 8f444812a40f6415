// Row types are inferred from models (checked by `tsc`: expectTypeOf is a compile-time
// assertion), select() and join() narrow/extend the row type, and model() refuses bad
// definitions at run time with VALIDATION.
import { describe, expect, expectTypeOf, it } from 'vitest';
import { Database, ModelVaultError, model, t, type Infer, type InferInput, type Query } from '../../src/index.js';
import { expectValidation } from '../helpers/db.js';

const Orders = model('orders', {
  id: t.int(),
  userId: t.int(),
  amount: t.float(),
  note: t.string().optional(),
  status: t.enum(['new', 'paid', 'shipped']).default('new'),
  big: t.bigint(),
  blob: t.bytes(),
  ts: t.timestamp(),
  ok: t.bool(),
  ref: t.uuid(),
  tags: t.list(t.string()),
  matrix: t.list(t.list(t.int())),
  meta: t.object({ source: t.string(), score: t.float().optional() }).optional(),
  extra: t.json<{ any: number }>(),
}, { primaryKey: 'id', indexes: [{ name: 'byUser', fields: ['userId'] }] });

const Customers = model('customers', { id: t.int(), name: t.string(), country: t.string().optional() }, { primaryKey: 'id' });

type Order = Infer<typeof Orders>;
type Customer = Infer<typeof Customers>;

describe('Infer<typeof Model>', () => {
  it('maps every field type to its TypeScript value type', () => {
    expectTypeOf<Order>().toEqualTypeOf<{
      id: number;
      userId: number;
      amount: number;
      status: 'new' | 'paid' | 'shipped';
      big: bigint;
      blob: Uint8Array;
      ts: Date;
      ok: boolean;
      ref: string;
      tags: string[];
      matrix: number[][];
      extra: { any: number };
      note?: string | undefined;
      meta?: { source: string; score?: number | undefined } | undefined;
    }>();
  });

  it('required fields are required, optional ones may be absent, defaulted ones are present in rows', () => {
    expectTypeOf<Order['id']>().toEqualTypeOf<number>();
    expectTypeOf<Order>().toHaveProperty('note');
    expectTypeOf<Pick<Order, 'note'>>().toEqualTypeOf<{ note?: string | undefined }>();
    // a defaulted field is always present when read back…
    expectTypeOf<Pick<Order, 'status'>>().toEqualTypeOf<{ status: 'new' | 'paid' | 'shipped' }>();
    // …but may be left out when written
    expectTypeOf<Pick<InferInput<typeof Orders>, 'status'>>().toEqualTypeOf<{ status?: 'new' | 'paid' | 'shipped' | undefined }>();
    expectTypeOf<Pick<InferInput<typeof Orders>, 'id'>>().toEqualTypeOf<{ id: number }>();
    // a nested object with an optional member
    expectTypeOf<NonNullable<Order['meta']>>().toEqualTypeOf<{ source: string; score?: number | undefined }>();
    // enums are literal unions, not string
    expectTypeOf<Order['status']>().not.toEqualTypeOf<string>();
    // bigint, bytes and timestamps
    expectTypeOf<Order['big']>().toEqualTypeOf<bigint>();
    expectTypeOf<Order['blob']>().toEqualTypeOf<Uint8Array>();
    expectTypeOf<Order['ts']>().toEqualTypeOf<Date>();
  });

  it('collection methods use the inferred types', async () => {
    const db = await Database.openInMemory();
    try {
      const orders = await db.register(Orders);
      expectTypeOf(orders.get).returns.resolves.toEqualTypeOf<Order | undefined>();
      expectTypeOf(orders.insert).parameter(0).toEqualTypeOf<InferInput<typeof Orders>>();
      expectTypeOf(orders.query().toArray).returns.resolves.toEqualTypeOf<Order[]>();
      // @ts-expect-error: a string is not an int
      const bad: Parameters<typeof orders.insert>[0] = { id: 'x' };
      expect(bad).toBeDefined();
    } finally {
      await db.close();
    }
  });
});

describe('query result types', () => {
  it('select() narrows the row type to the picked fields', async () => {
    const db = await Database.openInMemory();
    try {
      const orders = await db.register(Orders);
      const q = orders.query().select('id', 'amount');
      expectTypeOf(q).toEqualTypeOf<Query<Pick<Order, 'id' | 'amount'>>>();
      expectTypeOf<Awaited<ReturnType<typeof q.toArray>>[number]>().toEqualTypeOf<{ id: number; amount: number }>();
      // @ts-expect-error: not a field of orders
      expect(() => orders.query().select('nope')).toBeDefined();

      await orders.insert({
        id: 1, userId: 2, amount: 3.5, big: 1n, blob: new Uint8Array(), ts: new Date(0), ok: true,
        ref: '00000000-0000-0000-0000-000000000000', tags: [], matrix: [], extra: { any: 1 },
      });
      // the run-time result has exactly the selected fields
      expect(await q.toArray()).toEqual([{ id: 1, amount: 3.5 }]);
    } finally {
      await db.close();
    }
  });

  it('join() adds the joined row under `as`; a left join makes it nullable', async () => {
    const db = await Database.openInMemory();
    try {
      const orders = await db.register(Orders);
      await db.register(Customers);
      const left = orders.query().join(Customers, 'userId', 'id', { as: 'customer', type: 'left' });
      type LeftRow = Awaited<ReturnType<typeof left.toArray>>[number];
      expectTypeOf<LeftRow['customer']>().toEqualTypeOf<Customer | null>();
      expectTypeOf<LeftRow['amount']>().toEqualTypeOf<number>();

      const inner = orders.query().join(Customers, 'userId', 'id', { as: 'customer', type: 'inner' });
      type InnerRow = Awaited<ReturnType<typeof inner.toArray>>[number];
      expectTypeOf<InnerRow['customer']>().toEqualTypeOf<Customer>();

      const dflt = orders.query().join(Customers, 'userId', 'id', { as: 'c' });
      expectTypeOf<Awaited<ReturnType<typeof dflt.toArray>>[number]['c']>().toEqualTypeOf<Customer>();

      await orders.insert({
        id: 1, userId: 99, amount: 3.5, big: 1n, blob: new Uint8Array(), ts: new Date(0), ok: true,
        ref: '00000000-0000-0000-0000-000000000000', tags: [], matrix: [], extra: { any: 1 },
      });
      const rows = await left.toArray();
      expect(rows).toHaveLength(1);
      expect(rows[0].customer).toBeNull();
      expect(await inner.toArray()).toEqual([]);
    } finally {
      await db.close();
    }
  });
});

describe('model() refuses bad definitions with VALIDATION', () => {
  const ok = { id: t.int(), name: t.string(), tags: t.list(t.string()), note: t.string().optional() };

  it('accepts a good definition and exposes its key and indexes', () => {
    const m = model('good', ok, { primaryKey: 'id', indexes: [{ name: 'byName', fields: ['name'], unique: true }] });
    expect(m.primaryKey).toEqual(['id']);
    expect(m.indexes).toEqual([{ name: 'byName', fields: ['name'], unique: true }]);
  });

  it('an unknown primary key field', async () => {
    const err = await expectValidation(() => model('m', ok, { primaryKey: 'nope' as 'id' }), 'primaryKey');
    expect(err.message).toContain('nope');
  });

  it('an optional primary key field', async () => {
    await expectValidation(() => model('m', ok, { primaryKey: 'note' }), 'primaryKey');
    await expectValidation(() => model('m', ok, { primaryKey: ['id', 'note'] }), 'primaryKey');
  });

  it('a primary key field of a non-key type', async () => {
    await expectValidation(() => model('m', ok, { primaryKey: 'tags' }), 'primaryKey');
  });

  it('an empty composite key', async () => {
    await expectValidation(() => model('m', ok, { primaryKey: [] }), 'primaryKey');
  });

  it('a list as an index field', async () => {
    const err = await expectValidation(() => model('m', ok, { primaryKey: 'id', indexes: [{ name: 'byTags', fields: ['tags'] }] }), 'indexes.0.fields');
    expect(err.message).toContain('tags');
  });

  it('an index over an unknown field, or with no fields', async () => {
    await expectValidation(() => model('m', ok, { primaryKey: 'id', indexes: [{ name: 'x', fields: ['zzz' as 'id'] }] }), 'indexes.0.fields');
    await expectValidation(() => model('m', ok, { primaryKey: 'id', indexes: [{ name: 'x', fields: [] }] }), 'indexes.0.fields');
  });

  it('duplicate index names', async () => {
    const err = await expectValidation(() => model('m', ok, {
      primaryKey: 'id',
      indexes: [{ name: 'byName', fields: ['name'] }, { name: 'byName', fields: ['note'] }],
    }), 'indexes.1.name');
    expect(err.message).toContain('byName');
  });

  it('__proto__, constructor and prototype as field names (top level and nested)', async () => {
    const proto = JSON.parse('{"id": 1, "__proto__": 2}') as Record<string, unknown>;
    const shape = Object.fromEntries(Object.keys(proto).map((k) => [k, t.int()]));
    expect(Object.keys(shape)).toContain('__proto__');
    await expectValidation(() => model('m', shape, { primaryKey: 'id' }), '__proto__');
    await expectValidation(() => model('m', { id: t.int(), constructor: t.int() }, { primaryKey: 'id' }), 'constructor');
    await expectValidation(() => model('m', { id: t.int(), prototype: t.int() }, { primaryKey: 'id' }), 'prototype');
    const nested = t.object(Object.fromEntries([['__proto__', t.int()]]));
    await expectValidation(() => model('m', { id: t.int(), meta: nested }, { primaryKey: 'id' }), 'meta.__proto__');
    expect(({} as Record<string, unknown>).id).toBeUndefined();
  });

  it('bad model and field names, and fields that are not t.* types', async () => {
    await expectValidation(() => model('bad name', ok, { primaryKey: 'id' }), 'name');
    await expectValidation(() => model('m', { id: t.int(), 'a-b': t.int() }, { primaryKey: 'id' }), 'a-b');
    await expectValidation(() => model('m', { id: t.int(), x: 42 as never }, { primaryKey: 'id' }), 'x');
  });

  it('errors are ModelVaultError instances with a stable code', () => {
    let caught: unknown;
    try {
      model('m', ok, { primaryKey: 'note' });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(ModelVaultError);
    expect(caught).toBeInstanceOf(Error);
    expect((caught as ModelVaultError).name).toBe('ModelVaultError');
    expect((caught as ModelVaultError).code).toBe('VALIDATION');
  });
});
