// A commit whose tail never reached the disk: state A is committed, then commit B grows the
// file. Cutting the file anywhere inside the bytes B added (its superblock already written),
// or tearing B's superblock, must reopen as exactly A, report the repair, pass verify(), and be
// refused by `recovery: 'strict'`. A cut after all of B is simply B.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StorageEngine } from '../../storage/engine.js';
import { ModelVaultError } from '../../storage/errors.js';
import { SUPERBLOCK_BYTES, SUPERBLOCK_OFFSETS } from '../../storage/superblock.js';
import {
  type Model, type StateDigest, cloneModel, del, digestReader, expectedDigest, makeTempDir, prng, put, randomBytes, randomInt, removeDatabase,
} from './crash-helpers.js';

const PAGE_SIZE = 16384;
const SEED = 0x7041;

const userKey = (i: number) => Buffer.from(`user:${String(i).padStart(5, '0')}`);
const eventKey = (i: number) => Buffer.from(`event:${String(i).padStart(6, '0')}`);

interface Built {
  fileA: string;
  fileB: string;
  sizeA: number;
  sizeB: number;
  generationA: number;
  generationB: number;
  /** Byte offset of the superblock slot commit B wrote. */
  slotB: number;
  stateA: StateDigest;
  stateB: StateDigest;
}

/** A (three commits, with deletes so that free pages exist), then B, which also grows the file. */
async function build(dir: string): Promise<Built> {
  const random = prng(SEED);
  const fileA = path.join(dir, 'a.modelvault');
  const fileB = path.join(dir, 'b.modelvault');
  const model: Model = new Map();
  const value = (n: number) => randomBytes(random, n);

  let engine = await StorageEngine.open(fileA, { pageSize: PAGE_SIZE });
  await engine.write(async (tx) => {
    for (let i = 0; i < 600; i++) {
      await put(tx, model, 'users', 2, userKey(i), [value(randomInt(random, 40, 200)), random() < 0.3 ? null : value(8)]);
    }
    for (let i = 0; i < 300; i++) await put(tx, model, 'events', 1, eventKey(i), [value(randomInt(random, 10, 90))]);
    await put(tx, model, 'events', 1, Buffer.from('event:big:1'), [value(90_000)]);
  });
  await engine.write(async (tx) => {
    for (let i = 0; i < 600; i += 3) await del(tx, model, 'users', 2, userKey(i));
    for (let i = 1; i < 600; i += 9) await put(tx, model, 'users', 2, userKey(i), [value(300), null]);
    await del(tx, model, 'events', 1, Buffer.from('event:big:1'));
  });
  await engine.write(async (tx) => {
    for (let i = 300; i < 400; i++) await put(tx, model, 'events', 1, eventKey(i), [value(randomInt(random, 10, 90))]);
  });
  const generationA = engine.stats().generation;
  const stateA = expectedDigest(model);
  await engine.close();
  const sizeA = fs.statSync(fileA).size;

  fs.copyFileSync(fileA, fileB);
  const modelB = cloneModel(model);
  engine = await StorageEngine.open(fileB, { pageSize: PAGE_SIZE });
  await engine.write(async (tx) => {
    for (let i = 600; i < 1000; i++) await put(tx, modelB, 'users', 2, userKey(i), [value(randomInt(random, 40, 200)), value(8)]);
    for (let i = 2; i < 600; i += 12) await put(tx, modelB, 'users', 2, userKey(i), [value(120), value(4)]);
    for (let i = 0; i < 100; i += 4) await del(tx, modelB, 'events', 1, eventKey(i));
    await put(tx, modelB, 'events', 1, Buffer.from('event:big:2'), [value(200_000)]);
    for (let i = 0; i < 150; i++) await put(tx, modelB, 'extra', 1, Buffer.from(`x${i}`), [value(64)]);
  });
  const generationB = engine.stats().generation;
  const stateB = expectedDigest(modelB);
  await engine.close();
  const sizeB = fs.statSync(fileB).size;
  return { fileA, fileB, sizeA, sizeB, generationA, generationB, slotB: SUPERBLOCK_OFFSETS[generationB % 2], stateA, stateB };
}

