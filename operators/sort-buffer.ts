// The full sort's buffer: input batches packed row by row as they arrive, so that gathering the
// rows in sorted (random) order touches a few cache lines a row, not one per column, and so
// that the buffered rows hold few heap objects.
//
//   numbers   row i's numeric columns at f[i*F .. i*F+F) (one Float64Array a batch)
//   strings   when every other column of the batch holds strings (or nothing): one joined
//             string a batch, row i's strings side by side, string k = i*A+c ending at ends[k]
//             (starting where string k-1 ends), absent ones flagged in sAbsent. 1M buffered strings are 1M objects
//             the GC traces and promotes; a joined string is one (and ASCII text takes a byte
//             a char in it). Taking a string back out is a slice (~10 ns; decoding a Buffer
//             range was ~100 ns). A slice may share the joined string's memory while it lives.
//   otherwise the other columns' values row-major in one array
//
// A single numeric sort key is one of the packed numeric columns: sorting is a radix argsort
// (radix-sort.ts) of (pack, row) ids by its key images. Batches whose paths or kinds differ from the first
// (derived dotted paths, an unexpected vector kind) switch the buffer to plain batches, which
// sort through concatenation and the row comparator as before.
import { valueAt, type Batch, type F64Vector, type Vector } from './batch.js';
import { pathVector } from './paths.js';
import { keyImagesStrided, radixSortPayload } from './radix-sort.js';
import type { SortKey } from './sort-op.js';
import { encodeBatch, encodeRecord, type SpillColumn } from './spill-codec.js';

interface Pack {
  readonly length: number;
  readonly f: Float64Array;
  readonly fAbsent: Uint8Array | null;
  /** The strings joined; null while an ASCII pack holds them as `ascii` bytes (see pack()). */
  blob: string | null;
  ascii: Buffer | null;
  /** The strings' bytes in memory: a byte a character, two when any character is above U+00FF. */
  readonly blobBytes: number;
  readonly ends: Uint32Array | null;
  readonly sAbsent: Uint8Array | null;
  readonly a: unknown[] | null;
}


// V8 keeps a string one byte a character only when all of them are up to U+00FF. On such a
// string this test returns at once (no character can match); otherwise it finds one early.
const TWO_BYTE_CHAR = /[^\u0000-\u00ff]/;
const NON_ASCII_CHAR = /[^\u0000-\u007f]/;

const bitsFor = (n: number) => Math.max(1, 32 - Math.clz32(Math.max(1, n - 1)));

export interface Sorted {
  readonly length: number;
  /** Rows [from, to) of the sorted order as one batch. */
  gather(from: number, to: number): Batch;
  /** Rows [from, to) as a spill record (spill-codec), when the rows can be written without building a batch. */
  encode?(from: number, to: number): Uint8Array;
}

export class SortBuffer {
  rows = 0;
  private packs: Pack[] = [];
  private fPaths: string[] | null = null;
  private aPaths: string[] = [];
  private longest = 0;
  /** Plain batches once a batch did not fit the packed layout. */
  private plain: Batch[] | null = null;
  /** The packs' typed arrays; a run's packs are dead once the next batch comes (see sort()). */
  private arena = new PackArena();
  /** ASCII strings are held as bytes (see pack()): the sort spills, or is expected to. */
  private asciiAsBytes = false;
  /** sort() was called: the next add() starts a run over the last one's memory. */
  private sortedLast = false;

  constructor(private readonly keys: readonly SortKey[], private readonly sortBatches: (batches: Batch[]) => { batch: Batch; perm: Uint32Array }) {}

  /** Buffers a batch; returns the bytes it now holds. */
  add(b: Batch): number {
    if (this.sortedLast) {
      this.sortedLast = false;
      // The last sort's rows were written out as a run: its packs' memory takes this run's.
      this.asciiAsBytes = true;
      this.arena.reuse();
    }
    for (const k of this.keys) pathVector(b, k.path); // derived key paths are part of the layout
    if (this.plain === null && this.fPaths === null) {
      const paths = [...b.vectors.keys()];
      this.fPaths = paths.filter((p) => b.vectors.get(p)!.kind === 'f64');
      this.aPaths = paths.filter((p) => b.vectors.get(p)!.kind !== 'f64');
    }
    if (this.plain === null && !this.fits(b)) this.unpack();
    this.rows += b.length;
    if (this.plain !== null) { this.plain.push(b); return 0; }
    const p = this.pack(b);
    this.packs.push(p);
    this.longest = Math.max(this.longest, b.length);
    return packBytes(p);
  }

