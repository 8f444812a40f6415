// The B+trees, the catalog and commit/rollback against a plain reference model: random
// transactions of puts (upsert/insert/update), deletes, point reads, bounded range scans in
// both directions, bulk loads (put, or appended to the rightmost leaf), range deletes,
// metadata and tree drops, committed or rolled back, with close + reopen (file) or an image
// round trip (memory) in between.
import fc from 'fast-check';
import { toBufferKey } from 'ordered-binary';
import { describe, expect, it } from 'vitest';
import type { KeyBounds } from '../../storage/btree.js';
import { packRow } from '../../storage/btree-node.js';
import type { EngineOptions, EngineTxn, StorageEngine, TreeReader } from '../../storage/engine.js';
import {
  MODES, describeCell, describeEntry, expectCode, expectVerifyOk, openEngine, readEntries, reopenEngine, seededBytes,
  type Cells, type Mode,
} from '../helpers/storage.js';

const PAGE_SIZE = 16384;
const MAX_KEY_BYTES = PAGE_SIZE / 16;
const TREES = { t0: 2, t1: 1 } as const; // name → columns
type TreeName = keyof typeof TREES;
const TREE_NAMES = Object.keys(TREES) as TreeName[];
const META_ONLY = 'm'; // a catalog name that only ever holds metadata
type CatalogName = TreeName | typeof META_ONLY;

// ── the reference model ───────────────────────────────────────────────────────

interface Row { readonly key: Buffer; readonly cells: Cells }
interface NameState {
  /** The catalog holds an entry for the name (a tree was opened or metadata set). */
  entry: boolean;
  /** The entry records a tree (possibly empty). */
  hasTree: boolean;
  meta: Uint8Array | null;
  rows: Map<string, Row>;
}
type Model = Record<CatalogName, NameState>;

const emptyModel = (): Model => ({
  t0: { entry: false, hasTree: false, meta: null, rows: new Map() },
  t1: { entry: false, hasTree: false, meta: null, rows: new Map() },
  m: { entry: false, hasTree: false, meta: null, rows: new Map() },
});
const cloneModel = (m: Model): Model => {
  const out = emptyModel();
  for (const name of Object.keys(m) as CatalogName[]) out[name] = { ...m[name], rows: new Map(m[name].rows) };
  return out;
};

const hexOf = (key: Uint8Array) => Buffer.from(key).toString('hex');

const inBounds = (key: Buffer, bounds: KeyBounds) =>
  (!bounds.gte || Buffer.compare(key, bounds.gte) >= 0) &&
  (!bounds.gt || Buffer.compare(key, bounds.gt) > 0) &&
  (!bounds.lte || Buffer.compare(key, bounds.lte) <= 0) &&
  (!bounds.lt || Buffer.compare(key, bounds.lt) < 0);

/** The rows of `state` within `bounds`, in scan order. */
function modelRows(state: NameState, bounds: KeyBounds): Row[] {
  const inside = [...state.rows.values()].filter((r) => inBounds(r.key, bounds)).sort((a, b) => Buffer.compare(a.key, b.key));
  return bounds.reverse ? inside.reverse() : inside;
}
const modelRange = (state: NameState, bounds: KeyBounds) => modelRows(state, bounds).map((r) => describeEntry(r.key, r.cells));

// ── generated operations ──────────────────────────────────────────────────────

type ValueSpec = null | { readonly len: number; readonly seed: number };
type BoundsSpec = {
  readonly lower: { readonly key: Uint8Array; readonly inclusive: boolean } | null;
  readonly upper: { readonly key: Uint8Array; readonly inclusive: boolean } | null;
  readonly reverse: boolean;
};
type Op =
  | { readonly t: 'put'; readonly tree: TreeName; readonly key: Uint8Array; readonly cells: readonly ValueSpec[]; readonly mode: 'upsert' | 'insert' | 'update' }
  | { readonly t: 'delete'; readonly tree: TreeName; readonly key: Uint8Array }
  | { readonly t: 'get'; readonly tree: TreeName; readonly key: Uint8Array }
  | { readonly t: 'range'; readonly tree: TreeName; readonly bounds: BoundsSpec }
  | { readonly t: 'bulk'; readonly tree: TreeName; readonly pad: number; readonly from: number; readonly count: number; readonly step: number; readonly valueLen: number; readonly seed: number; readonly append: boolean }
  | { readonly t: 'deleteRange'; readonly tree: TreeName; readonly bounds: BoundsSpec }
  | { readonly t: 'meta'; readonly name: CatalogName; readonly value: ValueSpec }
  | { readonly t: 'drop'; readonly name: CatalogName }
  | { readonly t: 'flush' }
  | { readonly t: 'tooLongKey'; readonly tree: TreeName };
