// Worker thread of fuzz-decoders.test.ts: runs one fast-check property per decoder and posts
// a result per decoder, so that the parent can terminate it (and fail the decoder that was
// running) should a decoder ever loop: a synchronous hang cannot be timed out in-process.
//
// Every property: for random bytes, and for valid encodings mutated (bits flipped, bytes set,
// cut short, extended, spliced; checksums recomputed where one guards the bytes, so that the
// parsing behind the checksum is reached), the decoder returns a well-formed result or throws
// a ModelVaultError with one of the allowed codes; any other exception fails the property.
import fc from 'fast-check';
import { parentPort, workerData } from 'node:worker_threads';
import { Database, model, t } from '../../src/index.js';
import { decodeMeta, encodeMeta, initialMeta } from '../../src/catalog.js';
import { CollectionLayout } from '../../src/collection-writer.js';
import { RowCodec, columnCodec } from '../../src/row-codec.js';
import { decodeBatch, encodeBatch } from '../../operators/spill-codec.js';
import type { Batch } from '../../operators/batch.js';
import { alignedBuffer } from '../../storage/block-store.js';
import { BranchView, LeafView, decodeNode, type NodeLike } from '../../storage/btree-node.js';
import { checksum } from '../../storage/checksum.js';
import { ModelVaultError, type ErrorCode } from '../../storage/errors.js';
import { PAGE_HEADER_BYTES, PageType, sealPage, verifyPage, type PageInfo } from '../../storage/page.js';
import {
  FORMAT_VERSION, MAX_PAGE_SIZE, MIN_PAGE_SIZE, SUPERBLOCK_BYTES, SUPERBLOCK_OFFSETS, decodeHeader, decodeSuperblock, encodeHeader, encodeSuperblock,
} from '../../storage/superblock.js';

export interface FuzzRequest { numRuns: number; seed: number }
export type FuzzMessage =
  | { type: 'start'; name: string }
  | { type: 'result'; name: string; cases: number; failed: boolean; message: string | null }
  | { type: 'done' };

const PAGE_SIZE = 16384;
const post = (m: FuzzMessage) => parentPort!.postMessage(m);

// ── mutations ──────────────────────────────────────────────────────────────────

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'extend'; bytes: Uint8Array }
  | { kind: 'splice'; at: number; bytes: Uint8Array }
  | { kind: 'u32'; at: number; value: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.constantFrom(0, 1, 0x7f, 0x80, 0xfe, 0xff) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('extend' as const), bytes: fc.uint8Array({ maxLength: 64 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }) },
  // Lengths, counts and offsets are u16/u32 fields: write extreme values over them.
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('u32' as const), at: fc.nat(), value: fc.constantFrom(0, 1, 0xffff, 0x10000, 0x7fffffff, 0xffffffff, 0xfffffffe) }) },
);

function mutate(src: Uint8Array, mutations: readonly Mutation[], limit = src.byteLength): Uint8Array {
  let b = Buffer.from(src);
  for (const m of mutations) {
    const at = b.byteLength === 0 ? 0 : m.kind === 'extend' ? 0 : ('at' in m ? m.at % Math.min(b.byteLength, limit) : 0);
    switch (m.kind) {
      case 'flip': if (b.byteLength) b[at] ^= 1 << m.bit; break;
      case 'set': if (b.byteLength) b[at] = m.value; break;
      case 'truncate': b = b.subarray(0, at); break;
      case 'extend': b = Buffer.concat([b, m.bytes]); break;
      case 'splice': b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]); break;
      case 'u32': if (at + 4 <= b.byteLength) b.writeUInt32LE(m.value >>> 0, at); break;
    }
  }
  return b;
}

/** Valid samples mutated, or random bytes (a third of the cases). */
function bytesFrom(samples: readonly Uint8Array[], opts: { maxRandom?: number; limit?: number } = {}): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: opts.maxRandom ?? 256 }) },
    { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...samples), fc.array(mutationArb, { minLength: 1, maxLength: 6 })).map(([s, ms]) => mutate(s, ms, opts.limit)) },
  );
}

/** A copy starting at an 8-byte-aligned offset, as every page body the engine decodes is. */
function aligned(bytes: Uint8Array): Buffer {
  const b = alignedBuffer(bytes.byteLength);
  b.set(bytes);
  return b;
}

