// Damage anywhere in a small valid file: flipped bytes, zeroed pages and sectors, swapped pages,
// garbage appended. Opening and reading everything either fails with a ModelVaultError whose
// code says the file is damaged (CORRUPT with a numeric offset, NOT_A_DATABASE,
// UNSUPPORTED_VERSION) or gives exactly the committed data: never another error, never wrong
// rows, never a hang. The one permitted other state is the previous commit, and only when the
// newest superblock itself was damaged (open takes the valid superblock with the highest generation).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checksum } from '../../storage/checksum.js';
import type { Cell } from '../../storage/btree.js';
import { StorageEngine } from '../../storage/engine.js';
import { ModelVaultError } from '../../storage/errors.js';
import { FORMAT_VERSION, SUPERBLOCK_BYTES, SUPERBLOCK_OFFSETS } from '../../storage/superblock.js';
import {
  type Model, type StateDigest, cloneModel, del, digestReader, expectedDigest, makeTempDir, prng, put, randomBytes, randomInt, removeDatabase,
} from './crash-helpers.js';

const PAGE_SIZE = 16384;
const SEED = 0xb17f;
const CASE_LIMIT_MS = 10_000;
const DAMAGE_CODES = ['CORRUPT', 'NOT_A_DATABASE', 'UNSUPPORTED_VERSION'];

interface Base {
  bytes: Buffer;
  pages: number;
  latest: { generation: number; model: Model; digest: StateDigest };
  previous: { generation: number; model: Model; digest: StateDigest };
  /** Offset of the superblock slot the latest commit wrote. */
  newestSlot: number;
  sampleKeys: [tree: string, hexKey: string][];
}

async function buildBase(file: string): Promise<Base> {
  const random = prng(SEED);
  const model: Model = new Map();
  const value = (n: number) => randomBytes(random, n);
  const engine = await StorageEngine.open(file, { pageSize: PAGE_SIZE });
  await engine.write(async (tx) => {
    for (let i = 0; i < 250; i++) {
      await put(tx, model, 'users', 2, Buffer.from(`u${String(i).padStart(4, '0')}`), [value(randomInt(random, 20, 160)), random() < 0.4 ? null : value(8)]);
    }
    for (let i = 0; i < 150; i++) await put(tx, model, 'events', 1, Buffer.from(`e${String(i).padStart(4, '0')}`), [value(randomInt(random, 8, 64))]);
    await put(tx, model, 'blobs', 1, Buffer.from('big'), [value(40_000)]); // an overflow run of 3 pages
  });
  await engine.write(async (tx) => {
    for (let i = 0; i < 250; i += 4) await del(tx, model, 'users', 2, Buffer.from(`u${String(i).padStart(4, '0')}`));
    await put(tx, model, 'blobs', 1, Buffer.from('big2'), [value(20_000)]);
  });
  const previous = { generation: engine.stats().generation, model: cloneModel(model), digest: expectedDigest(model) };
  await engine.write(async (tx) => {
    for (let i = 1; i < 250; i += 10) await put(tx, model, 'users', 2, Buffer.from(`u${String(i).padStart(4, '0')}`), [value(90), value(3)]);
    await del(tx, model, 'events', 1, Buffer.from('e0007'));
  });
  const latest = { generation: engine.stats().generation, model: cloneModel(model), digest: expectedDigest(model) };
  await engine.close();
  const bytes = fs.readFileSync(file);
  const keys = new Set<string>();
  for (const m of [latest.model, previous.model]) for (const [tree, rows] of m) for (const k of rows.keys()) keys.add(`${tree}\0${k}`);
  const sampleKeys = [...keys].sort().filter((_, i) => i % 9 === 0).map((s) => s.split('\0') as [string, string]);
  return { bytes, pages: bytes.byteLength / PAGE_SIZE, latest, previous, newestSlot: SUPERBLOCK_OFFSETS[latest.generation % 2], sampleKeys };
}