interface TxnSpec {
  readonly ops: readonly Op[];
  readonly end: 'commit' | 'rollback';
  readonly reopen: boolean;
  readonly probe: { readonly tree: TreeName; readonly bounds: BoundsSpec };
}

/** Keys of families that sort apart, the long ones close to the key-size limit. */
const padKey = (pad: number, n: number) => Buffer.concat([Buffer.alloc(pad, 0x62), toBufferKey(n)]);
const keyArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ minLength: 0, maxLength: 3, max: 3 }) },
  { weight: 3, arbitrary: fc.integer({ min: -20, max: 400 }).map((n) => toBufferKey(n)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 4 }).map((s) => toBufferKey(s)) },
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom(0, 300, 1000), fc.integer({ min: 0, max: 500 })).map(([pad, n]) => padKey(pad, n)) },
);
const valueArb: fc.Arbitrary<ValueSpec> = fc.oneof(
  { weight: 2, arbitrary: fc.constant(null) },
  { weight: 2, arbitrary: fc.constant({ len: 0, seed: 0 }) },
  { weight: 4, arbitrary: fc.record({ len: fc.constant(8), seed: fc.nat() }) },
  { weight: 4, arbitrary: fc.record({ len: fc.integer({ min: 1, max: 60 }), seed: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ len: fc.integer({ min: 200, max: 3500 }), seed: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ len: fc.integer({ min: 4000, max: 40_000 }), seed: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ len: fc.integer({ min: 100_000, max: 110_000 }), seed: fc.nat() }) },
);
const boundArb = fc.option(fc.record({ key: keyArb, inclusive: fc.boolean() }), { freq: 3 });
const boundsArb: fc.Arbitrary<BoundsSpec> = fc.record({ lower: boundArb, upper: boundArb, reverse: fc.boolean() });
const treeArb = fc.constantFrom(...TREE_NAMES);
const cellsFor = (tree: TreeName) => fc.array(valueArb, { minLength: TREES[tree], maxLength: TREES[tree] });

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 10, arbitrary: treeArb.chain((tree) => fc.record({ t: fc.constant('put' as const), tree: fc.constant(tree), key: keyArb, cells: cellsFor(tree), mode: fc.constantFrom('upsert' as const, 'insert' as const, 'update' as const) })) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('delete' as const), tree: treeArb, key: keyArb }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('get' as const), tree: treeArb, key: keyArb }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('range' as const), tree: treeArb, bounds: boundsArb }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('bulk' as const), tree: treeArb, pad: fc.constantFrom(0, 300, 1000, 1000), from: fc.integer({ min: 0, max: 300 }),
      count: fc.integer({ min: 1, max: 500 }), step: fc.integer({ min: 1, max: 3 }), valueLen: fc.integer({ min: 0, max: 120 }), seed: fc.nat(),
      append: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('deleteRange' as const), tree: treeArb, bounds: boundsArb }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('meta' as const), name: fc.constantFrom<CatalogName>('t0', 't1', META_ONLY), value: valueArb }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('drop' as const), name: fc.constantFrom<CatalogName>('t0', 't1', META_ONLY) }) },
  { weight: 2, arbitrary: fc.constant({ t: 'flush' as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('tooLongKey' as const), tree: treeArb }) },
);
const txnArb: fc.Arbitrary<TxnSpec> = fc.record({
  ops: fc.array(opArb, { minLength: 1, maxLength: 14 }),
  end: fc.constantFrom('commit' as const, 'commit' as const, 'commit' as const, 'rollback' as const),
  reopen: fc.boolean(),
  probe: fc.record({ tree: treeArb, bounds: boundsArb }),
});
const runArb: fc.Arbitrary<RunSpec> = fc.record({
  txns: fc.array(txnArb, { minLength: 1, maxLength: 8 }),
  /** Small budgets make transactions write pages out early (and roll back written pages). */
  maxDirtyBytes: fc.constantFrom<number | undefined>(undefined, 4 * PAGE_SIZE),
  /** The smallest buffer pool (1 MiB) makes reads go to the store. */
  cacheSize: fc.constantFrom<number | undefined>(undefined, 0),
});