// ── the contract ──────────────────────────────────────────────────────────────

/** Runs `fn`; a ModelVaultError with one of `codes` is fine, any other exception fails the case. */
function expectDecoded<T>(codes: readonly ErrorCode[], fn: () => T, check: (r: T) => void = () => {}): true {
  let result: T;
  try {
    result = fn();
  } catch (err) {
    if (err instanceof ModelVaultError && codes.includes(err.code)) return true;
    throw err;
  }
  check(result);
  return true;
}

function ensure(cond: boolean, what: string): void {
  if (!cond) throw new Error(`decoder returned a malformed result: ${what}`);
}

/**
 * Uses every part of a decoded node, as a tree walk would. Part of decoding: a leaf checks a
 * column's layout when the column is first read, so a damaged column is a CORRUPT error then.
 */
function exercise<N extends NodeLike>(node: N): N {
  if (node.isLeaf) {
    const leaf = node as LeafView;
    for (let i = 0; i < leaf.count; i++) {
      leaf.key(i);
      leaf.compareKey(i, Buffer.from([0x80]));
      for (let c = 0; c < leaf.columns + 1; c++) leaf.cell(i, c);
    }
    for (let c = 0; c < leaf.columns; c++) ensure(leaf.column(c) !== undefined, `column ${c}`);
  } else {
    const branch = node as BranchView;
    for (let i = 0; i < branch.count; i++) {
      branch.key(i);
      branch.compareKey(i, Buffer.from([0x80]));
      ensure(Number.isInteger(branch.child(i)), 'child page number');
    }
  }
  return node;
}

// ── valid samples ─────────────────────────────────────────────────────────────

const Everything = model('everything', {
  id: t.int(),
  big: t.bigint(),
  f: t.float(),
  s: t.string(),
  b: t.bool(),
  ts: t.timestamp(),
  u: t.uuid(),
  bytes: t.bytes(),
  j: t.json(),
  list: t.list(t.object({ x: t.int(), y: t.string().optional() })),
  obj: t.object({ a: t.float(), nested: t.object({ z: t.list(t.int()) }), d: t.string().default('dflt') }).optional(),
  e: t.enum(['red', 'green']),
  opt: t.string().optional(),
}, { primaryKey: 'id', indexes: [{ name: 'byS', fields: ['s'] }, { name: 'byTs', fields: ['ts', 'e'] }] });

function everythingRow(i: number) {
  return {
    id: i,
    big: BigInt(i) * 1_000_000_007n - 5n,
    f: i % 7 === 0 ? -0 : i / 3,
    s: `row ${i} ${'é'.repeat(i % 5)}`,
    b: i % 2 === 0,
    ts: new Date(Date.UTC(2024, 0, 1) + i * 1000),
    u: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    bytes: Uint8Array.from({ length: i % 9 }, (_, k) => k * i),
    j: { k: i, arr: [1, 'two', null, { deep: [i] }] },
    list: [{ x: i }, { x: -i, y: 'why' }],
    ...(i % 3 ? { obj: { a: 1.5, nested: { z: [i, i + 1] }, d: 'given' } } : {}),
    e: i % 2 ? 'red' as const : 'green' as const,
    ...(i % 4 ? { opt: 'present' } : {}),
  };
}

interface Samples {
  header: Uint8Array;
  superblocks: Uint8Array[];
  pages: { page: Uint8Array; info: PageInfo }[];
  nodeBodies: { body: Uint8Array; info: PageInfo }[];
  metas: Uint8Array[];
  cells: Uint8Array[][];
  batches: Uint8Array[];
}

