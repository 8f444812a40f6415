// Model-based: random sequences of inserts, puts, updates, deletes, invalid writes,
// transactions that commit or roll back, and reopens, checked after every step against a
// plain Map (get, count, a full query sorted by id, and a secondary-index query).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ModelVaultError, model, t, type Database, type Infer } from '../../src/index.js';
import { MODES, byId, openDb, reopenDb, type Mode } from '../helpers/db.js';

const Items = model('items', {
  id: t.int(),
  group: t.int(),
  note: t.string().optional(),
  payload: t.string(),
  score: t.float(),
}, { primaryKey: 'id', indexes: [{ name: 'byGroup', fields: ['group'] }, { name: 'byNote', fields: ['note'], unique: true }] });
type Item = Infer<typeof Items>;
type Patch = { group?: number; note?: string | undefined; payload?: string };

type Write =
  | { kind: 'insert'; row: Item }
  | { kind: 'put'; row: Item }
  | { kind: 'update'; id: number; patch: Patch }
  | { kind: 'delete'; id: number };
type Op =
  | Write
  | { kind: 'invalid'; id: number }
  | { kind: 'transaction'; writes: Write[]; commit: boolean }
  | { kind: 'reopen' };

const idArb = fc.integer({ min: 0, max: 24 });
const noteArb = fc.option(fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'), { nil: undefined });
const rowArb: fc.Arbitrary<Item> = fc.record({
  id: idArb,
  group: fc.integer({ min: 0, max: 3 }),
  note: noteArb,
  payload: fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('', 'x'.repeat(3000), '日本🙂')),
  score: fc.oneof(fc.double(), fc.constant(-0)),
}).map(({ note, ...r }) => (note === undefined ? r : { ...r, note }));
const patchArb: fc.Arbitrary<Patch> = fc.record({
  group: fc.integer({ min: 0, max: 3 }),
  note: noteArb,
  payload: fc.string({ maxLength: 4 }),
}, { requiredKeys: [] });
const writeArb: fc.Arbitrary<Write> = fc.oneof(
  { weight: 4, arbitrary: rowArb.map((row) => ({ kind: 'insert' as const, row })) },
  { weight: 2, arbitrary: rowArb.map((row) => ({ kind: 'put' as const, row })) },
  { weight: 3, arbitrary: fc.record({ id: idArb, patch: patchArb }).map((x) => ({ kind: 'update' as const, ...x })) },
  { weight: 2, arbitrary: idArb.map((id) => ({ kind: 'delete' as const, id })) },
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 10, arbitrary: writeArb },
  { weight: 1, arbitrary: idArb.map((id) => ({ kind: 'invalid' as const, id })) },
  { weight: 2, arbitrary: fc.record({ writes: fc.array(writeArb, { maxLength: 8 }), commit: fc.boolean() }).map((x) => ({ kind: 'transaction' as const, ...x })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
);

/** What the reference says a write does: the new map, or the error code it must fail with. */
function apply(ref: Map<number, Item>, w: Write): { ok: true; result: unknown } | { ok: false; code: 'DUPLICATE_KEY' } {
  const noteTaken = (note: string | undefined, self: number) =>
    note !== undefined && [...ref.values()].some((r) => r.id !== self && r.note === note);
  switch (w.kind) {
    case 'insert':
      if (ref.has(w.row.id) || noteTaken(w.row.note, w.row.id)) return { ok: false, code: 'DUPLICATE_KEY' };
      ref.set(w.row.id, w.row);
      return { ok: true, result: undefined };
    case 'put':
      if (noteTaken(w.row.note, w.row.id)) return { ok: false, code: 'DUPLICATE_KEY' };
      ref.set(w.row.id, w.row);
      return { ok: true, result: undefined };
    case 'update': {
      const old = ref.get(w.id);
      if (!old) return { ok: true, result: false };
      const next: Item = { ...old, ...w.patch };
      if ('note' in w.patch && w.patch.note === undefined) delete next.note;
      if (noteTaken(next.note, w.id)) return { ok: false, code: 'DUPLICATE_KEY' };
      ref.set(w.id, next);
      return { ok: true, result: true };
    }
    case 'delete':
      return { ok: true, result: ref.delete(w.id) };
  }
}

type Handle = { insert(r: Item): Promise<void>; put(r: Item): Promise<void>; update(id: number, p: Patch): Promise<boolean>; delete(id: number): Promise<boolean> };

async function run(c: Handle, w: Write): Promise<unknown> {
  switch (w.kind) {
    case 'insert': return c.insert(w.row);
    case 'put': return c.put(w.row);
    case 'update': return c.update(w.id, w.patch);
    case 'delete': return c.delete(w.id);
  }
}

/** Runs one write against the database and the reference; they must agree. */
async function step(c: Handle, ref: Map<number, Item>, w: Write): Promise<void> {
  const want = apply(ref, w);
  const got = await run(c, w).then((result) => ({ ok: true as const, result }), (err: unknown) => ({ ok: false as const, err }));
  if (want.ok) {
    if (!got.ok) throw got.err;
    expect(got.result, JSON.stringify(w)).toEqual(want.result);
  } else {
    expect(got.ok, `${JSON.stringify(w)} should fail with ${want.code}`).toBe(false);
    const err = (got as { err: unknown }).err;
    expect(err).toBeInstanceOf(ModelVaultError);
    expect((err as ModelVaultError).code).toBe(want.code);
  }
}

const sorted = (rows: Iterable<Item>) => [...rows].sort(byId);

async function compare(db: Database, ref: Map<number, Item>): Promise<void> {
  const c = await db.register(Items);
  expect(await c.count()).toBe(ref.size);
  expect(sorted(await c.query().toArray())).toEqual(sorted(ref.values()));
  for (let id = 0; id <= 24; id += 5) expect(await c.get(id)).toEqual(ref.get(id));
  for (let g = 0; g <= 3; g++) {
    expect(sorted(await c.query().where('group', '=', g).toArray())).toEqual(sorted([...ref.values()].filter((r) => r.group === g)));
  }
  for (const note of ['a', 'd']) {
    expect(sorted(await c.query().where('note', '=', note).toArray())).toEqual(sorted([...ref.values()].filter((r) => r.note === note)));
  }
}

async function runSequence(mode: Mode, ops: Op[]): Promise<void> {
  let db = await openDb(mode);
  let c = await db.register(Items);
  let ref = new Map<number, Item>();
  try {
    for (const op of ops) {
      switch (op.kind) {
        case 'invalid': {
          const err = await c.insert({ id: op.id, group: 1.5, payload: '', score: 0 }).catch((e: unknown) => e);
          expect((err as ModelVaultError).code).toBe('VALIDATION');
          break;
        }
        case 'transaction': {
          const copy = new Map(ref);
          const rollback = new Error('rollback');
          const out = await db.transaction(async (tx) => {
            const tc = tx.collection(Items);
            for (const w of op.writes) await step(tc, copy, w);
            expect(await tc.count()).toBe(copy.size);
            expect(sorted(await tc.query().toArray())).toEqual(sorted(copy.values()));
            if (!op.commit) throw rollback;
            return 'committed';
          }).catch((e: unknown) => e);
          if (op.commit) {
            expect(out).toBe('committed');
            ref = copy;
          } else {
            expect(out).toBe(rollback);
          }
          break;
        }
        case 'reopen':
          db = await reopenDb(db);
          c = await db.register(Items);
          break;
        default:
          await step(c, ref, op);
      }
      await compare(db, ref);
    }
  } finally {
    await db.close().catch(() => undefined);
  }
}

describe.each(MODES)('random write sequences match a Map (%s)', (mode) => {
  it('after every step: get, count, full query and index queries agree', async () => {
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => runSequence(mode, ops)), {
      numRuns: mode === 'memory' ? 100 : 60,
    });
  });
});