const bytesOf = (v: ValueSpec): Uint8Array | null => (v === null ? null : seededBytes(v.seed, v.len));
const toBounds = (b: BoundsSpec): KeyBounds => ({
  ...(b.lower ? { [b.lower.inclusive ? 'gte' : 'gt']: b.lower.key } : {}),
  ...(b.upper ? { [b.upper.inclusive ? 'lte' : 'lt']: b.upper.key } : {}),
  reverse: b.reverse,
});

// ── running a transaction against both ───────────────────────────────────────

class Rollback extends Error {}

/** Keys of `slices` in iteration order: must be the keys `entries` yields. */
async function sliceKeys(reader: TreeReader, tree: string, bounds: KeyBounds): Promise<string[]> {
  const out: string[] = [];
  for await (const { leaf, start, end } of reader.slices(tree, bounds)) {
    for (let k = 0; k < end - start; k++) out.push(hexOf(leaf.key(bounds.reverse ? end - 1 - k : start + k)));
  }
  return out;
}

async function expectRange(reader: TreeReader, state: NameState, tree: TreeName, bounds: KeyBounds): Promise<void> {
  const rows = modelRows(state, bounds);
  expect(await readEntries(reader, tree, bounds)).toEqual(rows.map((r) => describeEntry(r.key, r.cells)));
  expect(await sliceKeys(reader, tree, bounds)).toEqual(rows.map((r) => hexOf(r.key)));
}

async function applyOp(tx: EngineTxn, op: Op, model: Model, committedView: { reader: TreeReader; model: Model }): Promise<void> {
  switch (op.t) {
    case 'put': {
      const state = model[op.tree];
      const w = await tx.tree(op.tree, TREES[op.tree]);
      state.entry = state.hasTree = true;
      const cells = op.cells.map(bytesOf);
      const found = state.rows.has(hexOf(op.key));
      const expected = op.mode === 'upsert' ? (found ? 'replaced' : 'inserted')
        : op.mode === 'insert' ? (found ? 'exists' : 'inserted')
          : (found ? 'replaced' : 'missing');
      expect(await w.put(op.key, cells, op.mode)).toBe(expected);
      if (expected === 'inserted' || expected === 'replaced') state.rows.set(hexOf(op.key), { key: Buffer.from(op.key), cells });
      return;
    }
    case 'delete': {
      const state = model[op.tree];
      const w = await tx.tree(op.tree, TREES[op.tree]);
      state.entry = state.hasTree = true;
      expect(await w.delete(op.key)).toBe(state.rows.has(hexOf(op.key)));
      state.rows.delete(hexOf(op.key));
      return;
    }
    case 'get': {
      const row = model[op.tree].rows.get(hexOf(op.key));
      const got = await tx.get(op.tree, op.key);
      expect(got?.map(describeCell)).toEqual(row?.cells.map(describeCell));
      // The snapshot pinned before the transaction still answers from its own state.
      const old = committedView.model[op.tree].rows.get(hexOf(op.key));
      expect((await committedView.reader.get(op.tree, op.key))?.map(describeCell)).toEqual(old?.cells.map(describeCell));
      return;
    }
    case 'range':
      await expectRange(tx, model[op.tree], op.tree, toBounds(op.bounds));
      await expectRange(committedView.reader, committedView.model[op.tree], op.tree, toBounds(op.bounds));
      return;
    case 'bulk': {
      const state = model[op.tree];
      const w = await tx.tree(op.tree, TREES[op.tree]);
      state.entry = state.hasTree = true;
      for (let i = 0; i < op.count; i++) {
        const n = op.from + i * op.step;
        const key = padKey(op.pad, n);
        const value = seededBytes(op.seed + n, op.valueLen);
        const cells: Cells = TREES[op.tree] === 2 ? [value, n % 3 === 0 ? null : seededBytes(n, 8)] : [value];
        // The append fast path takes keys above every key of the tree; the others are put.
        if (!op.append || !w.appendPackedSync(key, packRow(cells as Buffer[]))) await w.put(key, cells, 'upsert');
        state.rows.set(hexOf(key), { key, cells });
        if (i % 32 === 31) await tx.maybeFlush();
      }
      return;
    }
    case 'deleteRange': {
      const state = model[op.tree];
      const w = await tx.tree(op.tree, TREES[op.tree]);
      state.entry = state.hasTree = true;
      const bounds = toBounds(op.bounds);
      for (const { key } of modelRows(state, bounds)) {
        expect(await w.delete(key)).toBe(true);
        state.rows.delete(hexOf(key));
      }
      expect(await readEntries(tx, op.tree, bounds)).toEqual([]);
      return;
    }
    case 'meta': {
      const value = bytesOf(op.value);
      await tx.setMeta(op.name, value);
      model[op.name].entry = true;
      model[op.name].meta = value;
      return;
    }
    case 'drop':
      await tx.dropTree(op.name);
      model[op.name] = { entry: false, hasTree: false, meta: null, rows: new Map() };
      expect(await tx.get(op.name, Buffer.alloc(0))).toBeUndefined();
      return;
    case 'flush':
      await tx.maybeFlush();
      return;
    case 'tooLongKey': {
      const w = await tx.tree(op.tree, TREES[op.tree]);
      model[op.tree].entry = model[op.tree].hasTree = true;
      await expectCode(w.put(Buffer.alloc(MAX_KEY_BYTES + 1, 7), TREES[op.tree] === 2 ? [null, null] : [null]), 'VALIDATION');
      return;
    }
  }
}

