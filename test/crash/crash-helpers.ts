// Shared pieces of the crash tests: a seeded PRNG, temporary directories, an independent model
// of what the trees must hold, and a digest that compares a reopened file with that model.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Cell } from '../../storage/btree.js';
import type { EngineTxn, TreeReader } from '../../storage/engine.js';

/** mulberry32: small, fast and reproducible from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

export const randomInt = (random: () => number, lo: number, hiExclusive: number) => lo + Math.floor(random() * (hiExclusive - lo));

export function randomBytes(random: () => number, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(random() * 256);
  return out;
}

/** A fresh directory under os.tmpdir(); call the returned function to remove it. */
export function makeTempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Removes a database file and the lock files the engine leaves beside it. */
export function removeDatabase(file: string): void {
  fs.rmSync(file, { force: true });
  fs.rmSync(`${file}.lock`, { force: true });
}

/** What the trees must hold, kept independently of the engine: tree → hex key → cells. */
export type Model = Map<string, Map<string, (Buffer | null)[]>>;

export function cloneModel(model: Model): Model {
  return new Map([...model].map(([tree, rows]) => [tree, new Map(rows)]));
}

/** Applies a put to the transaction and to the model. */
export async function put(tx: EngineTxn, model: Model, tree: string, columns: number, key: Buffer, cells: (Buffer | null)[]): Promise<void> {
  const w = await tx.tree(tree, columns);
  await w.put(key, cells, 'upsert');
  if (!model.has(tree)) model.set(tree, new Map());
  model.get(tree)!.set(key.toString('hex'), cells);
}

/** Applies a delete to the transaction and to the model; the key must exist. */
export async function del(tx: EngineTxn, model: Model, tree: string, columns: number, key: Buffer): Promise<void> {
  const w = await tx.tree(tree, columns);
  if (!(await w.delete(key))) throw new Error(`test bug: ${tree}/${key.toString('hex')} is not there`);
  model.get(tree)!.delete(key.toString('hex'));
}

function hashCells(h: ReturnType<typeof createHash>, cells: readonly (Cell | undefined)[]): void {
  h.update(`${cells.length}:`);
  for (const c of cells) {
    if (c === null || c === undefined) h.update('-;');
    else { h.update(`${c.byteLength}:`); h.update(c); h.update(';'); }
  }
}

export interface StateDigest {
  readonly digest: string;
  readonly trees: number;
  readonly entries: number;
}

/**
 * Digest of everything a reader sees: every catalog name and every entry of its tree, in order.
 * Stops with a plain Error after `maxEntries`, so a looping tree cannot hang a test.
 */
export async function digestReader(reader: TreeReader, maxEntries: number): Promise<StateDigest> {
  const h = createHash('sha256');
  let trees = 0, entries = 0;
  for (const tree of await reader.names()) {
    let rows = 0;
    const th = createHash('sha256');
    for await (const [key, cells] of reader.entries(tree)) {
      if (++entries > maxEntries) throw new Error(`more than ${maxEntries} entries: a looping or wrong tree`);
      rows++;
      th.update(`${key.toString('hex')}=`);
      hashCells(th, cells);
    }
    if (rows === 0) continue;
    trees++;
    h.update(`tree ${tree}\n`);
    h.update(th.digest());
  }
  return { digest: h.digest('hex'), trees, entries };
}

/** The digest `digestReader` must give for a file holding exactly `model` (hex order is byte order). */
export function expectedDigest(model: Model): StateDigest {
  const h = createHash('sha256');
  let trees = 0, entries = 0;
  for (const tree of [...model.keys()].sort()) {
    const rows = model.get(tree)!;
    if (rows.size === 0) continue;
    trees++;
    const th = createHash('sha256');
    for (const key of [...rows.keys()].sort()) {
      entries++;
      th.update(`${key}=`);
      hashCells(th, rows.get(key)!);
    }
    h.update(`tree ${tree}\n`);
    h.update(th.digest());
  }
  return { digest: h.digest('hex'), trees, entries };
}
