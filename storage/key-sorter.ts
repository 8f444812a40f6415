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
   * Every key added, in byte order (duplicates kept). A yielded key is valid until the next
   * one is pulled. The sorter is empty afterwards, its runs released.
   */
  async *sorted(): AsyncGenerator<Buffer> {
    try {
      this.keys.sort(Buffer.compare);
      while (this.runs.length > FAN_IN) {
        const group = this.runs.splice(0, FAN_IN);
        try {
          this.runs.push(await this.writeRun(merge(group.map(runKeys))));
        } finally {
          for (const run of group) run.drop();
        }
      }
      const memory = this.keys;
      this.keys = [];
      yield* merge([...this.runs.map(runKeys), memory]);
    } finally {
      this.drop();
    }
  }

  /** Releases every run and key (a failed load). */
  drop(): void {
    for (const run of this.runs) run.drop();
    this.runs = [];
    this.keys = [];
  }

  private async spillKeys(): Promise<void> {
    const keys = this.keys.sort(Buffer.compare);
    this.keys = [];
    this.runs.push(await this.writeRun(keys));
  }

  private async writeRun(keys: AsyncIterable<Buffer> | Iterable<Buffer>): Promise<SpillRun> {
    const writer = this.spill.createRun(this.label);
    try {
      let record = Buffer.allocUnsafe(RECORD_BYTES), used = 0;
      for await (const key of keys) {
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

/** The keys of a run, record by record: each a view of its record. */
async function* runKeys(run: SpillRun): AsyncGenerator<Buffer> {
  for await (const record of run.records()) {
    let at = 0;
    while (at < record.byteLength) {
      if (at + 4 > record.byteLength) throw badRecord();
      const length = record.readUInt32LE(at);
      if (at + 4 + length > record.byteLength) throw badRecord();
      yield record.subarray(at + 4, at + 4 + length);
      at += 4 + length;
    }
  }
}

const badRecord = () => new ModelVaultError('CORRUPT', 'a key record of a spill run is malformed', {});

interface Cursor { readonly it: AsyncIterator<Buffer> | Iterator<Buffer>; key: Buffer }

/** k-way merge of sorted key streams, through a binary heap on the current keys. */
async function* merge(sources: (AsyncIterable<Buffer> | Iterable<Buffer>)[]): AsyncGenerator<Buffer> {
  const heap: Cursor[] = [];
  const iterators = sources.map((s) => (Symbol.asyncIterator in s ? s[Symbol.asyncIterator]() : s[Symbol.iterator]()));
  try {
    for (const it of iterators) {
      const first = await it.next();
      if (!first.done) push(heap, { it, key: first.value });
    }
    while (heap.length > 0) {
      const top = heap[0];
      yield top.key;
      const next = await top.it.next();
      if (next.done) {
        const last = heap.pop()!;
        if (heap.length > 0) { heap[0] = last; siftDown(heap, 0); }
      } else {
        top.key = next.value;
        siftDown(heap, 0);
      }
    }
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