async function buildSamples(): Promise<Samples> {
  const db = await Database.openInMemory({ pageSize: PAGE_SIZE });
  const coll = await db.register(Everything);
  await coll.insertMany(Array.from({ length: 600 }, (_, i) => everythingRow(i)));
  await coll.insert({ ...everythingRow(10_000), j: 'x'.repeat(20_000) }); // an overflow value
  for (let i = 0; i < 600; i += 5) await coll.delete(i); // free pages, hence a free list
  const image = await db.snapshotBytes();
  const meta = await db.collections();
  await db.close();

  const pages: Samples['pages'] = [];
  const nodeBodies: Samples['nodeBodies'] = [];
  const seenTypes = new Map<number, number>();
  for (let p = 1; p * PAGE_SIZE < image.byteLength; p++) {
    const page = image.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
    let info: PageInfo;
    try { info = verifyPage(page, p, p * PAGE_SIZE); } catch { continue; } // free pages hold anything
    const n = seenTypes.get(info.type) ?? 0;
    if (n >= 4) continue;
    seenTypes.set(info.type, n + 1);
    pages.push({ page: Uint8Array.prototype.slice.call(page), info });
    if (info.type === PageType.Leaf || info.type === PageType.Branch) {
      nodeBodies.push({ body: Uint8Array.prototype.slice.call(page, PAGE_HEADER_BYTES, PAGE_HEADER_BYTES + info.bodyLength), info });
    }
  }
  if (!seenTypes.has(PageType.Leaf) || !seenTypes.has(PageType.Branch)) throw new Error('sample image lacks leaf or branch pages');
  const leaves = nodeBodies.filter((n) => n.info.type === PageType.Leaf).map((n) => new LeafView(aligned(n.body), 0));
  const kinds = new Set(leaves.flatMap((leaf) => Array.from({ length: leaf.columns }, (_, c) => leaf.column(c).kind)));
  for (const kind of ['fixed', 'variable', 'dict']) if (!kinds.has(kind as never)) throw new Error(`sample leaves lack a ${kind} column`);

  const codec = new RowCodec(initialMeta(Everything).columns, Everything.fields);
  const cells = [0, 1, 3, 7, 10_000].map((i) => codec.encode(everythingRow(i)).map((c) => (c === null ? new Uint8Array(0) : c)));
  const batch = (n: number): Batch => ({
    length: n,
    vectors: new Map([
      ['a', { kind: 'f64' as const, values: Float64Array.from({ length: n }, (_, i) => i * 1.5), absent: n > 2 ? Uint8Array.from({ length: n }, (_, i) => i % 3 === 0 ? 1 : 0) : null }],
      ['b.c', { kind: 'any' as const, values: Array.from({ length: n }, (_, i) => (i % 4 === 0 ? undefined : { s: `v${i}`, d: new Date(i), n: BigInt(i) })) }],
    ]),
  });
  const sb = (generation: number) => encodeSuperblock({ generation, pageCount: 40, catalogRoot: 3, freeListRoot: 7, freePageCount: 5, committedAtMs: 1.7e12 });
  return {
    header: encodeHeader({ formatVersion: FORMAT_VERSION, pageSize: PAGE_SIZE }),
    superblocks: [sb(1), sb(2 ** 40), image.subarray(SUPERBLOCK_OFFSETS[0], SUPERBLOCK_OFFSETS[0] + SUPERBLOCK_BYTES), image.subarray(SUPERBLOCK_OFFSETS[1], SUPERBLOCK_OFFSETS[1] + SUPERBLOCK_BYTES)],
    pages,
    nodeBodies,
    metas: [encodeMeta(initialMeta(Everything)), ...meta.map(({ rowCount: _, ...m }) => encodeMeta(m))],
    cells,
    batches: [encodeBatch(batch(0)), encodeBatch(batch(1)), encodeBatch(batch(40))],
  };
}

// ── properties ────────────────────────────────────────────────────────────────

const FILE_CODES: readonly ErrorCode[] = ['CORRUPT', 'NOT_A_DATABASE', 'UNSUPPORTED_VERSION'];
const CORRUPT: readonly ErrorCode[] = ['CORRUPT'];