type Mode = 'file' | 'memory';
const MODES: Mode[] = ['file', 'memory'];

type Observed =
  | { kind: 'error'; error: unknown }
  | { kind: 'data'; generation: number; digest: StateDigest; gets: [string, string, Cell[] | undefined][]; verifyProblems: unknown[]; storeBytes: number };

/**
 * Opens the damaged image (a file, or a memory store holding it) and reads everything:
 * sampled point lookups first, while the pages are cold, then every entry of every tree.
 */
async function observe(mode: Mode, file: string, image: Buffer, base: Base): Promise<Observed> {
  let engine: StorageEngine | null = null;
  try {
    if (mode === 'file') {
      removeDatabase(file);
      fs.writeFileSync(file, image);
      engine = await StorageEngine.open(file, { recovery: 'truncate' });
    } else {
      engine = await StorageEngine.openMemory({ recovery: 'truncate' }, image);
    }
    const storeBytes = engine.stats().fileBytes;
    const snap = engine.snapshot();
    try {
      const gets: [string, string, Cell[] | undefined][] = [];
      for (const [tree, key] of base.sampleKeys) gets.push([tree, key, await snap.get(tree, Buffer.from(key, 'hex'))]);
      const maxEntries = Math.max(base.latest.digest.entries, base.previous.digest.entries);
      const digest = await digestReader(snap, maxEntries);
      const report = await engine.verify();
      return { kind: 'data', generation: snap.generation, digest, gets, verifyProblems: [...report.problems], storeBytes };
    } finally {
      snap.release();
    }
  } catch (error) {
    return { kind: 'error', error };
  } finally {
    await engine?.close().catch(() => undefined);
  }
}

