// The workload of the kill-during-commit test, shared by the child that writes it and the
// parent that checks it. Commit `seq` is a pure function of `seq`, so the state after commits
// 1..n is known exactly for every n, and a reopened file must equal one of those states.
//
// Commit seq (trees 'a', 'b' and the one-row tree 'meta'):
//   a[seq] = valueA(seq)           (k % 10 == 4: 70,000+ bytes, deleted 5 commits later;
//                                   k % 8 == 1: 20-38 KB, mostly kept, so commits often grow the file)
//   b[seq] = valueB(seq, seq); b[seq-1] = valueB(seq-1, seq)   (an update of the previous row)
//   delete a[k], b[k] for every k with deleteAt(k) === seq       (frees leaves and overflow runs)
//   meta['counter'] = seq
import type { EngineTxn, TreeReader } from '../../storage/engine.js';

export const TREES = ['a', 'b'] as const;
export const META = 'meta';
export const COUNTER_KEY = Buffer.from('counter');
export const PAGE_SIZE = 16384;
export const LARGE_VALUE_BYTES = 70_000;

export function keyOf(k: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(k));
  return b;
}

export function counterValue(seq: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(seq));
  return b;
}

/** Deterministic bytes for (k, tag): a xorshift stream, so a misplaced or stale value never matches. */
function fill(length: number, k: number, tag: number): Buffer {
  const out = Buffer.alloc(length);
  let x = (Math.imul(k, 0x9e3779b1) ^ Math.imul(tag + 1, 0x85ebca6b) ^ length) >>> 0 || 1;
  for (let i = 0; i < length; i += 4) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out.writeUInt32LE(x, i <= length - 4 ? i : length - 4);
  }
  out.writeUInt32BE(k >>> 0, 0); // the key itself at the front, readable in a hex dump
  return out;
}

export const isLarge = (k: number) => k % 10 === 4;

/** Every 8th key from 1 on holds a 20-38 KB value (kept unless k % 3 === 0), so the file keeps growing and commits often extend it. */
export const isMedium = (k: number) => k % 8 === 1;

export function valueA(k: number): Buffer {
  const length = isLarge(k) ? LARGE_VALUE_BYTES + (k % 97) * 100 : isMedium(k) ? 20_000 + (k % 7) * 3000 : 40 + ((k * 37) % 200);
  return fill(length, k, 0);
}

export function valueB(k: number, tag: number): Buffer {
  return fill(24 + (k % 50), k, tag);
}

/** The commit that deletes key k from both trees (Infinity: never). */
export function deleteAt(k: number): number {
  if (isLarge(k)) return k + 5;
  if (k % 3 === 0) return k + 7;
  return Infinity;
}

/** Applies commit `seq` inside a write transaction. */
export async function applyCommit(tx: EngineTxn, seq: number): Promise<void> {
  const a = await tx.tree('a', 1);
  const b = await tx.tree('b', 1);
  const meta = await tx.tree(META, 1);
  await a.put(keyOf(seq), [valueA(seq)], 'upsert');
  await b.put(keyOf(seq), [valueB(seq, seq)], 'upsert');
  if (seq > 1) {
    const r = await b.put(keyOf(seq - 1), [valueB(seq - 1, seq)], 'update');
    if (r !== 'replaced') throw new Error(`commit ${seq}: b[${seq - 1}] was ${r}`);
  }
  for (const k of [seq - 5, seq - 7]) {
    if (k >= 1 && deleteAt(k) === seq) {
      if (!(await a.delete(keyOf(k))) || !(await b.delete(keyOf(k)))) throw new Error(`commit ${seq}: key ${k} was missing`);
    }
  }
  await meta.put(COUNTER_KEY, [counterValue(seq)], 'upsert');
}

/** The exact contents of each tree after commits 1..n, keyed by hex key. */
export function expectedState(n: number): Record<'a' | 'b' | 'meta', Map<string, Buffer>> {
  const a = new Map<string, Buffer>(), b = new Map<string, Buffer>(), meta = new Map<string, Buffer>();
  for (let k = 1; k <= n; k++) {
    if (deleteAt(k) <= n) continue;
    const key = keyOf(k).toString('hex');
    a.set(key, valueA(k));
    b.set(key, valueB(k, k < n ? k + 1 : k));
  }
  if (n >= 1) meta.set(COUNTER_KEY.toString('hex'), counterValue(n));
  return { a, b, meta };
}

/** The committed counter (0 when nothing was committed). */
export async function readCounter(reader: TreeReader): Promise<number> {
  const row = await reader.get(META, COUNTER_KEY);
  if (!row) return 0;
  const cell = row[0];
  if (!cell || cell.byteLength !== 8) throw new Error(`malformed counter row`);
  return Number(Buffer.from(cell).readBigUInt64BE(0));
}

/** Every entry of `tree` as hex key → value (single-column trees). */
export async function readTree(reader: TreeReader, tree: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for await (const [key, cells] of reader.entries(tree)) {
    if (cells.length !== 1 || cells[0] === null) throw new Error(`tree ${tree}: malformed row ${key.toString('hex')}`);
    out.set(key.toString('hex'), Buffer.from(cells[0]));
  }
  return out;
}