/** The committed content seen through a fresh snapshot equals the model. */
async function expectCommitted(engine: StorageEngine, model: Model, reader?: TreeReader): Promise<void> {
  const own = reader ? null : engine.snapshot();
  const r = reader ?? own!;
  try {
    const names = (Object.keys(model) as CatalogName[]).filter((n) => model[n].entry).sort();
    expect(await r.names()).toEqual(names);
    for (const name of Object.keys(model) as CatalogName[]) {
      const meta = await r.getMeta(name);
      expect(meta === undefined ? null : describeCell(meta)).toEqual(model[name].meta === null ? null : describeCell(model[name].meta));
      expect(await readEntries(r, name)).toEqual(modelRange(model[name], {}));
    }
  } finally {
    own?.release();
  }
}

interface RunSpec { readonly txns: readonly TxnSpec[]; readonly maxDirtyBytes: number | undefined; readonly cacheSize: number | undefined }

async function runModel(mode: Mode, run: RunSpec): Promise<void> {
  const opts: EngineOptions = { pageSize: PAGE_SIZE, maxDirtyBytes: run.maxDirtyBytes, cacheSize: run.cacheSize };
  let engine = await openEngine(mode, opts);
  try {
    let committed = emptyModel();
    for (const spec of run.txns) {
      const before = committed;
      const pinned = engine.snapshot();
      const working = cloneModel(committed);
      try {
        await engine.write(async (tx) => {
          for (const op of spec.ops) await applyOp(tx, op, working, { reader: pinned, model: before });
          if (spec.end === 'rollback') throw new Rollback();
        });
        expect(spec.end).toBe('commit');
        committed = working;
      } catch (err) {
        if (!(err instanceof Rollback)) throw err;
      }
      // The snapshot pinned before the transaction is unaffected by its commit; a new one sees it.
      await expectCommitted(engine, before, pinned);
      pinned.release();
      await expectCommitted(engine, committed);
      using probe = engine.snapshot();
      await expectRange(probe, committed[spec.probe.tree], spec.probe.tree, toBounds(spec.probe.bounds));
      if (spec.reopen) {
        probe.release();
        engine = await reopenEngine(engine);
        await expectCommitted(engine, committed);
        await expectVerifyOk(engine);
      }
    }
    const report = await expectVerifyOk(engine);
    expect(report.trees).toBe(TREE_NAMES.filter((n) => committed[n].hasTree).length);
    expect(report.entries).toBe(TREE_NAMES.reduce((n, t) => n + committed[t].rows.size, 0));
  } finally {
    await engine.close();
  }
}