function properties(s: Samples): [string, fc.IPropertyWithHooks<any>][] {
  const withChecksum = (bytes: Uint8Array, bodyEnd: number, at: number) => {
    if (bytes.byteLength < at + 4) return bytes;
    const out = Buffer.from(bytes);
    out.writeUInt32LE(checksum(out.subarray(0, bodyEnd)), at);
    return out;
  };
  const checkHeader = (h: ReturnType<typeof decodeHeader>) => {
    ensure(h.pageSize >= MIN_PAGE_SIZE && h.pageSize <= MAX_PAGE_SIZE && (h.pageSize & (h.pageSize - 1)) === 0, `page size ${h.pageSize}`);
  };
  const checkSuperblock = (sb: ReturnType<typeof decodeSuperblock>) => {
    if (sb === null) return;
    ensure(Number.isSafeInteger(sb.generation) && sb.pageCount >= 1 && sb.catalogRoot < sb.pageCount && sb.freeListRoot < sb.pageCount, JSON.stringify(sb));
  };
  const pageArb = fc.oneof(
    { weight: 1, arbitrary: fc.uint8Array({ minLength: PAGE_SIZE, maxLength: PAGE_SIZE }).map((b) => ({ page: b, pageNo: 1 })) },
    {
      weight: 3,
      arbitrary: fc.tuple(fc.constantFrom(...s.pages), fc.array(mutationArb, { minLength: 1, maxLength: 6 }), fc.boolean()).map(([{ page, info }, ms, reseal]) => {
        // Mutate within the page (its length is fixed: reads are always whole pages).
        const m = Buffer.alloc(page.byteLength);
        m.set(mutate(page, ms).subarray(0, page.byteLength));
        if (reseal) {
          const view = new DataView(m.buffer, m.byteOffset);
          const bodyLength = Math.min(view.getUint32(12, true), page.byteLength - PAGE_HEADER_BYTES);
          sealPage(m, view.getUint8(4) as PageType, info.pageNo, info.generation, bodyLength);
        }
        return { page: m as Uint8Array, pageNo: info.pageNo };
      }),
    },
  );
  const nodeArb = fc.tuple(fc.constantFrom(...s.nodeBodies), fc.array(mutationArb, { minLength: 1, maxLength: 6 }), fc.boolean())
    .map(([{ body, info }, ms, flipType]) => {
      const b = mutate(body, ms).subarray(0, PAGE_SIZE - PAGE_HEADER_BYTES);
      const type = flipType ? (info.type === PageType.Leaf ? PageType.Branch : PageType.Leaf) : info.type;
      return { body: b, info: { ...info, type, bodyLength: b.byteLength } };
    });
  const randomNodeArb = fc.tuple(fc.uint8Array({ maxLength: 2048 }), fc.constantFrom(PageType.Leaf, PageType.Branch, PageType.Overflow))
    .map(([body, type]) => ({ body, info: { type, pageNo: 5, generation: 1, bodyLength: body.byteLength } as PageInfo }));
  const codec = new RowCodec(initialMeta(Everything).columns, Everything.fields);
  const cellArb = fc.oneof(
    fc.constant(null),
    fc.uint8Array({ maxLength: 48 }),
    fc.tuple(fc.constantFrom(...s.cells.flat()), fc.array(mutationArb, { minLength: 1, maxLength: 4 })).map(([c, ms]) => mutate(c, ms)),
  );
  const fieldArb = fc.constantFrom(...Object.entries(Everything.fields));

  return [
    ['decodeHeader', fc.property(bytesFrom([s.header], { maxRandom: 96 }), (b) => expectDecoded(FILE_CODES, () => decodeHeader(b), checkHeader))],
    ['decodeHeader (checksum recomputed)', fc.property(bytesFrom([s.header], { limit: 60 }), (b) =>
      expectDecoded(FILE_CODES, () => decodeHeader(withChecksum(b, 60, 60)), checkHeader))],
    ['decodeSuperblock', fc.property(bytesFrom(s.superblocks, { maxRandom: 96 }), (b) => expectDecoded([], () => decodeSuperblock(b), checkSuperblock))],
    ['decodeSuperblock (checksum recomputed)', fc.property(bytesFrom(s.superblocks, { limit: 60 }), (b) =>
      expectDecoded([], () => decodeSuperblock(withChecksum(b, 60, 60)), checkSuperblock))],
    ['verifyPage', fc.property(pageArb, fc.option(fc.constantFrom(PageType.Leaf, PageType.Branch, PageType.FreeList, PageType.Overflow, PageType.Spill), { nil: undefined }), ({ page, pageNo }, expect) =>
      expectDecoded(CORRUPT, () => verifyPage(page, pageNo, pageNo * PAGE_SIZE, expect), (info) => {
        ensure(PAGE_HEADER_BYTES + info.bodyLength <= page.byteLength, `body length ${info.bodyLength}`);
        ensure(expect === undefined || info.type === expect, 'type');
      }))],
    ['verifyPage → decodeNode (a whole page through the read path)', fc.property(pageArb, ({ page, pageNo }) =>
      expectDecoded(CORRUPT, () => {
        const info = verifyPage(page, pageNo, pageNo * PAGE_SIZE);
        const body = aligned(page).subarray(PAGE_HEADER_BYTES, PAGE_HEADER_BYTES + info.bodyLength);
        if (info.type !== PageType.Leaf && info.type !== PageType.Branch) return null;
        return exercise(decodeNode(body, info, pageNo * PAGE_SIZE));
      }))],
    ['decodeNode (mutated leaf and branch bodies)', fc.property(nodeArb, ({ body, info }) =>
      expectDecoded(CORRUPT, () => exercise(decodeNode(aligned(body), info, 0))))],
    ['decodeNode (random bodies)', fc.property(randomNodeArb, ({ body, info }) =>
      expectDecoded(CORRUPT, () => exercise(decodeNode(aligned(body), info, 0))))],
    ['LeafView', fc.property(bytesFrom(s.nodeBodies.filter((n) => n.info.type === PageType.Leaf).map((n) => n.body), { maxRandom: 1024 }), (b) =>
      expectDecoded(CORRUPT, () => exercise(new LeafView(aligned(b), 0))))],
    ['BranchView', fc.property(bytesFrom(s.nodeBodies.filter((n) => n.info.type === PageType.Branch).map((n) => n.body), { maxRandom: 1024 }), (b) =>
      expectDecoded(CORRUPT, () => exercise(new BranchView(aligned(b), 0))))],
    ['catalog decodeMeta', fc.property(bytesFrom(s.metas), (b) =>
      expectDecoded(CORRUPT, () => decodeMeta(b, 'everything'), (m) => ensure(typeof m.name === 'string' && Array.isArray(m.columns), 'meta shape')))],
    ['catalog decodeMeta → CollectionLayout (a collection opened from a damaged catalog entry)', fc.property(bytesFrom(s.metas), (b) =>
      expectDecoded(CORRUPT, () => {
        const layout = new CollectionLayout(decodeMeta(b, 'everything'));
        layout.decode(s.cells[1]);
        return layout;
      }))],
    ['RowCodec.decode', fc.property(fc.array(cellArb, { maxLength: 16 }), (cells) =>
      expectDecoded(CORRUPT, () => codec.decode(cells), (row) => ensure(row !== null && typeof row === 'object', 'row')))],
    ['columnCodec(...).decode', fc.property(fieldArb, cellArb, ([field, spec], cell) =>
      expectDecoded(CORRUPT, () => columnCodec(field, spec).decode(cell ?? new Uint8Array(0))))],
    ['spill decodeBatch', fc.property(bytesFrom(s.batches, { maxRandom: 512 }), (b) =>
      expectDecoded(CORRUPT, () => decodeBatch(b), (batch) => {
        ensure(Number.isSafeInteger(batch.length) && batch.length >= 0, `length ${batch.length}`);
        for (const v of batch.vectors.values()) ensure(v.values.length === batch.length, 'vector length');
      }))],
  ];
}

async function main(): Promise<void> {
  const { numRuns, seed } = workerData as FuzzRequest;
  const samples = await buildSamples();
  for (const [name, property] of properties(samples)) {
    post({ type: 'start', name });
    const details = fc.check(property, { numRuns, seed });
    let message: string | null = null;
    if (details.failed) {
      const err = details.errorInstance as Error | undefined;
      message = `${err?.stack ?? String(err)}\ncounterexample: ${describeCounterexample(details.counterexample)} (seed ${details.seed}, path ${details.counterexamplePath})`;
    }
    post({ type: 'result', name, cases: details.numRuns, failed: details.failed, message });
  }
  post({ type: 'done' });
}

function describeCounterexample(x: unknown): string {
  return JSON.stringify(x, (_k, v) => (v instanceof Uint8Array ? `hex:${Buffer.from(v).toString('hex').slice(0, 400)}` : typeof v === 'bigint' ? `${v}n` : v));
}

main().catch((err) => {
  post({ type: 'result', name: 'worker', cases: 0, failed: true, message: err instanceof Error ? err.stack ?? err.message : String(err) });
  post({ type: 'done' });
});