const sha = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** Opens `file`, checks it holds exactly `state` and that verify() is clean, and returns what open repaired. */
async function openAndCheck(file: string, state: StateDigest, generation: number, context: string) {
  const engine = await StorageEngine.open(file, { recovery: 'truncate' });
  try {
    const snap = engine.snapshot();
    try {
      expect(await digestReader(snap, state.entries), context).toEqual(state);
    } finally {
      snap.release();
    }
    const report = await engine.verify();
    expect(report.problems, context).toEqual([]);
    expect(report.generation, context).toBe(generation);
    return { recoveryInfo: engine.recoveryInfo, sizeWhileOpen: fs.statSync(file).size };
  } finally {
    await engine.close();
  }
}

async function expectStrictRefusal(file: string, context: string): Promise<void> {
  const before = sha(file);
  const err = await StorageEngine.open(file, { recovery: 'strict' }).then(
    async (engine) => { await engine.close(); return null; },
    (e: unknown) => e,
  );
  expect(err, `${context}: strict open must refuse`).toBeInstanceOf(ModelVaultError);
  expect((err as ModelVaultError).code, context).toBe('CORRUPT');
  expect(typeof (err as ModelVaultError).details.offset, context).toBe('number');
  expect(sha(file), `${context}: a refused strict open must not change the file`).toBe(before);
}

