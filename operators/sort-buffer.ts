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

interface Pack {
  readonly length: number;
  readonly f: Float64Array;
  readonly fAbsent: Uint8Array | null;
  readonly blob: string | null;
  /** The blob's bytes in V8: a byte a character, two when any character is above U+00FF. */
  readonly blobBytes: number;
  readonly ends: Uint32Array | null;
  readonly sAbsent: Uint8Array | null;
  readonly a: unknown[] | null;
}


// V8 keeps a string one byte a character only when all of them are up to U+00FF. On such a
// string this test returns at once (no character can match); otherwise it finds one early.
const TWO_BYTE_CHAR = /[^\u0000-\u00ff]/;

const bitsFor = (n: number) => Math.max(1, 32 - Math.clz32(Math.max(1, n - 1)));

export interface Sorted {
  readonly length: number;
  /** Rows [from, to) of the sorted order as one batch. */
  gather(from: number, to: number): Batch;
}

export class SortBuffer {
  rows = 0;
  private packs: Pack[] = [];
  private fPaths: string[] | null = null;
  private aPaths: string[] = [];
  private longest = 0;
  /** Plain batches once a batch did not fit the packed layout. */
  private plain: Batch[] | null = null;

  constructor(private readonly keys: readonly SortKey[], private readonly sortBatches: (batches: Batch[]) => { batch: Batch; perm: Uint32Array }) {}

  /** Buffers a batch; returns the bytes it now holds. */
  add(b: Batch): number {
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

  /** Whether batches were buffered as they came (their bytes are then the batch estimate). */
  get isPlain(): boolean { return this.plain !== null; }

  private fits(b: Batch): boolean {
    if (b.vectors.size !== this.fPaths!.length + this.aPaths.length) return false;
    for (const p of this.fPaths!) if (b.vectors.get(p)?.kind !== 'f64') return false;
    for (const p of this.aPaths) if (b.vectors.get(p)?.kind !== 'any') return false;
    return true;
  }

  private pack(b: Batch): Pack {
    const n = b.length, fPaths = this.fPaths!, F = fPaths.length, aPaths = this.aPaths, A = aPaths.length;
    const f = new Float64Array(n * F);
    let fAbsent: Uint8Array | null = null;
    for (let c = 0; c < F; c++) {
      const v = b.vectors.get(fPaths[c]) as F64Vector;
      const values = v.values, absent = v.absent;
      for (let i = 0, at = c; i < n; i++, at += F) f[at] = values[i];
      if (absent) for (let i = 0; i < n; i++) if (absent[i]) (fAbsent ??= new Uint8Array(n * F))[i * F + c] = 1;
    }
    let blob: string | null = null, ends: Uint32Array | null = null, sAbsent: Uint8Array | null = null, a: unknown[] | null = null;
    if (A > 0) {
      const cols = aPaths.map((p) => (b.vectors.get(p) as { values: unknown[] }).values);
      const parts = new Array<string>(n * A);
      ends = new Uint32Array(n * A);
      let at = 0, ok = true;
      for (let i = 0, k = 0; ok && i < n; i++) {
        for (let c = 0; c < A; c++, k++) {
          const x = cols[c][i];
          if (typeof x === 'string') { parts[k] = x; at += x.length; }
          else if (x === undefined) { parts[k] = ''; (sAbsent ??= new Uint8Array(n * A))[k] = 1; }
          else { ok = false; break; }
          ends[k] = at;
        }
      }
      if (ok) blob = parts.join('');
      else {
        ends = sAbsent = null;
        a = new Array(n * A);
        for (let c = 0; c < A; c++) { const values = cols[c]; for (let i = 0; i < n; i++) a[i * A + c] = values[i]; }
      }
    }
    const blobBytes = blob === null ? 0 : blob.length * (TWO_BYTE_CHAR.test(blob) ? 2 : 1);
    return { length: n, f, fAbsent, blob, blobBytes, ends, sAbsent, a };
  }

  /** Back to plain batches (a batch did not fit the layout). */
  private unpack(): void {
    const all = this.packs.length ? this.sortedPacks(this.identityIds()).gatherAll() : [];
    this.packs = [];
    this.plain = all;
  }

  private identityIds(): { ids: Uint32Array; shift: number } {
    const shift = bitsFor(this.longest);
    const ids = new Uint32Array(this.packs.reduce((n, p) => n + p.length, 0));
    let at = 0;
    this.packs.forEach((p, pi) => { for (let i = 0; i < p.length; i++) ids[at++] = ((pi << shift) | i) >>> 0; });
    return { ids, shift };
  }

  /** The buffered rows in sorted order (stable); the buffer is empty afterwards. */
  sort(): Sorted {
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
        if (pack.blob !== null) {
          const ends = pack.ends!, blob = pack.blob, sAbsent = pack.sAbsent;
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
      gatherAll: () => {
        const out: Batch[] = [];
        let at = 0;
        for (const p of packs) { out.push(gather(at, at + p.length)); at += p.length; }
        return out;
      },
    };
  }
}

function packBytes(p: Pack): number {
  let n = 64 + p.f.byteLength + (p.fAbsent?.byteLength ?? 0) + (p.blob === null ? 0 : 24 + p.blobBytes) + (p.ends?.byteLength ?? 0) + (p.sAbsent?.byteLength ?? 0);
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

