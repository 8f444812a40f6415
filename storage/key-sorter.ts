// External sort of byte keys through spill runs, for loading a B+tree in key order: an
// index's entries of a whole bulk load go into the tree as one ascending stream (appended to
// its rightmost leaf when the tree starts empty), instead of batches that touch every leaf of
// the tree each and hold them modified in memory.
//
// Invariants:
// (1) At most `runKeys` keys are held in memory; the rest wait in sorted spill runs.
// (2) A merge reads at most FAN_IN runs at once (two 1 MiB buffers each); more runs are first
//     merged into longer ones.
import { ModelVaultError } from './errors.js';
import type { SpillRun, SpillSpace } from './spill-space.js';

const FAN_IN = 16;
/** Keys of a run are written a record of up to this many bytes at a time. */
const RECORD_BYTES = 1 << 16;

/** Sorts keys added one by one; `sorted()` yields them all in byte order. */
export class KeySorter {
  private keys: Buffer[] = [];
  private runs: SpillRun[] = [];

  constructor(private readonly spill: SpillSpace, private readonly label: string, private readonly runKeys = 1 << 16) {}

  /** Adds a key (kept, not copied); a promise when a full run had to be written out. */
  add(key: Buffer): Promise<void> | null {
    this.keys.push(key);
    return this.keys.length >= this.runKeys ? this.spillKeys() : null;
  }

  /**
   * Every key added, in byte order (duplicates kept), a chunk at a time: a chunk's keys are
   * valid until the next chunk is pulled. The sorter is empty afterwards, its runs released.
   */
  async *sortedChunks(): AsyncGenerator<readonly Buffer[]> {
    try {
      sortByteKeys(this.keys);
      while (this.runs.length > FAN_IN) {
        const group = this.runs.splice(0, FAN_IN);
        try {
          this.runs.push(await this.writeRun(merge(group.map(runRecords))));
        } finally {
          for (const run of group) run.drop();
        }
      }
      const memory = this.keys;
      this.keys = [];
      yield* merge([...this.runs.map(runRecords), [memory]]);
    } finally {
      this.drop();
    }
  }

  /** sortedChunks() key by key: a yielded key is valid until the next one is pulled. */
  async *sorted(): AsyncGenerator<Buffer> {
    for await (const chunk of this.sortedChunks()) yield* chunk;
  }

  /** Releases every run and key (a failed load). */
  drop(): void {
    for (const run of this.runs) run.drop();
    this.runs = [];
    this.keys = [];
  }

  private async spillKeys(): Promise<void> {
    const keys = sortByteKeys(this.keys);
    this.keys = [];
    this.runs.push(await this.writeRun([keys]));
  }

  private async writeRun(chunks: AsyncIterable<readonly Buffer[]> | Iterable<readonly Buffer[]>): Promise<SpillRun> {
    const writer = this.spill.createRun(this.label);
    try {
      let record = Buffer.allocUnsafe(RECORD_BYTES), used = 0;
      for await (const chunk of chunks) for (const key of chunk) {
        if (used + 4 + key.byteLength > record.byteLength) {
          if (used > 0) await writer.append(record.subarray(0, used)); // copied: the record is reused
          if (4 + key.byteLength > record.byteLength) record = Buffer.allocUnsafe(4 + key.byteLength);
          used = 0;
        }
        record.writeUInt32LE(key.byteLength, used);
        key.copy(record, used + 4);
        used += 4 + key.byteLength;
      }
      if (used > 0) await writer.append(record.subarray(0, used));
      return await writer.finish();
    } catch (err) {
      writer.abort();
      throw err;
    }
  }
}

/** Below this many keys, a range is sorted by comparisons instead of by its next byte. */
const SMALL_RANGE = 24;

/**
 * Sorts `keys` in place in byte order (a shorter key before its extensions), and returns them:
 * a most-significant-byte radix sort, which reads each key's bytes about once instead of
 * comparing whole keys ~log2(n) times through Buffer.compare (the comparator sort was a fifth of
 * an indexed bulk load).
 */
export function sortByteKeys(keys: Buffer[]): Buffer[] {
  if (keys.length > 1) radixRange(keys, 0, keys.length, 0, new Array<Buffer>(keys.length));
  return keys;
}

/** Past this many shared bytes a range is sorted by comparisons: the recursion stays shallow. */
const MAX_RADIX_DEPTH = 256;