function bounded<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${CASE_LIMIT_MS} ms (a hang)`)), CASE_LIMIT_MS);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

type Outcome = 'intact' | 'previous' | 'CORRUPT' | 'NOT_A_DATABASE' | 'UNSUPPORTED_VERSION';

/** Opens `image`, reads it, and asserts the contract; returns what happened. */
async function checkCase(mode: Mode, file: string, base: Base, image: Buffer, what: string): Promise<Outcome> {
  const newestTouched = !image.subarray(base.newestSlot, base.newestSlot + SUPERBLOCK_BYTES)
    .equals(base.bytes.subarray(base.newestSlot, base.newestSlot + SUPERBLOCK_BYTES));
  const seen = await bounded(observe(mode, file, image, base), what);

  if (seen.kind === 'error') {
    const err = seen.error;
    if (!(err instanceof ModelVaultError)) {
      expect.fail(`${what}: threw ${err instanceof Error ? `${err.name}: ${err.stack}` : String(err)}, not a ModelVaultError`);
    }
    expect(DAMAGE_CODES, `${what}: ${err.message}`).toContain(err.code);
    if (err.code === 'CORRUPT') {
      expect(Number.isFinite(err.details.offset), `${what}: CORRUPT without a numeric offset: ${err.message}`).toBe(true);
    }
    return err.code as Outcome;
  }

  const state = seen.generation === base.latest.generation ? base.latest
    : seen.generation === base.previous.generation && newestTouched ? base.previous
      : null;
  if (!state) expect.fail(`${what}: opened generation ${seen.generation} (latest ${base.latest.generation}, newest superblock ${newestTouched ? 'damaged' : 'intact'})`);
  expect(seen.digest, `${what}: wrong data at generation ${seen.generation}`).toEqual(state.digest);
  for (const [tree, key, got] of seen.gets) {
    const want = state.model.get(tree)?.get(key);
    if (want === undefined) { expect(got, `${what}: get ${tree}/${key}`).toBeUndefined(); continue; }
    expect(got?.map((c) => (c === null ? null : Buffer.from(c).toString('hex'))), `${what}: get ${tree}/${key}`)
      .toEqual(want.map((c) => (c === null ? null : c.toString('hex'))));
  }
  expect(seen.verifyProblems, `${what}: verify() after a clean read`).toEqual([]);
  // Recovery cuts whatever lies past the committed image (garbage appended, a newer commit's pages).
  expect(seen.storeBytes, `${what}: the store after open`).toBeLessThanOrEqual(image.byteLength);
  expect(seen.storeBytes % PAGE_SIZE, `${what}: the store after open`).toBe(0);
  return state === base.latest ? 'intact' : 'previous';
}

describe.each(MODES)('a damaged file gives CORRUPT (or exactly the right data), never wrong rows (%s store)', (mode) => {
  const tmp = makeTempDir('mv-flip-');
  const file = path.join(tmp.dir, 'case.modelvault');
  let base: Base;
  const tally = new Map<string, Map<Outcome, number>>();
  const record = (kind: string, outcome: Outcome) => {
    const m = tally.get(kind) ?? new Map<Outcome, number>();
    m.set(outcome, (m.get(outcome) ?? 0) + 1);
    tally.set(kind, m);
  };
  const count = (kind: string, outcome?: Outcome) => {
    const m = tally.get(kind);
    if (!m) return 0;
    return outcome ? m.get(outcome) ?? 0 : [...m.values()].reduce((a, b) => a + b, 0);
  };

  beforeAll(async () => {
    base = await buildBase(path.join(tmp.dir, 'base.modelvault'));
  });
  afterAll(() => {
    console.log(`bit-flip outcomes (${mode}): ${JSON.stringify(Object.fromEntries([...tally].map(([k, m]) => [k, Object.fromEntries(m)])))}`);
    tmp.cleanup();
  });

  it('starts from a valid file that reads back exactly', async () => {
    expect(base.pages).toBeGreaterThanOrEqual(8);
    expect(await checkCase(mode, file, base, Buffer.from(base.bytes), 'undamaged')).toBe('intact');
  });

  it('random byte flips: in the header, superblocks, page headers, page bodies and anywhere', async () => {
    const random = prng(SEED + 1);
    const bodyLength = (p: number) => base.bytes.readUInt32LE(p * PAGE_SIZE + 12);
    const pickOffset = (): number => {
      const r = random();
      if (r < 0.3) return randomInt(random, 0, base.bytes.byteLength);
      if (r < 0.45) {
        const region = [[0, 64], [SUPERBLOCK_OFFSETS[0], SUPERBLOCK_BYTES], [SUPERBLOCK_OFFSETS[1], SUPERBLOCK_BYTES]][randomInt(random, 0, 3)];
        return region[0] + randomInt(random, 0, region[1]);
      }
      const p = randomInt(random, 1, base.pages);
      if (r < 0.65) return p * PAGE_SIZE + randomInt(random, 0, 32);
      return p * PAGE_SIZE + 32 + randomInt(random, 0, Math.max(1, Math.min(bodyLength(p), PAGE_SIZE - 32)));
    };
    for (let i = 0; i < 300; i++) {
      const image = Buffer.from(base.bytes);
      const flips = random() < 0.7 ? 1 : randomInt(random, 2, 5);
      const at: number[] = [];
      for (let f = 0; f < flips; f++) {
        const offset = f > 0 && random() < 0.5 ? Math.min(image.byteLength - 1, at[0] + randomInt(random, 1, 16)) : pickOffset();
        image[offset] ^= randomInt(random, 1, 256);
        at.push(offset);
      }
      record('flip', await checkCase(mode, file, base, image, `case ${i}: bytes flipped at ${at.join(', ')}`));
    }
    expect(count('flip')).toBe(300);
    // Damage to reachable pages is caught; damage to unused bytes changes nothing.
    expect(count('flip', 'CORRUPT')).toBeGreaterThan(100);
    expect(count('flip', 'intact')).toBeGreaterThan(10);
  });

  it('zeroed pages and zeroed sectors', async () => {
    const random = prng(SEED + 2);
    for (let p = 0; p < base.pages; p++) {
      const image = Buffer.from(base.bytes);
      image.fill(0, p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
      record('zero page', await checkCase(mode, file, base, image, `page ${p} zeroed`));
    }
    for (let i = 0; i < 40; i++) {
      const image = Buffer.from(base.bytes);
      const at = randomInt(random, 0, base.bytes.byteLength / 512) * 512;
      image.fill(0, at, at + 512);
      record('zero sector', await checkCase(mode, file, base, image, `512 bytes at ${at} zeroed`));
    }
    expect(count('zero page', 'NOT_A_DATABASE')).toBe(1); // page 0: the header
    expect(count('zero page', 'CORRUPT')).toBeGreaterThan(0);
  });

  it('swapped pages', async () => {
    const random = prng(SEED + 3);
    const pairs: [number, number][] = [];
    for (let a = 0; a < base.pages; a++) for (let b = a + 1; b < base.pages; b++) pairs.push([a, b]);
    const chosen = pairs.length <= 120 ? pairs : pairs.filter(() => random() < 120 / pairs.length);
    for (const [a, b] of chosen) {
      const image = Buffer.from(base.bytes);
      base.bytes.copy(image, a * PAGE_SIZE, b * PAGE_SIZE, (b + 1) * PAGE_SIZE);
      base.bytes.copy(image, b * PAGE_SIZE, a * PAGE_SIZE, (a + 1) * PAGE_SIZE);
      record('swap', await checkCase(mode, file, base, image, `pages ${a} and ${b} swapped`));
    }
    expect(count('swap')).toBe(chosen.length);
    expect(count('swap', 'CORRUPT')).toBeGreaterThan(0);
  });

  it('garbage appended past the committed image, which recovery truncates', async () => {
    const random = prng(SEED + 4);
    for (let i = 0; i < 30; i++) {
      const length = random() < 0.5 ? randomInt(random, 1, 3 * PAGE_SIZE) : randomInt(random, 1, 4) * PAGE_SIZE;
      const kind = i % 3;
      const tail = kind === 0 ? randomBytes(random, length)
        : kind === 1 ? Buffer.alloc(length)
          : Buffer.concat(Array.from({ length: Math.ceil(length / PAGE_SIZE) }, () => {
            const p = randomInt(random, 1, base.pages); // copies of real pages: valid checksums, wrong place
            return base.bytes.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
          })).subarray(0, length);
      const what = `${length} bytes of ${['random', 'zero', 'page-copy'][kind]} garbage appended`;
      const outcome = await checkCase(mode, file, base, Buffer.concat([base.bytes, tail]), what);
      record('extend', outcome);
      expect(outcome, `${what}: a tail past the committed image never hides the committed data`).toBe('intact');
      if (mode === 'file') expect(fs.statSync(file).size, `${what}: recovery truncated the file`).toBe(base.bytes.byteLength);
    }
  });

  it('a header naming another format version gives UNSUPPORTED_VERSION; a foreign file NOT_A_DATABASE', async () => {
    const future = Buffer.from(base.bytes);
    future.writeUInt32LE(FORMAT_VERSION + 1, 8);
    future.writeUInt32LE(checksum(future.subarray(0, 60)), 60);
    expect(await checkCase(mode, file, base, future, 'a later format version')).toBe('UNSUPPORTED_VERSION');
    const earlier = Buffer.from(base.bytes);
    earlier.writeUInt32LE(1, 8); // version 1 had no dictionary columns; this build does not write it
    earlier.writeUInt32LE(checksum(earlier.subarray(0, 60)), 60);
    expect(await checkCase(mode, file, base, earlier, 'format version 1')).toBe('UNSUPPORTED_VERSION');
    const foreign = Buffer.from(base.bytes);
    foreign.write('SQLite f', 0, 'latin1');
    expect(await checkCase(mode, file, base, foreign, 'foreign magic')).toBe('NOT_A_DATABASE');
  });
});