describe('a commit torn at the tail (file store)', () => {
  const tmp = makeTempDir('mv-torn-');
  let b: Built;

  beforeAll(async () => { b = await build(tmp.dir); });
  afterAll(() => tmp.cleanup());

  it('builds a commit B that grows the file past A, reuses A\'s free pages and writes the other superblock slot', () => {
    expect(b.generationB).toBe(b.generationA + 1);
    expect(b.sizeA % PAGE_SIZE).toBe(0);
    expect(b.sizeB % PAGE_SIZE).toBe(0);
    expect(b.sizeB - b.sizeA).toBeGreaterThanOrEqual(10 * PAGE_SIZE); // the 200 KB value alone is 13 pages
    expect(b.stateA.digest).not.toBe(b.stateB.digest);
    // B wrote its superblock slot, and also pages inside A's image (A's free pages, reused):
    // cutting the tail leaves those behind, and A must not see them.
    const a = fs.readFileSync(b.fileA), full = fs.readFileSync(b.fileB);
    expect(full.subarray(b.slotB, b.slotB + SUPERBLOCK_BYTES).equals(a.subarray(b.slotB, b.slotB + SUPERBLOCK_BYTES))).toBe(false);
    let reused = 0;
    for (let at = PAGE_SIZE; at < b.sizeA; at += PAGE_SIZE) {
      if (!full.subarray(at, at + PAGE_SIZE).equals(a.subarray(at, at + PAGE_SIZE))) reused++;
    }
    expect(reused).toBeGreaterThan(0);
  });

  it('reopens as exactly A for every cut inside B\'s tail, B when nothing is cut, and strict refuses', async () => {
    const random = prng(SEED + 1);
    const cuts = new Set<number>();
    for (let at = b.sizeA; at <= b.sizeB; at += PAGE_SIZE) cuts.add(at); // every page boundary
    for (let at = b.sizeA; at < b.sizeB; at += PAGE_SIZE) {
      cuts.add(at + randomInt(random, 1, PAGE_SIZE));                // random offsets inside every page
      cuts.add(at + randomInt(random, 1, PAGE_SIZE));
      if (random() < 0.5) cuts.add(at + randomInt(random, 1, 64));   // inside the page header or just past it
    }
    for (const odd of [1, 31, 32, 33, 4096, PAGE_SIZE - 1]) {
      cuts.add(b.sizeA + odd);
      cuts.add(b.sizeB - PAGE_SIZE + odd);
    }
    const copy = path.join(tmp.dir, 'cut.modelvault');
    let checked = 0;
    for (const cut of [...cuts].sort((x, y) => x - y)) {
      const context = `cut at ${cut} (A ends at ${b.sizeA}, B at ${b.sizeB})`;
      removeDatabase(copy);
      fs.copyFileSync(b.fileB, copy);
      fs.truncateSync(copy, cut);
      if (cut === b.sizeB) {
        const { recoveryInfo } = await openAndCheck(copy, b.stateB, b.generationB, context);
        expect(recoveryInfo, context).toBeNull();
        checked++;
        continue;
      }
      await expectStrictRefusal(copy, context);
      const { recoveryInfo, sizeWhileOpen } = await openAndCheck(copy, b.stateA, b.generationA, context);
      expect(recoveryInfo, context).toEqual({ truncatedBytes: cut - b.sizeA, reason: expect.stringContaining(`generation ${b.generationB}`) });
      expect(sizeWhileOpen, `${context}: recovery truncates to A`).toBe(b.sizeA);

      // Recovery must have disowned B's superblock: were the file to grow past B's page count
      // again (a spill, an interrupted transaction), B must not come back pointing at garbage.
      fs.appendFileSync(copy, randomBytes(random, b.sizeB - b.sizeA + PAGE_SIZE));
      const again = await openAndCheck(copy, b.stateA, b.generationA, `${context}, then grown with garbage`);
      expect(again.recoveryInfo?.truncatedBytes, context).toBe(b.sizeB - b.sizeA + PAGE_SIZE);
      // And a clean file stays clean: the next open repairs nothing.
      expect((await openAndCheck(copy, b.stateA, b.generationA, `${context}, reopened`)).recoveryInfo, context).toBeNull();
      checked++;
    }
    removeDatabase(copy);
    console.log(`torn-tail: A ${b.sizeA} bytes, B ${b.sizeB} bytes (${(b.sizeB - b.sizeA) / PAGE_SIZE} pages added), ${checked} cuts checked`);
    expect(checked).toBe(cuts.size);
    expect(checked).toBeGreaterThan(2 * (b.sizeB - b.sizeA) / PAGE_SIZE);
  });

  it('refuses a file cut short of A itself: never a state that lost committed pages', async () => {
    const copy = path.join(tmp.dir, 'short.modelvault');
    for (const cut of [b.sizeA - 1, b.sizeA - PAGE_SIZE, b.sizeA - PAGE_SIZE - 777, 2 * PAGE_SIZE]) {
      for (const recovery of ['truncate', 'strict'] as const) {
        removeDatabase(copy);
        fs.copyFileSync(b.fileB, copy);
        fs.truncateSync(copy, cut);
        const err = await StorageEngine.open(copy, { recovery }).then(async (e) => { await e.close(); return null; }, (e: unknown) => e);
        expect(err, `cut at ${cut}, ${recovery}`).toBeInstanceOf(ModelVaultError);
        expect((err as ModelVaultError).code).toBe('CORRUPT');
        expect(typeof (err as ModelVaultError).details.offset).toBe('number');
      }
    }
    removeDatabase(copy);
  });

  it('reopens as exactly A when B\'s superblock write is torn or garbled', async () => {
    const random = prng(SEED + 2);
    const full = fs.readFileSync(b.fileB);
    const newSlot = full.subarray(b.slotB, b.slotB + SUPERBLOCK_BYTES);
    const oldSlot = fs.readFileSync(b.fileA).subarray(b.slotB, b.slotB + SUPERBLOCK_BYTES); // generation A-1's superblock
    const tears: [string, Buffer][] = [];
    for (const n of [0, 1, 8, 16, 24, 32, 40, 48, 56, 60, 63]) {
      tears.push([`first ${n} bytes new, rest old`, Buffer.concat([newSlot.subarray(0, n), oldSlot.subarray(n)])]);
      tears.push([`first ${n} bytes new, rest zero`, Buffer.concat([newSlot.subarray(0, n), Buffer.alloc(SUPERBLOCK_BYTES - n)])]);
      if (n > 0) tears.push([`first ${n} bytes old, rest new`, Buffer.concat([oldSlot.subarray(0, n), newSlot.subarray(n)])]);
    }
    for (let i = 0; i < 10; i++) tears.push([`random garbage ${i}`, randomBytes(random, SUPERBLOCK_BYTES)]);
    tears.push(['all ones', Buffer.alloc(SUPERBLOCK_BYTES, 0xff)]);
    const copy = path.join(tmp.dir, 'sb.modelvault');
    let checked = 0;
    for (const [what, bytes] of tears) {
      if (bytes.equals(newSlot)) continue; // old and new share their magic: such a "tear" is B itself
      const context = `B's superblock: ${what}`;
      removeDatabase(copy);
      fs.copyFileSync(b.fileB, copy);
      const fd = fs.openSync(copy, 'r+');
      fs.writeSync(fd, bytes, 0, bytes.byteLength, b.slotB);
      fs.closeSync(fd);
      await expectStrictRefusal(copy, context);
      const { recoveryInfo, sizeWhileOpen } = await openAndCheck(copy, b.stateA, b.generationA, context);
      // B grew the file, so its pages are a tail past A and are reported as truncated.
      expect(recoveryInfo?.truncatedBytes, context).toBe(b.sizeB - b.sizeA);
      expect(sizeWhileOpen, context).toBe(b.sizeA);
      checked++;
    }
    removeDatabase(copy);
    expect(checked).toBeGreaterThan(30);
  });
});