/** Sorts keys[lo, hi), which share their first `depth` bytes, by the bytes from `depth` on. */
function radixRange(keys: Buffer[], lo: number, hi: number, depth: number, scratch: Buffer[]): void {
  if (hi - lo <= SMALL_RANGE) {
    insertionSort(keys, lo, hi);
    return;
  }
  if (depth >= MAX_RADIX_DEPTH) {
    // Keys may be kilobytes long: one recursion a shared byte could exhaust the stack.
    const sorted = keys.slice(lo, hi).sort(Buffer.compare);
    for (let i = lo; i < hi; i++) keys[i] = sorted[i - lo];
    return;
  }
  // Bucket 0: keys that end at `depth`; bucket b + 1: keys whose byte at `depth` is b.
  const counts = new Uint32Array(258);
  for (let i = lo; i < hi; i++) {
    const k = keys[i];
    counts[depth < k.length ? k[depth] + 2 : 1]++;
  }
  if (counts[1] === hi - lo) return; // every key ends here: all equal
  for (let b = 1; b < 258; b++) counts[b] += counts[b - 1];
  // counts[b] is now where bucket b - 1 starts (relative to lo).
  for (let i = lo; i < hi; i++) {
    const k = keys[i];
    scratch[lo + counts[depth < k.length ? k[depth] + 1 : 0]++] = k;
  }
  for (let i = lo; i < hi; i++) keys[i] = scratch[i];
  // After the scatter counts[b] is where bucket b ends; bucket 0 (ended keys) needs no more.
  let start = lo + counts[0];
  for (let b = 1; b < 257; b++) {
    const end = lo + counts[b];
    if (end - start > 1) radixRange(keys, start, end, depth + 1, scratch);
    start = end;
  }
}

function insertionSort(keys: Buffer[], lo: number, hi: number): void {
  for (let i = lo + 1; i < hi; i++) {
    const k = keys[i];
    let j = i - 1;
    while (j >= lo && Buffer.compare(keys[j], k) > 0) {
      keys[j + 1] = keys[j];
      j--;
    }
    keys[j + 1] = k;
  }
}

/** The keys of a run, a record at a time: views of the record, valid until the next is read. */
async function* runRecords(run: SpillRun): AsyncGenerator<readonly Buffer[]> {
  for await (const record of run.records()) {
    const keys: Buffer[] = [];
    let at = 0;
    while (at < record.byteLength) {
      if (at + 4 > record.byteLength) throw badRecord();
      const length = record.readUInt32LE(at);
      if (at + 4 + length > record.byteLength) throw badRecord();
      keys.push(record.subarray(at + 4, at + 4 + length));
      at += 4 + length;
    }
    if (keys.length > 0) yield keys;
  }
}

const badRecord = () => new ModelVaultError('CORRUPT', 'a key record of a spill run is malformed', {});

/** A merge input: its current chunk of sorted keys and the position in it. */
interface Cursor { readonly it: AsyncIterator<readonly Buffer[]> | Iterator<readonly Buffer[]>; keys: readonly Buffer[]; at: number; key: Buffer }

/** Keys a merge hands on at once at most. */
const CHUNK_KEYS = 4096;

/**
 * k-way merge of sorted key sources (each a sequence of sorted chunks) through a binary heap on
 * the current keys, yielding chunks. A chunk is handed on before any source moves to its next
 * chunk, which may reuse the memory the handed-on keys view; one key at a time through two
 * async generators per key was most of a bulk load's merge.
 */
async function* merge(sources: (AsyncIterable<readonly Buffer[]> | Iterable<readonly Buffer[]>)[]): AsyncGenerator<readonly Buffer[]> {
  const heap: Cursor[] = [];
  const iterators = sources.map((s) => (Symbol.asyncIterator in s ? s[Symbol.asyncIterator]() : s[Symbol.iterator]()));
  /** The source's next non-empty chunk, or null when it is done. */
  const nextChunk = async (it: Cursor['it']): Promise<readonly Buffer[] | null> => {
    for (;;) {
      const next = await it.next();
      if (next.done) return null;
      if (next.value.length > 0) return next.value;
    }
  };
  try {
    for (const it of iterators) {
      const keys = await nextChunk(it);
      if (keys) push(heap, { it, keys, at: 0, key: keys[0] });
    }
    let out: Buffer[] = [];
    while (heap.length > 0) {
      const top = heap[0];
      out.push(top.key);
      if (++top.at < top.keys.length) {
        top.key = top.keys[top.at];
        siftDown(heap, 0);
      } else {
        if (out.length > 0) { yield out; out = []; } // before this source's next chunk replaces its memory
        const keys = await nextChunk(top.it);
        if (keys === null) {
          const last = heap.pop()!;
          if (heap.length > 0) { heap[0] = last; siftDown(heap, 0); }
        } else {
          top.keys = keys;
          top.at = 0;
          top.key = keys[0];
          siftDown(heap, 0);
        }
      }
      if (out.length >= CHUNK_KEYS) { yield out; out = []; }
    }
    if (out.length > 0) yield out;
  } finally {
    for (const it of iterators) await it.return?.();
  }
}

function push(heap: Cursor[], c: Cursor): void {
  heap.push(c);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (Buffer.compare(heap[parent].key, heap[i].key) <= 0) break;
    [heap[parent], heap[i]] = [heap[i], heap[parent]];
    i = parent;
  }
}

function siftDown(heap: Cursor[], i: number): void {
  for (;;) {
    const l = 2 * i + 1, r = l + 1;
    let least = i;
    if (l < heap.length && Buffer.compare(heap[l].key, heap[least].key) < 0) least = l;
    if (r < heap.length && Buffer.compare(heap[r].key, heap[least].key) < 0) least = r;
    if (least === i) return;
    [heap[least], heap[i]] = [heap[i], heap[least]];
    i = least;
  }
}