  /** The input is expected not to fit the budget: hold ASCII strings as bytes from the first run on. */
  expectSpill(): void { this.asciiAsBytes = true; }

  /** Whether batches were buffered as they came (their bytes are then the batch estimate). */
  get isPlain(): boolean { return this.plain !== null; }

  private fits(b: Batch): boolean {
    if (b.vectors.size !== this.fPaths!.length + this.aPaths.length) return false;
    for (const p of this.fPaths!) if (b.vectors.get(p)?.kind !== 'f64') return false;
    for (const p of this.aPaths) if (b.vectors.get(p)?.kind !== 'any') return false;
    return true;
  }

  private pack(b: Batch): Pack {
    const n = b.length, fPaths = this.fPaths!, F = fPaths.length, aPaths = this.aPaths, A = aPaths.length, arena = this.arena;
    const f = arena.float64s(n * F);
    let fAbsent: Uint8Array | null = null;
    for (let c = 0; c < F; c++) {
      const v = b.vectors.get(fPaths[c]) as F64Vector;
      const values = v.values, absent = v.absent;
      for (let i = 0, at = c; i < n; i++, at += F) f[at] = values[i];
      if (absent) for (let i = 0; i < n; i++) if (absent[i]) (fAbsent ??= arena.zeroBytes(n * F))[i * F + c] = 1;
    }
    let blob: string | null = null, ascii: Buffer | null = null, ends: Uint32Array | null = null, sAbsent: Uint8Array | null = null, a: unknown[] | null = null;
    if (A > 0) {
      const cols = aPaths.map((p) => (b.vectors.get(p) as { values: unknown[] }).values);
      const parts = new Array<string>(n * A);
      ends = arena.uint32s(n * A);
      let at = 0, ok = true;
      for (let i = 0, k = 0; ok && i < n; i++) {
        for (let c = 0; c < A; c++, k++) {
          const x = cols[c][i];
          if (typeof x === 'string') { parts[k] = x; at += x.length; }
          else if (x === undefined) { parts[k] = ''; (sAbsent ??= arena.zeroBytes(n * A))[k] = 1; }
          else { ok = false; break; }
          ends[k] = at;
        }
      }
      if (ok) {
        blob = parts.join('');
        // When the sort spills, ASCII strings are held as bytes in the arena: a spilled run
        // copies them into its records as they are (encode), where a string would be sliced
        // out, joined again and encoded per record; and a joined string lives until its run is
        // written, long enough to be promoted, then waits as old-generation garbage for a full
        // collection while the next run fills (the heap held about two runs). A sort that
        // keeps its rows in memory keeps strings: its output would hold both copies.
        if (this.asciiAsBytes && !NON_ASCII_CHAR.test(blob)) {
          ascii = arena.bytes(blob.length);
          ascii.write(blob, 0, blob.length, 'latin1');
          blob = null;
        }
      } else {
        ends = sAbsent = null;
        a = new Array(n * A);
        for (let c = 0; c < A; c++) { const values = cols[c]; for (let i = 0; i < n; i++) a[i * A + c] = values[i]; }
      }
    }
    const blobBytes = ascii !== null ? ascii.byteLength : blob === null ? 0 : blob.length * (TWO_BYTE_CHAR.test(blob) ? 2 : 1);
    return { length: n, f, fAbsent, blob, ascii, blobBytes, ends, sAbsent, a };
  }

  /** Back to plain batches (a batch did not fit the layout). */
  private unpack(): void {
    const all = this.packs.length ? this.sortedPacks(this.identityIds()).gatherAll() : [];
    this.release(); // the gathered batches are copies
    this.plain = all;
  }

  /**
   * Gives the packs' memory back at once: the last run is written and a merge needs the room,
   * or the query is over. Every Sorted this buffer returned is invalid afterwards.
   */
  release(): void {
    this.packs = [];
    this.arena.dispose();
    this.arena = new PackArena();
  }

  private identityIds(): { ids: Uint32Array; shift: number } {
    const shift = bitsFor(this.longest);
    const ids = new Uint32Array(this.packs.reduce((n, p) => n + p.length, 0));
    let at = 0;
    this.packs.forEach((p, pi) => { for (let i = 0; i < p.length; i++) ids[at++] = ((pi << shift) | i) >>> 0; });
    return { ids, shift };
  }