describe.each(MODES)('B+trees match a reference model (%s)', (mode) => {
  it('random transactions of puts, deletes, reads and range scans, committed, rolled back and reopened', { timeout: 180_000 }, async () => {
    await fc.assert(fc.asyncProperty(runArb, (run) => runModel(mode, run)), {
      numRuns: mode === 'file' ? 25 : 40,
      skipAllAfterTimeLimit: 60_000, // a passing run takes seconds; this bounds shrinking after a failure
    });
  });

  it('a tree several levels deep keeps its order through bulk loads and range deletes', async () => {
    // Keys near the 1 KiB limit give 16 KiB pages a fan-out of about 15, so 3,000 keys make a
    // three-level tree; deleting the first leaves of branches and refilling the gap below them
    // exercises the separators that bound a branch's first child.
    let engine = await openEngine(mode, { pageSize: PAGE_SIZE });
    const model = emptyModel();
    model.t1.entry = model.t1.hasTree = true;
    const put = async (tx: EngineTxn, ns: number[]) => {
      const w = await tx.tree('t1', 1);
      for (const n of ns) {
        const key = padKey(1000, n);
        await w.put(key, [seededBytes(n, 24)], 'upsert');
        model.t1.rows.set(hexOf(key), { key, cells: [seededBytes(n, 24)] });
      }
    };
    const del = async (tx: EngineTxn, ns: number[]) => {
      const w = await tx.tree('t1', 1);
      for (const n of ns) {
        const key = padKey(1000, n);
        expect(await w.delete(key)).toBe(model.t1.rows.delete(hexOf(key)));
      }
    };
    const range = (from: number, to: number, step = 1) => Array.from({ length: Math.ceil((to - from) / step) }, (_, i) => from + i * step);
    await engine.write((tx) => put(tx, range(0, 6000, 2)));
    {
      using snap = engine.snapshot();
      const info = await snap.treeInfo('t1');
      const root = snap.nodeSource.node(info!.root);
      expect(root.isLeaf ? 0 : root.level).toBeGreaterThanOrEqual(2);
    }
    for (let round = 0; round < 6; round++) {
      const lo = 400 + round * 900;
      await engine.write((tx) => del(tx, range(lo, lo + 300, 2)));          // empties whole leaves
      await engine.write((tx) => put(tx, range(lo + 1, lo + 300, 2)));      // refills the gap with new keys
      await engine.write((tx) => del(tx, range(lo + 300, lo + 800, 1)));    // shrinks and merges branches
      await expectCommitted(engine, model);
      await expectVerifyOk(engine);
    }
    for (const n of range(0, 6000, 7)) {
      using snap = engine.snapshot();
      const row = model.t1.rows.get(hexOf(padKey(1000, n)));
      expect((await snap.get('t1', padKey(1000, n)))?.map(describeCell)).toEqual(row?.cells.map(describeCell));
    }
    engine = await reopenEngine(engine);
    await expectCommitted(engine, model);
    await expectVerifyOk(engine);
  });

  it('a transaction whose commit fails is rolled back and the next one runs', async () => {
    const engine = await openEngine(mode, { pageSize: PAGE_SIZE });
    await engine.write(async (tx) => { await (await tx.tree('t1', 1)).put(u8('kept'), [u8('v')]); });
    // A tree name longer than a key may be is only refused when the catalog is written, at commit.
    await expectCode(engine.write(async (tx) => {
      await (await tx.tree('x'.repeat(MAX_KEY_BYTES + 1), 1)).put(u8('lost'), [u8('v')]);
      await (await tx.tree('t1', 1)).put(u8('lost'), [u8('v')]);
    }), 'VALIDATION');
    await engine.write(async (tx) => { await (await tx.tree('t1', 1)).put(u8('next'), [u8('v')]); });
    {
      using snap = engine.snapshot();
      expect(await snap.names()).toEqual(['t1']);
      expect(await readEntries(snap, 't1')).toEqual([describeEntry(u8('kept'), [u8('v')]), describeEntry(u8('next'), [u8('v')])]);
    }
    await expectVerifyOk(engine); // the failed transaction's pages went back to free space
  });
});

const u8 = (s: string) => Buffer.from(s, 'utf8');