  /**
   * The buffered rows in sorted order (stable); the buffer is empty afterwards. The result is
   * valid until the next add(), whose run reuses its memory.
   */
  sort(): Sorted {
    this.sortedLast = true;
    if (this.plain !== null) {
      const { batch, perm } = this.sortBatches(this.plain);
      this.plain = [];
      this.rows = 0;
      return plainSorted(batch, perm);
    }
    const shift = bitsFor(this.longest);
    const keyCol = this.keys.length === 1 ? this.fPaths!.indexOf(this.keys[0].path) : -1;
    if (this.packs.length > 2 ** (32 - shift) || keyCol < 0) {
      // Several keys or a non-numeric key: the general comparator over plain batches.
      this.unpack();
      return this.sort();
    }
    const total = this.rows, F = this.fPaths!.length, desc = this.keys[0].desc;
    const hi = new Uint32Array(total), lo = new Uint32Array(total), ids = new Uint32Array(total);
    let at = 0;
    this.packs.forEach((p, pi) => {
      keyImagesStrided(p.f, p.fAbsent, keyCol, F, p.length, desc, hi, lo, at);
      const base = (pi << shift) >>> 0;
      for (let i = 0; i < p.length; i++) ids[at + i] = (base | i) >>> 0;
      at += p.length;
    });
    const out = this.sortedPacks({ ids: radixSortPayload(hi, lo, ids, total), shift });
    this.packs = [];
    this.rows = 0;
    this.longest = 0;
    return out;
  }

  private sortedPacks(order: { ids: Uint32Array; shift: number }): Sorted & { gatherAll(): Batch[] } {
    const packs = this.packs, fPaths = this.fPaths!, aPaths = this.aPaths;
    const { ids, shift } = order;
    const mask = (1 << shift) - 1, F = fPaths.length, A = aPaths.length;
    let encoder: RecordEncoder | null = null;
    const gather = (from: number, to: number): Batch => {
      const n = to - from;
      const fOut = fPaths.map(() => new Float64Array(n));
      const fAbsent: (Uint8Array | null)[] = fPaths.map(() => null);
      const aOut = aPaths.map(() => new Array(n));
      for (let k = 0; k < n; k++) {
        const id = ids[from + k], pack = packs[id >>> shift], i = id & mask;
        const fb = i * F, f = pack.f;
        for (let c = 0; c < F; c++) fOut[c][k] = f[fb + c];
        if (pack.fAbsent !== null) for (let c = 0; c < F; c++) if (pack.fAbsent[fb + c]) (fAbsent[c] ??= new Uint8Array(n))[k] = 1;
        if (A === 0) continue;
        const ab = i * A;
        if (pack.ends !== null) {
          const ends = pack.ends, blob = pack.blob ?? stringsOf(pack), sAbsent = pack.sAbsent;
          let start = ab === 0 ? 0 : ends[ab - 1];
          for (let c = 0; c < A; c++) {
            const end = ends[ab + c];
            aOut[c][k] = sAbsent !== null && sAbsent[ab + c] ? undefined : blob.slice(start, end);
            start = end;
          }
        } else {
          const a = pack.a!;
          for (let c = 0; c < A; c++) aOut[c][k] = a[ab + c];
        }
      }
      const vectors = new Map<string, Vector>();
      fPaths.forEach((path, c) => vectors.set(path, { kind: 'f64', values: fOut[c], absent: fAbsent[c] }));
      aPaths.forEach((path, c) => vectors.set(path, { kind: 'any', values: aOut[c] }));
      return { length: n, vectors };
    };
    return {
      length: ids.length,
      gather,
      encode: (from, to) => {
        if (A > 0 && !packs.every((p) => p.ascii !== null)) return encodeBatch(gather(from, to));
        return (encoder ??= new RecordEncoder(fPaths, aPaths, packs.some((p) => p.fAbsent !== null), packs.some((p) => p.sAbsent !== null)))
          .encode(packs, ids, shift, from, to);
      },
      gatherAll: () => {
        const out: Batch[] = [];
        let at = 0;
        for (const p of packs) { out.push(gather(at, at + p.length)); at += p.length; }
        return out;
      },
    };
  }
}

/** Bytes of pack memory held by the sort buffers of the process (allocated and not yet released). */
let heldBytes = 0;

/**
 * Frees an ArrayBuffer's memory without waiting for V8 to collect it. Transferring moves the
 * memory to a new, unreferenced ArrayBuffer, freed by the next young-generation collection (a
 * few MiB of allocation away); the arena's own buffers, promoted to the old generation long
 * before, waited for a full collection, so a query run after a large sort found that sort's
 * memory still held (a 1M-row sort run again in the same process peaked about 55 MiB above its
 * first run). Every view of the buffer reads as empty afterwards.
 */
function releaseNow(buffer: ArrayBuffer): void {
  heldBytes -= buffer.byteLength;
  structuredClone(buffer, { transfer: [buffer] });
}

/** Bytes of pack memory held by every sort buffer of the process: 0 once their queries are over. */
export function sortPackBytesHeld(): number {
  return heldBytes;
}

function allocate(bytes: number): ArrayBuffer {
  heldBytes += bytes;
  return new ArrayBuffer(bytes);
}

/**
 * The packs' typed arrays, carved from chunks that the next run reuses: a spilling sort's runs
 * allocated and dropped hundreds of MiB of small arrays, which malloc kept (fragmented, not
 * given back) while V8 freed them only at its next collection. Chunks double from 256 KiB, so a
 * small sort takes little, up to one larger than glibc's largest mmap threshold (32 MiB): such a
 * chunk is mapped on its own, and given back to the OS when the arena is disposed.
 */
class PackArena {
  private static readonly FIRST = 2 ** 18;
  private static readonly LARGEST = 33 * 2 ** 20;
  private chunks: ArrayBuffer[] = [];
  /** Buffers of single huge batches, outside the chunks. */
  private loose: ArrayBuffer[] = [];
  private chunk = -1;
  private at = 0;

  float64s(n: number): Float64Array { const [buf, at] = this.take(8 * n); return new Float64Array(buf, at, n); }
  uint32s(n: number): Uint32Array { const [buf, at] = this.take(4 * n); return new Uint32Array(buf, at, n); }
  bytes(n: number): Buffer { const [buf, at] = this.take(n); return Buffer.from(buf, at, n); }
  zeroBytes(n: number): Uint8Array { const [buf, at] = this.take(n); return new Uint8Array(buf, at, n).fill(0); }

  /** Everything taken is dead: takes start again from the first chunk. */
  reuse(): void {
    this.chunk = -1;
    this.at = 0;
    this.loose.forEach(releaseNow);
    this.loose = [];
  }

  /** Everything taken is dead and the arena is not used again: its memory goes back now. */
  dispose(): void {
    this.reuse();
    this.chunks.forEach(releaseNow);
    this.chunks = [];
  }

  private take(bytes: number): [ArrayBuffer, number] {
    const size = (bytes + 7) & ~7; // keeps every view 8-byte aligned
    if (size > PackArena.LARGEST / 4) { // a huge batch: not worth a chunk
      const own = allocate(size);
      this.loose.push(own);
      return [own, 0];
    }
    while (this.chunk < 0 || this.at + size > this.chunks[this.chunk].byteLength) {
      // A batch larger than what is left of a chunk leaves the rest unused until the next run.
      this.chunk++;
      this.at = 0;
      if (this.chunk === this.chunks.length) this.chunks.push(allocate(Math.min(PackArena.LARGEST, PackArena.FIRST * 2 ** this.chunk)));
    }
    const at = this.at;
    this.at += size;
    return [this.chunks[this.chunk], at];
  }
}

/** An ASCII pack's strings as one string, for gathering rows; made once, then kept by the pack. */
function stringsOf(p: Pack): string {
  const blob = p.ascii!.toString('latin1');
  p.blob = blob;
  p.ascii = null;
  return blob;
}

/**
 * Writes sorted rows of packs whose strings are all ASCII bytes as spill records, through
 * scratch columns reused from record to record (encodeRecord copies them): a spilled run
 * allocates no batch, no string and no typed array a record.
 */
class RecordEncoder {
  private cap = 0;
  private numbers: Float64Array[] = [];
  private numberAbsent: Uint8Array[] = [];
  private lengths: Uint32Array[] = [];
  private stringAbsent: Uint8Array[] = [];
  private utf8: Buffer[];

  constructor(private readonly fPaths: readonly string[], private readonly aPaths: readonly string[],
    private readonly anyNumberAbsent: boolean, private readonly anyStringAbsent: boolean) {
    this.utf8 = aPaths.map(() => Buffer.allocUnsafe(1 << 16));
  }

  encode(packs: readonly Pack[], ids: Uint32Array, shift: number, from: number, to: number): Uint8Array {
    const n = to - from, F = this.fPaths.length, A = this.aPaths.length, mask = (1 << shift) - 1;
    if (n > this.cap) this.grow(n);
    const numbers = this.numbers, numberAbsent = this.numberAbsent, lengths = this.lengths, stringAbsent = this.stringAbsent, utf8 = this.utf8;
    const fAbsentSeen = new Uint8Array(F), sAbsentSeen = new Uint8Array(A), used = new Array<number>(A).fill(0);
    for (let k = 0; k < n; k++) {
      const id = ids[from + k], pack = packs[id >>> shift], i = id & mask;
      const fb = i * F, f = pack.f;
      for (let c = 0; c < F; c++) numbers[c][k] = f[fb + c];
      if (this.anyNumberAbsent) {
        const fAbsent = pack.fAbsent;
        for (let c = 0; c < F; c++) { const x = fAbsent === null ? 0 : fAbsent[fb + c]; numberAbsent[c][k] = x; fAbsentSeen[c] |= x; }
      }
      if (A === 0) continue;
      const ab = i * A, ends = pack.ends!, bytes = pack.ascii!, sAbsent = pack.sAbsent;
      let start = ab === 0 ? 0 : ends[ab - 1];
      for (let c = 0; c < A; c++) {
        const end = ends[ab + c], len = end - start;
        lengths[c][k] = len;
        if (this.anyStringAbsent) { const x = sAbsent === null ? 0 : sAbsent[ab + c]; stringAbsent[c][k] = x; sAbsentSeen[c] |= x; }
        let out = utf8[c], at = used[c];
        if (at + len > out.byteLength) {
          const bigger = Buffer.allocUnsafe(2 * (at + len));
          out.copy(bigger, 0, 0, at);
          out = utf8[c] = bigger;
        }
        // Most strings are short: a loop beats the call a native copy costs.
        if (len <= 32) for (let j = start; j < end; j++) out[at++] = bytes[j];
        else { bytes.copy(out, at, start, end); at += len; }
        used[c] = at;
        start = end;
      }
    }
    const cols: SpillColumn[] = [];
    for (let c = 0; c < F; c++) cols.push({ path: this.fPaths[c], numbers: numbers[c].subarray(0, n), absent: fAbsentSeen[c] ? numberAbsent[c].subarray(0, n) : null });
    for (let c = 0; c < A; c++) {
      cols.push({ path: this.aPaths[c], utf8: utf8[c].subarray(0, used[c]), lengths: lengths[c].subarray(0, n), absent: sAbsentSeen[c] ? stringAbsent[c].subarray(0, n) : null });
    }
    return encodeRecord(n, cols);
  }

  private grow(n: number): void {
    this.cap = n;
    this.numbers = this.fPaths.map(() => new Float64Array(n));
    this.numberAbsent = this.anyNumberAbsent ? this.fPaths.map(() => new Uint8Array(n)) : [];
    this.lengths = this.aPaths.map(() => new Uint32Array(n));
    this.stringAbsent = this.anyStringAbsent ? this.aPaths.map(() => new Uint8Array(n)) : [];
  }
}

function packBytes(p: Pack): number {
  let n = 64 + p.f.byteLength + (p.fAbsent?.byteLength ?? 0) + (p.ends === null ? 0 : 24 + p.blobBytes) + (p.ends?.byteLength ?? 0) + (p.sAbsent?.byteLength ?? 0);
  if (p.a) n += estimateArray(p.a);
  return n;
}

function estimateArray(values: readonly unknown[]): number {
  const n = values.length;
  if (n === 0) return 0;
  const step = Math.max(1, Math.floor(n / 64));
  let sum = 0, seen = 0;
  for (let i = 0; i < n; i += step) {
    const x = values[i];
    sum += typeof x === 'string' ? 16 + 2 * x.length : typeof x === 'object' && x !== null ? 64 : 8;
    seen++;
  }
  return 8 * n + Math.ceil((sum / seen) * n);
}

function plainSorted(batch: Batch, perm: Uint32Array): Sorted {
  const vectors = [...batch.vectors];
  return {
    length: perm.length,
    gather(from, to) {
      const n = to - from;
      const out = new Map<string, Vector>();
      for (const [path, v] of vectors) {
        if (v.kind === 'f64') {
          const values = new Float64Array(n);
          let absent: Uint8Array | null = null;
          for (let k = 0; k < n; k++) {
            const i = perm[from + k];
            values[k] = v.values[i];
            if (v.absent && v.absent[i]) (absent ??= new Uint8Array(n))[k] = 1;
          }
          out.set(path, { kind: 'f64', values, absent });
        } else {
          const values = new Array(n);
          for (let k = 0; k < n; k++) values[k] = valueAt(v, perm[from + k]);
          out.set(path, { kind: 'any', values });
        }
      }
      return { length: n, vectors: out };
    },
  };
}

