// B+tree node formats. A leaf stores its keys together, then each value column together
// (see FORMAT.md): a column whose present cells all have one width is stored fixed-width and
// 8-byte aligned, so an upper layer that encodes float64 cells gets a Float64Array view of
// the page with no copy; a column whose cells repeat a few distinct byte strings is stored as
// that dictionary plus a one-byte code per cell; other columns are offsets + bytes. A scan
// that needs two columns touches two column sections and builds nothing else.
import { alignedBufferUnsafe } from './block-store.js';
import { corruptAt } from './errors.js';
import { PageType, type PageInfo } from './page.js';
import type { DirtyPage } from './pager.js';

/** A stored value too large for a leaf, kept in a run of overflow pages. */
export class OverflowRef {
  static readonly BYTES = 12;
  constructor(readonly startPage: number, readonly pageCount: number, readonly byteLength: number) {}
  encode(): Buffer {
    const b = Buffer.alloc(OverflowRef.BYTES);
    b.writeUInt32LE(this.startPage, 0);
    b.writeUInt32LE(this.pageCount, 4);
    b.writeUInt32LE(this.byteLength, 8);
    return b;
  }
}

/** One column value of an entry: bytes, or null when absent. */
export type Cell = Uint8Array | null;
export type StoredCell = Buffer | null | OverflowRef;

const LEAF_HEADER_BYTES = 8;
const BRANCH_HEADER_BYTES = 8;
const COLUMN_DESCRIPTOR_BYTES = 8;
const FLAG_ABSENT = 1;
const FLAG_OVERFLOW = 2;
const KIND_VARIABLE = 0;
const KIND_FIXED = 1;
const KIND_DICT = 2;
/** A dictionary column's codes are one byte. */
const DICT_MAX_VALUES = 256;
/** Longer cells are not looked up for a dictionary: hashing them costs more than it saves. */
const DICT_MAX_CELL_BYTES = 64;
/** After this many present cells, a column with more distinct values than DICT_SAMPLE_DISTINCT is not tried further. */
const DICT_SAMPLE_CELLS = 128;
const DICT_SAMPLE_DISTINCT = 96;

const pad8 = (n: number) => (n + 7) & ~7;
const bitmapBytes = (count: number) => pad8((count + 7) >> 3);

/**
 * Sign of (page[start, end) − key) by bytes. A plain loop: Buffer#compare with offsets costs
 * ~130 ns a call in Node 20, a loop over short keys ~10 ns, and a get makes ~25 comparisons.
 */
export function compareBytes(page: Uint8Array, start: number, end: number, key: Uint8Array): number {
  const n = Math.min(end - start, key.length);
  for (let i = 0; i < n; i++) {
    const d = page[start + i] - key[i];
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  const a = end - start, b = key.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Bytes a cell adds to a leaf in the worst (variable-width) layout. */
export function storedCellBytes(cell: StoredCell): number {
  if (cell === null) return 4;
  return 4 + (cell instanceof OverflowRef ? OverflowRef.BYTES : cell.byteLength);
}

// A modified leaf keeps each entry's cells packed into one buffer (u16 cell count, then per
// cell a u32 length or marker and its bytes): two objects an entry instead of one per cell,
// which keeps a large transaction's garbage collection cheap.
const PACKED_ABSENT = 0xffffffff;
const PACKED_OVERFLOW = 0xfffffffe;

/** Packed cells of one entry. */
export type PackedRow = Buffer;

/** The packed row of a zero-column tree (an index): one shared buffer, not one per entry. */
const EMPTY_ROW: PackedRow = Buffer.alloc(2);

export function packRow(cells: readonly StoredCell[]): PackedRow {
  if (cells.length === 0) return EMPTY_ROW;
  let size = 2;
  for (const c of cells) size += storedCellBytes(c);
  const out = Buffer.allocUnsafe(size);
  out.writeUInt16LE(cells.length, 0);
  let at = 2;
  for (const c of cells) {
    if (c === null) { out.writeUInt32LE(PACKED_ABSENT, at); at += 4; continue; }
    if (c instanceof OverflowRef) { out.writeUInt32LE(PACKED_OVERFLOW, at); out.set(c.encode(), at + 4); at += 4 + OverflowRef.BYTES; continue; }
    out.writeUInt32LE(c.byteLength, at);
    out.set(c, at + 4);
    at += 4 + c.byteLength;
  }
  return out;
}

/** The packed row of an entry with no cells (index entries). */
export const emptyPackedRow = (): PackedRow => EMPTY_ROW;

/**
 * Where a row's cells are written, one call per column in column order: a packed row
 * (PackedRowBuilder) or the column runs of a leaf being loaded (AppendLeaf's staged entry).
 */
export interface CellSink {
  absent(): void;
  float64(v: number): void;
  int64(v: bigint): void;
  byte(v: number): void;
  utf8(v: string): void;
  bytes(v: Uint8Array): void;
  /** A cell's raw bytes: `len` bytes of `src` from `from` (a packed row's cell). */
  copy(src: Uint8Array, from: number, len: number): void;
}

/** Writes the cells of a packed row (no overflow references: plainCellCount) to `sink`. */
export function writePackedCells(sink: CellSink, row: PackedRow): void {
  const n = row[0] | (row[1] << 8);
  let at = 2;
  for (let c = 0; c < n; c++) {
    const len = (row[at] | (row[at + 1] << 8) | (row[at + 2] << 16) | (row[at + 3] << 24)) >>> 0;
    at += 4;
    if (len === PACKED_ABSENT) { sink.absent(); continue; }
    sink.copy(row, at, len);
    at += len;
  }
}

/** Writes `v` as UTF-8 at `at` (room for 3 bytes a code unit); returns the byte count. */
function writeUtf8(out: Buffer, at: number, v: string): number {
  const len = v.length;
  // Longer strings through the native encoder (twice as fast at 40 characters); short ASCII
  // ones byte by byte, which costs less than the call.
  if (len > 16) return out.write(v, at);
  let i = 0;
  for (; i < len; i++) {
    const ch = v.charCodeAt(i);
    if (ch >= 0x80) break;
    out[at + i] = ch;
  }
  return i === len ? len : out.write(v, at, 'utf8');
}

/**
 * Builds packed rows cell by cell in one reusable scratch buffer: encoding a row allocates
 * nothing, and a caller that keeps the row copies it (`current`).
 */
export class PackedRowBuilder implements CellSink {
  private scratch = Buffer.allocUnsafe(4096);
  private view = new DataView(this.scratch.buffer, this.scratch.byteOffset, this.scratch.byteLength);
  private at = 0;

  begin(columns: number): void {
    this.at = 0;
    if (this.scratch.byteLength > 1 << 20) this.resize(4096); // a huge value passed through: do not keep its scratch
    this.at = 2;
    this.view.setUint16(0, columns, true);
  }

  private reserve(bytes: number): void {
    if (this.at + bytes <= this.scratch.byteLength) return;
    this.resize(Math.max(this.scratch.byteLength * 2, this.at + bytes));
  }

  private resize(size: number): void {
    const grown = Buffer.allocUnsafe(size);
    this.scratch.copy(grown, 0, 0, Math.min(this.at, size));
    this.scratch = grown;
    this.view = new DataView(grown.buffer, grown.byteOffset, grown.byteLength);
  }

  absent(): void {
    this.reserve(4);
    this.view.setUint32(this.at, PACKED_ABSENT, true);
    this.at += 4;
  }

  float64(v: number): void {
    this.reserve(12);
    this.view.setUint32(this.at, 8, true);
    this.view.setFloat64(this.at + 4, v, true);
    this.at += 12;
  }

  int64(v: bigint): void {
    this.reserve(12);
    this.view.setUint32(this.at, 8, true);
    this.view.setBigInt64(this.at + 4, v, true);
    this.at += 12;
  }

  byte(v: number): void {
    this.reserve(5);
    this.view.setUint32(this.at, 1, true);
    this.scratch[this.at + 4] = v;
    this.at += 5;
  }

  utf8(v: string): void {
    this.reserve(4 + 3 * v.length);
    const start = this.at + 4;
    const n = writeUtf8(this.scratch, start, v);
    this.view.setUint32(this.at, n, true);
    this.at = start + n;
  }

  bytes(v: Uint8Array): void {
    this.reserve(4 + v.byteLength);
    this.view.setUint32(this.at, v.byteLength, true);
    this.scratch.set(v, this.at + 4);
    this.at += 4 + v.byteLength;
  }

  copy(src: Uint8Array, from: number, len: number): void {
    this.reserve(4 + len);
    this.view.setUint32(this.at, len, true);
    copyBytes(src as Buffer, from, this.scratch, this.at + 4, len);
    this.at += 4 + len;
  }

  /** The row built so far, in the scratch buffer: valid until the next `begin`. */
  current(): PackedRow {
    return this.scratch.subarray(0, this.at);
  }
}

export function packedCell(row: PackedRow, c: number): StoredCell {
  if (c >= row.readUInt16LE(0)) return null;
  let at = 2;
  for (let k = 0; ; k++) {
    const len = row.readUInt32LE(at);
    const bytes = len === PACKED_ABSENT ? 0 : len === PACKED_OVERFLOW ? OverflowRef.BYTES : len;
    if (k === c) {
      if (len === PACKED_ABSENT) return null;
      if (len === PACKED_OVERFLOW) return new OverflowRef(row.readUInt32LE(at + 4), row.readUInt32LE(at + 8), row.readUInt32LE(at + 12));
      return row.subarray(at + 4, at + 4 + len);
    }
    at += 4 + bytes;
  }
}

/** Every cell of a packed row (absent ones as null). */
export function unpackRow(row: PackedRow): StoredCell[] {
  const n = row.readUInt16LE(0);
  const out: StoredCell[] = [];
  for (let c = 0; c < n; c++) out.push(packedCell(row, c));
  return out;
}

/** Bytes an entry adds to a leaf, bitmaps included; the sum plus `leafFixedBytes` bounds the encoding. */
export function entryBytes(key: Uint8Array, row: PackedRow): number {
  return 4 + key.byteLength + row.byteLength - 2 + row.readUInt16LE(0) * 0.25;
}

export function leafFixedBytes(columns: number): number {
  // header, final key offset, key padding, and per column: descriptor, final offset, padding, two bitmaps' padding
  return LEAF_HEADER_BYTES + 4 + 8 + columns * (COLUMN_DESCRIPTOR_BYTES + 4 + 8 + 16);
}

/** Read access shared by page views and mutable nodes. */
export interface LeafLike {
  readonly isLeaf: true;
  readonly count: number;
  readonly columns: number;
  /** Sign of key(i) − key. */
  compareKey(i: number, key: Buffer): number;
  key(i: number): Buffer;
  cell(i: number, column: number): StoredCell;
}

export interface BranchLike {
  readonly isLeaf: false;
  readonly count: number;
  /** Height above the leaves: 1 means the children are leaves. */
  readonly level: number;
  compareKey(i: number, key: Buffer): number;
  key(i: number): Buffer;
  child(i: number): number;
}

export type NodeLike = LeafLike | BranchLike;

/** Index of the last entry whose key is <= key, or -1. */
export function lastAtOrBefore(node: NodeLike, key: Buffer): number {
  let lo = 0, hi = node.count - 1, found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (node.compareKey(mid, key) <= 0) { found = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return found;
}

/**
 * Where a node's keys spread, for interpolation: the bytes every key in [from, count) shares,
 * then the next six bytes of the first and of the last key read as numbers. Six big-endian bytes
 * (zero-padded) order like the keys, so a key's number places it among them. Dense numbers
 * (ids counting up, timestamps) are found at the first probe or the next when the page's keys lie
 * within one power of two (ordered-binary writes numbers as floats); otherwise the two probes
 * are spent before the binary search (11 probes instead of 10 over 660 keys).
 */
interface KeySpread {
  readonly from: number;
  readonly common: number;
  readonly first: number;
  readonly span: number;
}

const SPREAD_BYTES = 6;
/** Below this many keys a plain binary search takes about as few probes. */
const MIN_INTERPOLATED_KEYS = 16;

/** The key spread of keys [from, count), or null when interpolation cannot help (few keys, or the first and last alike in their leading bytes). */
function keySpread(body: Uint8Array, base: number, offsets: Uint32Array, from: number, count: number): KeySpread | null {
  if (count - from < MIN_INTERPOLATED_KEYS) return null;
  const aStart = base + offsets[from], aEnd = base + offsets[from + 1];
  const bStart = base + offsets[count - 1], bEnd = base + offsets[count];
  let common = 0;
  while (aStart + common < aEnd && bStart + common < bEnd && body[aStart + common] === body[bStart + common]) common++;
  const first = spreadNumber(body, aStart, aEnd, common), last = spreadNumber(body, bStart, bEnd, common);
  return last > first ? { from, common, first, span: last - first } : null;
}

/** SPREAD_BYTES of bytes[start + skip ..) as a big-endian number, zero-padded past end. */
function spreadNumber(bytes: Uint8Array, start: number, end: number, skip: number): number {
  let v = 0;
  for (let k = start + skip; k < start + skip + SPREAD_BYTES; k++) v = v * 256 + (k < end ? bytes[k] : 0);
  return v;
}

/**
 * The first index in [lo, hi) whose key is > key (`after`), or >= key, over keys packed in a
 * page: one monomorphic loop over the page bytes, no views per probe. With a spread, the first
 * probe is where the key's number places it and the second its neighbour, which settles dense
 * keys in two probes instead of ten (each a CPU cache miss in a page not touched lately);
 * otherwise, or when they do not settle it, a binary search over what is left.
 */
function searchPacked(body: Uint8Array, base: number, offsets: Uint32Array, lo: number, hi: number, key: Uint8Array, after: boolean, spread: KeySpread | null): number {
  if (spread !== null && hi - lo >= MIN_INTERPOLATED_KEYS) {
    const t = spreadNumber(key, 0, key.length, spread.common);
    const last = offsets.length - 2;
    let p = spread.from + Math.round(((t - spread.first) / spread.span) * (last - spread.from));
    if (!(p >= lo)) p = lo; // also NaN
    else if (p > hi - 1) p = hi - 1;
    if (sortsBefore(body, base, offsets, p, key, after)) {
      lo = p + 1;
      if (lo < hi) {
        if (!sortsBefore(body, base, offsets, lo, key, after)) return lo;
        lo++;
      }
    } else {
      hi = p;
      if (hi > lo) {
        if (sortsBefore(body, base, offsets, hi - 1, key, after)) return hi;
        hi--;
      }
    }
  }
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sortsBefore(body, base, offsets, mid, key, after)) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/** Whether packed key i sorts before `key` (`after`: or equals it). */
function sortsBefore(body: Uint8Array, base: number, offsets: Uint32Array, i: number, key: Uint8Array, after: boolean): boolean {
  const start = base + offsets[i], len = base + offsets[i + 1] - start;
  const klen = key.length;
  const n = len < klen ? len : klen;
  let d = 0;
  for (let k = 0; k < n; k++) {
    d = body[start + k] - key[k];
    if (d !== 0) break;
  }
  if (d === 0) d = len - klen;
  return d < 0 || (after && d === 0);
}

/** Index of the first entry whose key is >= key (count when none). */
export function firstAtOrAfter(node: NodeLike, key: Buffer): number {
  if (node instanceof LeafView || node instanceof BranchView) return node.search(key, false);
  let lo = 0, hi = node.count;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (node.compareKey(mid, key) < 0) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/**
 * Which child of a branch covers `key`. Key 0 is never compared: it is no bound (a smaller key
 * may have been inserted into child 0, or child 0 removed), so it need not be in order.
 */
export function childIndexFor(node: BranchLike, key: Buffer): number {
  if (node instanceof BranchView) return Math.max(0, node.search(key, true, 1) - 1);
  let lo = 1, hi = node.count - 1, found = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (node.compareKey(mid, key) <= 0) { found = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return found;
}

// ── column views (what scans read) ────────────────────────────────────────────

export interface FixedColumn {
  readonly kind: 'fixed';
  readonly width: number;
  /** count × width bytes, 8-byte aligned within an 8-byte aligned page buffer. */
  readonly data: Uint8Array;
  /** Bit i set = cell i absent; null when every cell is present. */
  readonly absent: Uint8Array | null;
  /**
   * `data` as float64 values when the width is 8 (numbers, timestamps) and the data aligned:
   * made with the view, so a leaf kept in the pool hands every query the same array.
   */
  readonly f64: Float64Array | null;
}

export interface VariableColumn {
  readonly kind: 'variable';
  readonly offsets: Uint32Array;
  readonly data: Buffer;
  readonly absent: Uint8Array | null;
  /** Bit i set = cell i is an OverflowRef. */
  readonly overflow: Uint8Array | null;
}

/**
 * A column of few distinct cell values: cell i holds the bytes of dictionary entry codes[i],
 * data[offsets[code], offsets[code + 1]). Codes of absent cells are 0; every code is checked
 * to be below `size` when the view is made.
 */
export interface DictColumn {
  readonly kind: 'dict';
  readonly size: number;
  readonly codes: Uint8Array;
  readonly offsets: Uint32Array;
  readonly data: Buffer;
  readonly absent: Uint8Array | null;
}

export type ColumnView = FixedColumn | VariableColumn | DictColumn;

export const bitSet = (bitmap: Uint8Array | null, i: number): boolean => bitmap !== null && (bitmap[i >> 3] & (1 << (i & 7))) !== 0;

/**
 * A leaf decoded in place: only the key offsets and the column section bounds are parsed;
 * a column's views are made (and checked) the first time it is read, so a scan or a point
 * get that needs two columns of ten builds two columns' views, not ten.
 */
export class LeafView implements LeafLike {
  readonly isLeaf = true as const;
  readonly count: number;
  readonly columns: number;
  private readonly keyOffsets: Uint32Array;
  private readonly keyBase: number;
  /** Computed at the first search (undefined until then). */
  private spread: KeySpread | null | undefined = undefined;
  /** Per column: the body offset of its descriptor and of its section's end. */
  private readonly sections: Uint32Array;
  private readonly columnViews: (ColumnView | undefined)[];

  constructor(readonly body: Buffer, private readonly offset: number) {
    if (body.byteLength < LEAF_HEADER_BYTES) throw corruptAt(offset, 'leaf too short');
    if (body.byteOffset % 8 !== 0) throw new Error('internal: leaf body is not 8-byte aligned');
    this.count = body.readUInt16LE(0);
    this.columns = body.readUInt16LE(2);
    const end = body.byteLength;
    let at = LEAF_HEADER_BYTES;
    if (at + 4 * (this.count + 1) > end) throw corruptAt(offset + at, 'leaf key offsets run past the page');
    this.keyOffsets = new Uint32Array(body.buffer, body.byteOffset + at, this.count + 1);
    at += 4 * (this.count + 1);
    this.keyBase = at;
    checkOffsets(this.keyOffsets, end - at, offset + at, 'key');
    at = pad8(at + this.keyOffsets[this.count]);
    this.sections = new Uint32Array(2 * this.columns);
    for (let c = 0; c < this.columns; c++) {
      if (at + COLUMN_DESCRIPTOR_BYTES > end) throw corruptAt(offset + at, 'leaf column descriptor runs past the page');
      const sectionBytes = body.readUInt32LE(at + 4), sectionEnd = at + COLUMN_DESCRIPTOR_BYTES + sectionBytes;
      if (sectionEnd > end) throw corruptAt(offset + at + COLUMN_DESCRIPTOR_BYTES, 'leaf column runs past the page');
      // Writers pad every section to 8 bytes; views of offsets and numbers rely on that alignment.
      if (sectionBytes % 8 !== 0) throw corruptAt(offset + at + 4, 'leaf column section length is not a multiple of 8');
      this.sections[2 * c] = at;
      this.sections[2 * c + 1] = sectionEnd;
      at = sectionEnd;
    }
    this.columnViews = new Array(this.columns);
  }

  private decodeColumn(c: number): ColumnView {
    const body = this.body, count = this.count, offset = this.offset;
    const at = this.sections[2 * c], sectionEnd = this.sections[2 * c + 1];
    const kind = body[at], flags = body[at + 1], width = body.readUInt16LE(at + 2);
    let p = at + COLUMN_DESCRIPTOR_BYTES;
    const bitmap = () => {
      const bytes = bitmapBytes(count);
      if (p + bytes > sectionEnd) throw corruptAt(offset + p, 'leaf column bitmap runs past its section');
      const view = body.subarray(p, p + bytes);
      p += bytes;
      return view;
    };
    const absent = flags & FLAG_ABSENT ? bitmap() : null;
    if (kind === KIND_FIXED) {
      if (p + count * width > sectionEnd) throw corruptAt(offset + p, 'fixed column runs past its section');
      const data = body.subarray(p, p + count * width);
      // Sections of pages we write are 8-byte aligned; a crafted page's may not be, and reads then take the cell by cell path.
      const f64 = width === 8 && data.byteOffset % 8 === 0 ? new Float64Array(data.buffer, data.byteOffset, count) : null;
      return { kind: 'fixed', width, data, absent, f64 };
    }
    if (kind === KIND_VARIABLE) {
      const overflow = flags & FLAG_OVERFLOW ? bitmap() : null;
      if (p + 4 * (count + 1) > sectionEnd) throw corruptAt(offset + p, 'column offsets run past their section');
      const offsets = new Uint32Array(body.buffer, body.byteOffset + p, count + 1);
      p += 4 * (count + 1);
      checkOffsets(offsets, sectionEnd - p, offset + p, 'cell');
      return { kind: 'variable', offsets, data: body.subarray(p, p + offsets[count]), absent, overflow };
    }
    if (kind === KIND_DICT) {
      const size = width;
      if (size === 0 || size > DICT_MAX_VALUES) throw corruptAt(offset + at + 2, `dictionary column of ${size} values`);
      if (p + 4 * (size + 1) > sectionEnd) throw corruptAt(offset + p, 'dictionary offsets run past their section');
      const offsets = new Uint32Array(body.buffer, body.byteOffset + p, size + 1);
      p += 4 * (size + 1);
      checkOffsets(offsets, sectionEnd - p, offset + p, 'dictionary');
      const data = body.subarray(p, p + offsets[size]);
      p += offsets[size];
      if (p + count > sectionEnd) throw corruptAt(offset + p, 'dictionary codes run past their section');
      const codes = body.subarray(p, p + count);
      for (let i = 0; i < count; i++) if (codes[i] >= size) throw corruptAt(offset + p + i, `dictionary code ${codes[i]} of ${size} values`);
      return { kind: 'dict', size, codes, offsets, data, absent };
    }
    throw corruptAt(offset + at, `unknown column kind ${kind}`);
  }

  compareKey(i: number, key: Buffer): number {
    return compareBytes(this.body, this.keyBase + this.keyOffsets[i], this.keyBase + this.keyOffsets[i + 1], key);
  }

  /** First index whose key is >= key (`after`: > key). */
  search(key: Uint8Array, after: boolean): number {
    if (this.spread === undefined) this.spread = keySpread(this.body, this.keyBase, this.keyOffsets, 0, this.count);
    return searchPacked(this.body, this.keyBase, this.keyOffsets, 0, this.count, key, after, this.spread);
  }

  key(i: number): Buffer {
    return this.body.subarray(this.keyBase + this.keyOffsets[i], this.keyBase + this.keyOffsets[i + 1]);
  }

  column(c: number): ColumnView {
    return this.columnViews[c] ??= this.decodeColumn(c);
  }

  cell(i: number, c: number): StoredCell {
    if (c >= this.columns) return null; // a column added after this leaf was written
    const col = this.column(c);
    if (bitSet(col.absent, i)) return null;
    if (col.kind === 'fixed') return asBuffer(col.data.subarray(i * col.width, (i + 1) * col.width));
    if (col.kind === 'dict') { const code = col.codes[i]; return col.data.subarray(col.offsets[code], col.offsets[code + 1]); }
    const bytes = col.data.subarray(col.offsets[i], col.offsets[i + 1]);
    if (bitSet(col.overflow, i)) {
      if (bytes.byteLength !== OverflowRef.BYTES) throw corruptAt(0, 'bad overflow reference');
      return new OverflowRef(bytes.readUInt32LE(0), bytes.readUInt32LE(4), bytes.readUInt32LE(8));
    }
    return bytes;
  }
}

function checkOffsets(offsets: Uint32Array, available: number, offset: number, what: string): void {
  let prev = offsets[0];
  if (prev !== 0) throw corruptAt(offset, `${what} offsets do not start at 0`);
  for (let i = 1; i < offsets.length; i++) {
    const o = offsets[i];
    if (o < prev || o > available) throw corruptAt(offset, `${what} offset ${i} is out of order or out of range`);
    prev = o;
  }
}

export class BranchView implements BranchLike {
  readonly isLeaf = false as const;
  readonly count: number;
  readonly level: number;
  private readonly children: Uint32Array;
  private readonly keyOffsets: Uint32Array;
  private readonly keyBase: number;
  /** Computed at the first search (undefined until then). */
  private spread: KeySpread | null | undefined = undefined;

  constructor(readonly body: Buffer, offset: number) {
    if (body.byteLength < BRANCH_HEADER_BYTES) throw corruptAt(offset, 'branch too short');
    this.count = body.readUInt16LE(0);
    this.level = body.readUInt16LE(2);
    if (this.count === 0 || this.level === 0) throw corruptAt(offset, 'branch with no children or level 0');
    let at = BRANCH_HEADER_BYTES;
    if (at + 8 * this.count + 4 > body.byteLength) throw corruptAt(offset, 'branch arrays run past the page');
    this.children = new Uint32Array(body.buffer, body.byteOffset + at, this.count);
    at += 4 * this.count;
    this.keyOffsets = new Uint32Array(body.buffer, body.byteOffset + at, this.count + 1);
    at += 4 * (this.count + 1);
    this.keyBase = at;
    checkOffsets(this.keyOffsets, body.byteLength - at, offset + at, 'key');
  }

  compareKey(i: number, key: Buffer): number {
    return compareBytes(this.body, this.keyBase + this.keyOffsets[i], this.keyBase + this.keyOffsets[i + 1], key);
  }
  /** First index from `from` whose key is >= key (`after`: > key). */
  search(key: Uint8Array, after: boolean, from = 0): number {
    // Key 0 is no bound (childIndexFor): the spread starts at key 1, where searches start.
    if (this.spread === undefined) this.spread = keySpread(this.body, this.keyBase, this.keyOffsets, 1, this.count);
    return searchPacked(this.body, this.keyBase, this.keyOffsets, from, this.count, key, after, from >= 1 ? this.spread : null);
  }
  key(i: number): Buffer {
    return this.body.subarray(this.keyBase + this.keyOffsets[i], this.keyBase + this.keyOffsets[i + 1]);
  }
  child(i: number): number {
    return this.children[i];
  }
}

export function decodeNode(body: Buffer, info: PageInfo, offset: number): LeafView | BranchView {
  if (info.type === PageType.Leaf) return new LeafView(body, offset);
  if (info.type === PageType.Branch) return new BranchView(body, offset);
  throw corruptAt(offset, `page ${info.pageNo} is not a B+tree node (type ${info.type})`);
}

// ── mutable nodes (a write transaction's own pages) ───────────────────────────

export class MutableLeaf implements LeafLike, DirtyPage {
  readonly isLeaf = true as const;
  readonly pageType = PageType.Leaf;
  keys: Buffer[];
  rows: PackedRow[];
  /** Upper bound of the encoded body size. */
  bytes: number;

  constructor(public columns: number, keys: Buffer[] = [], rows: PackedRow[] = []) {
    this.keys = keys;
    this.rows = rows;
    this.bytes = leafFixedBytes(columns);
    for (let i = 0; i < keys.length; i++) this.bytes += entryBytes(keys[i], rows[i]);
  }

  /** A mutable copy; `columns` may exceed the node's own (columns added since), padded with absent cells. */
  static from(node: LeafLike, columns = node.columns): MutableLeaf {
    const keys: Buffer[] = [];
    const rows: PackedRow[] = [];
    const row: StoredCell[] = new Array(columns);
    for (let i = 0; i < node.count; i++) {
      keys.push(Buffer.from(node.key(i))); // copy: keys must not pin the page buffer
      for (let c = 0; c < columns; c++) row[c] = node.cell(i, c);
      rows.push(packRow(row));
    }
    return new MutableLeaf(columns, keys, rows);
  }

  get count(): number { return this.keys.length; }
  compareKey(i: number, key: Buffer): number { return compareBytes(this.keys[i], 0, this.keys[i].length, key); }
  key(i: number): Buffer { return this.keys[i]; }
  cell(i: number, c: number): StoredCell { return packedCell(this.rows[i], c); }

  /**
   * The encoded size's bound with each column's layout known (fixed columns carry no offsets,
   * dictionaries counted as offsets + bytes): far closer to encodeInto's result than `bytes`,
   * which counts every cell as variable. O(entries × columns), so only asked when `bytes` is
   * over a page: a leaf that a load filled by this bound is not split by its next update.
   */
  tightBytes(): number {
    const n = this.keys.length;
    let size = LEAF_HEADER_BYTES + 4 * (n + 1) + 7;
    for (let i = 0; i < n; i++) size += this.keys[i].byteLength;
    locateCells(this.rows, this.columns);
    for (let c = 0; c < this.columns; c++) {
      const { cells, total, anyAbsent, anyOverflow } = surveyColumn(n, c * n);
      size += columnBound(n, fixedLayoutWidth(cells, n, total), total, anyAbsent) + (anyOverflow ? bitmapBytes(n) : 0);
    }
    return size;
  }

  /** Columns added to the tree: existing entries read them as absent. */
  widen(columns: number): void {
    if (columns <= this.columns) return;
    this.bytes += leafFixedBytes(columns) - leafFixedBytes(this.columns) + this.keys.length * (columns - this.columns) * 0.25;
    this.columns = columns;
  }

  insert(i: number, key: Buffer, row: PackedRow): void {
    this.keys.splice(i, 0, key);
    this.rows.splice(i, 0, row);
    this.bytes += entryBytes(key, row);
  }

  replace(i: number, row: PackedRow): void {
    this.bytes += entryBytes(this.keys[i], row) - entryBytes(this.keys[i], this.rows[i]);
    this.rows[i] = row;
  }

  remove(i: number): void {
    this.bytes -= entryBytes(this.keys[i], this.rows[i]);
    this.keys.splice(i, 1);
    this.rows.splice(i, 1);
  }

  /** Moves entries [from, count) into a new leaf. */
  splitOff(from: number): MutableLeaf {
    const right = new MutableLeaf(this.columns, this.keys.splice(from), this.rows.splice(from));
    this.bytes -= right.bytes - leafFixedBytes(this.columns);
    return right;
  }

  absorb(right: MutableLeaf): void {
    this.keys.push(...right.keys);
    this.rows.push(...right.rows);
    this.bytes += right.bytes - leafFixedBytes(this.columns);
  }

  encodeInto(body: Uint8Array): number {
    const out = asBuffer(body);
    const n = this.keys.length;
    out.writeUInt16LE(n, 0);
    out.writeUInt16LE(this.columns, 2);
    out.writeUInt32LE(0, 4);
    let at = LEAF_HEADER_BYTES;
    at = writeKeys(out, at, this.keys);
    const keysEnd = at;
    at = pad8(at);
    out.fill(0, keysEnd, at);
    locateCells(this.rows, this.columns);
    for (let c = 0; c < this.columns; c++) at = this.encodeColumn(out, at, c * n);
    return at;
  }

  /**
   * Writes one column straight from the packed rows, located by `locateCells`: entry i's
   * cell starts at cellStarts[base + i] with length word cellLengths[base + i].
   */
  private encodeColumn(out: Buffer, at: number, base: number): number {
    const n = this.keys.length;
    const rows = this.rows;
    const starts = cellStarts, lengths = cellLengths;
    const { cells, total, anyAbsent, anyOverflow } = surveyColumn(n, base);
    const width = fixedLayoutWidth(cells, n, total), fixed = width >= 0;
    const lengthOf = (i: number) => lengths[base + i];
    const dictionary = fixed || anyOverflow ? 0
      : planDictionary(n, total, (i) => (lengthOf(i) === PACKED_ABSENT ? null : rows[i]), (i) => starts[base + i], lengthOf);
    const descriptor = at;
    at = beginColumn(out, at, dictionary > 0 ? KIND_DICT : fixed ? KIND_FIXED : KIND_VARIABLE, dictionary > 0 ? dictionary : Math.max(0, width),
      (anyAbsent ? FLAG_ABSENT : 0) | (anyOverflow ? FLAG_OVERFLOW : 0));
    if (anyAbsent) at = writeBitmap(out, at, n, (i) => lengthOf(i) === PACKED_ABSENT);
    if (dictionary > 0) {
      at = writeDictionary(out, at, n, dictionary);
    } else if (fixed) {
      for (let i = 0; i < n; i++) {
        const dst = at + i * width;
        const len = lengthOf(i);
        if (len === PACKED_ABSENT) { out.fill(0, dst, dst + width); continue; }
        copyBytes(rows[i], starts[base + i], out, dst, width);
      }
      at += n * width;
    } else {
      if (anyOverflow) at = writeBitmap(out, at, n, (i) => lengthOf(i) === PACKED_OVERFLOW);
      const offsetsAt = at;
      let dataAt = at + 4 * (n + 1);
      const dataStart = dataAt;
      for (let i = 0; i < n; i++) {
        out.writeUInt32LE(dataAt - dataStart, offsetsAt + 4 * i);
        const len = lengthOf(i);
        if (len === PACKED_ABSENT) continue;
        const bytes = len === PACKED_OVERFLOW ? OverflowRef.BYTES : len; // an overflow cell's packed payload is its encoded reference
        copyBytes(rows[i], starts[base + i], out, dataAt, bytes);
        dataAt += bytes;
      }
      out.writeUInt32LE(dataAt - dataStart, offsetsAt + 4 * n);
      at = dataAt;
    }
    return endColumn(out, descriptor, at);
  }
}

/**
 * Where each column's cell starts in each packed row (after its u32 length word) and that
 * length word, column-major: -1 start for a row that predates the column. Reused between pages.
 */
let cellStarts = new Int32Array(0);
let cellLengths = new Uint32Array(0);

function locateCells(rows: readonly PackedRow[], columns: number): void {
  const n = rows.length;
  if (cellStarts.length < n * columns) {
    cellStarts = new Int32Array(Math.max(n * columns, cellStarts.length * 2));
    cellLengths = new Uint32Array(cellStarts.length);
  }
  for (let i = 0; i < n; i++) {
    const row = rows[i];
    const present = Math.min(row[0] | (row[1] << 8), columns);
    let at = 2;
    for (let c = 0; c < present; c++) {
      const len = (row[at] | (row[at + 1] << 8) | (row[at + 2] << 16) | (row[at + 3] << 24)) >>> 0;
      cellStarts[c * n + i] = at + 4;
      cellLengths[c * n + i] = len;
      at += 4 + (len === PACKED_ABSENT ? 0 : len === PACKED_OVERFLOW ? OverflowRef.BYTES : len);
    }
    for (let c = present; c < columns; c++) {
      cellStarts[c * n + i] = -1;
      cellLengths[c * n + i] = PACKED_ABSENT;
    }
  }
}

/** Small copies byte by byte (no view objects); large ones through the native copy. */
function copyBytes(src: Buffer, from: number, dst: Buffer, to: number, n: number): void {
  if (n <= 256) {
    for (let k = 0; k < n; k++) dst[to + k] = src[from + k];
  } else {
    src.copy(dst, to, from, from + n);
  }
}

function writeKeys(out: Buffer, at: number, items: readonly Uint8Array[]): number {
  const n = items.length;
  const offsetsAt = at;
  let dataAt = at + 4 * (n + 1);
  const base = dataAt;
  for (let i = 0; i < n; i++) {
    out.writeUInt32LE(dataAt - base, offsetsAt + 4 * i);
    out.set(items[i], dataAt);
    dataAt += items[i].byteLength;
  }
  out.writeUInt32LE(dataAt - base, offsetsAt + 4 * n);
  return dataAt;
}

function writeBitmap(out: Buffer, at: number, n: number, isSet: (i: number) => boolean): number {
  const bytes = bitmapBytes(n);
  out.fill(0, at, at + bytes);
  for (let i = 0; i < n; i++) if (isSet(i)) out[at + (i >> 3)] |= 1 << (i & 7);
  return at + bytes;
}

/** A column's cell width so far: none present yet, or not all one width (or an overflow cell). */
const WIDTH_NONE = -1, WIDTH_MIXED = -2;

/** A located column (locateCells) as its layout choice needs it; one object, refilled by each call. */
const columnSurvey = { cells: WIDTH_NONE, total: 0, anyAbsent: false, anyOverflow: false };

/** The common width of the column's present cells (or WIDTH_NONE / WIDTH_MIXED), their bytes, and whether any is absent or an overflow reference. */
function surveyColumn(n: number, base: number): typeof columnSurvey {
  let cells = WIDTH_NONE, anyAbsent = false, anyOverflow = false, total = 0;
  for (let i = 0; i < n; i++) {
    const len = cellLengths[base + i];
    if (len === PACKED_ABSENT) { anyAbsent = true; continue; }
    if (len === PACKED_OVERFLOW) { anyOverflow = true; cells = WIDTH_MIXED; total += OverflowRef.BYTES; continue; }
    total += len;
    if (cells === WIDTH_NONE) cells = len;
    else if (cells !== len) cells = WIDTH_MIXED;
  }
  columnSurvey.cells = cells; columnSurvey.total = total; columnSurvey.anyAbsent = anyAbsent; columnSurvey.anyOverflow = anyOverflow;
  return columnSurvey;
}

/**
 * The width a column is stored with, or -1 for the variable layout: fixed when every present
 * cell has one width (0 when none is present: a column added later costs only its absent
 * bitmap), and only when that is no larger than offsets + bytes, so `bytes` stays an upper bound.
 */
function fixedLayoutWidth(cells: number, n: number, total: number): number {
  if (cells === WIDTH_NONE) return 0;
  if (cells === WIDTH_MIXED || cells > 0xffff) return -1;
  if (cells > 0 && n * cells > 4 * (n + 1) + total) return -1;
  return cells;
}

/** A column's bytes in a leaf (descriptor and padding included) stored `width` wide, or with offsets when -1. */
function columnBound(n: number, width: number, total: number, anyAbsent: boolean): number {
  return COLUMN_DESCRIPTOR_BYTES + (anyAbsent ? bitmapBytes(n) : 0) + (width >= 0 ? n * width : 4 * (n + 1) + total) + 7;
}

/**
 * Writes a column's descriptor (its section length comes in endColumn); returns where the
 * section starts. `width`: the cell width of a fixed column, the dictionary size of a dict one.
 */
function beginColumn(out: Buffer, at: number, kind: number, width: number, flags: number): number {
  out.fill(0, at, at + COLUMN_DESCRIPTOR_BYTES);
  out[at] = kind;
  out[at + 1] = flags;
  out.writeUInt16LE(width, at + 2);
  return at + COLUMN_DESCRIPTOR_BYTES;
}

// The dictionary of the column being encoded (planDictionary → writeDictionary): each distinct
// value's source bytes in first-seen order and each cell's code. Module scratch, reused.
let dictCodes = new Uint8Array(1024);
const dictSources: Uint8Array[] = [];
const dictStarts: number[] = [];
const dictLengths: number[] = [];
// Open addressing over the values' bytes (no string per cell): slot → code + 1, 0 when empty.
const DICT_SLOTS = 1024;
const dictSlots = new Int16Array(DICT_SLOTS);

/** FNV-1a of `len` bytes of `src` from `start`. */
function hashBytes(src: Uint8Array, start: number, len: number): number {
  let h = 0x811c9dc5;
  for (let k = 0; k < len; k++) h = Math.imul(h ^ src[start + k], 0x01000193);
  return h >>> 0;
}

/** The code of the value (src, start, len) in the dictionary being planned, adding it when new; -1 when the dictionary is full. */
function dictionaryCode(src: Uint8Array, start: number, len: number): number {
  for (let slot = hashBytes(src, start, len) & (DICT_SLOTS - 1); ; slot = (slot + 1) & (DICT_SLOTS - 1)) {
    const code = dictSlots[slot] - 1;
    if (code < 0) {
      const next = dictSources.length;
      if (next >= DICT_MAX_VALUES) return -1;
      dictSlots[slot] = next + 1;
      dictSources.push(src);
      dictStarts.push(start);
      dictLengths.push(len);
      return next;
    }
    if (dictLengths[code] !== len) continue;
    const other = dictSources[code], at = dictStarts[code];
    let k = 0;
    while (k < len && other[at + k] === src[start + k]) k++;
    if (k === len) return code;
  }
}

/**
 * The dictionary size for a column of n cells (`variableBytes` of cell bytes in all) when the
 * dictionary layout is smaller than offsets + bytes, else 0. A cell is `lengthOf(i)` bytes of
 * `sourceOf(i)` from `startOf(i)`, or absent when its source is null. Columns with cells longer
 * than DICT_MAX_CELL_BYTES, or with many distinct values early on, are not tried. The choice
 * depends only on the cells in order, so MutableLeaf and AppendLeaf make the same bytes.
 */
function planDictionary(n: number, variableBytes: number, sourceOf: (i: number) => Uint8Array | null,
  startOf: (i: number) => number, lengthOf: (i: number) => number): number {
  forgetDictionary();
  if (dictCodes.length < n) dictCodes = new Uint8Array(Math.max(n, 2 * dictCodes.length));
  let valueBytes = 0, present = 0;
  for (let i = 0; i < n; i++) {
    const src = sourceOf(i);
    if (src === null) { dictCodes[i] = 0; continue; }
    const start = startOf(i), len = lengthOf(i);
    if (len > DICT_MAX_CELL_BYTES) return forgetDictionary();
    const size = dictSources.length;
    const code = dictionaryCode(src, start, len);
    if (code < 0) return forgetDictionary();
    if (code === size) valueBytes += len;
    dictCodes[i] = code;
    if (++present === DICT_SAMPLE_CELLS && dictSources.length > DICT_SAMPLE_DISTINCT) return forgetDictionary();
  }
  const size = dictSources.length;
  if (size === 0 || 4 * (size + 1) + valueBytes + n >= 4 * (n + 1) + variableBytes) return forgetDictionary();
  dictSlots.fill(0);
  return size;
}

function forgetDictionary(): 0 {
  dictSlots.fill(0);
  dictSources.length = dictStarts.length = dictLengths.length = 0;
  return 0;
}

/** u32 offsets[size+1], the values, then one code byte per cell (the planned dictionary). */
function writeDictionary(out: Buffer, at: number, n: number, size: number): number {
  let dataAt = at + 4 * (size + 1);
  const base = dataAt;
  for (let k = 0; k < size; k++) {
    out.writeUInt32LE(dataAt - base, at + 4 * k);
    copyBytes(dictSources[k] as Buffer, dictStarts[k], out, dataAt, dictLengths[k]);
    dataAt += dictLengths[k];
  }
  out.writeUInt32LE(dataAt - base, at + 4 * size);
  out.set(dictCodes.subarray(0, n), dataAt);
  dictSources.length = 0; // do not keep the rows' buffers alive
  return dataAt + n;
}

/** Pads the column section that ends at `end` to 8 bytes and records its length; returns where the next starts. */
function endColumn(out: Buffer, descriptor: number, end: number): number {
  const at = pad8(end);
  out.fill(0, end, at);
  out.writeUInt32LE(at - descriptor - COLUMN_DESCRIPTOR_BYTES, descriptor + 4);
  return at;
}

/**
 * The cell count of a packed row, or -1 when it holds an overflow reference (a row only the
 * general leaf form stores).
 */
export function plainCellCount(row: Uint8Array): number {
  const n = row[0] | (row[1] << 8);
  let at = 2;
  for (let c = 0; c < n; c++) {
    const len = (row[at] | (row[at + 1] << 8) | (row[at + 2] << 16) | (row[at + 3] << 24)) >>> 0;
    if (len === PACKED_OVERFLOW) return -1;
    at += 4 + (len === PACKED_ABSENT ? 0 : len);
  }
  return n;
}

/** Bytes appended one after the other, with the end offset of each item. */
class ByteRun {
  data: Buffer;
  view: DataView;
  used = 0;
  /** Where the last item ends (bytes past it are a staged cell's). */
  committed = 0;
  ends: Uint32Array;

  constructor(bytes: number, items: number) {
    this.data = Buffer.allocUnsafe(Math.max(64, bytes));
    this.view = new DataView(this.data.buffer, this.data.byteOffset, this.data.byteLength);
    this.ends = new Uint32Array(Math.max(16, items));
  }

  start(i: number): number { return i === 0 ? 0 : this.ends[i - 1]; }

  /** Room for `len` more bytes after `used`. */
  reserve(len: number): void {
    if (this.used + len <= this.data.byteLength) return;
    const grown = Buffer.allocUnsafe(Math.max(2 * this.data.byteLength, this.used + len));
    this.data.copy(grown, 0, 0, this.used);
    this.data = grown;
    this.view = new DataView(grown.buffer, grown.byteOffset, grown.byteLength);
  }

  /** Item i ends where the bytes written so far end. */
  end(i: number): void {
    if (i >= this.ends.length) {
      const grown = new Uint32Array(2 * this.ends.length);
      grown.set(this.ends);
      this.ends = grown;
    }
    this.ends[i] = this.committed = this.used;
  }

  /** Appends `len` bytes of `src` at `from` as item i. */
  push(i: number, src: Uint8Array, from: number, len: number): void {
    this.reserve(len);
    copyBytes(src as Buffer, from, this.data, this.used, len);
    this.used += len;
    this.end(i);
  }
}

/** What AppendLeaf.commitStaged did with the staged entry. */
export enum Staged { Appended, Full, TooLarge, WrongColumns }

/**
 * A staged entry of an AppendLeaf: the CellSink calls write its cells straight onto the ends of
 * the leaf's column runs, past the committed bytes; AppendLeaf.commitStaged keeps them when the
 * leaf still fits, dropStaged forgets them. A load so copies each value once, from the row
 * into the leaf.
 */
class StagedCells implements CellSink {
  /** The column the next cell goes to. */
  column = 0;
  /** Per column: 1 when the staged cell is absent. */
  readonly isAbsent: Uint8Array;

  constructor(private readonly runs: readonly ByteRun[]) {
    this.isAbsent = new Uint8Array(runs.length);
  }

  /** Moves to the next column, marking its cell absent (1) or present (0); returns the column. */
  private next(absent: 0 | 1): number {
    const c = this.column++;
    if (c >= this.runs.length) throw new RangeError('internal: more cells than the leaf has columns');
    this.isAbsent[c] = absent;
    return c;
  }

  /** The run of the next cell, with room for `bytes` more. */
  private cell(bytes: number): ByteRun {
    const run = this.runs[this.next(0)];
    run.reserve(bytes);
    return run;
  }

  absent(): void {
    this.next(1);
  }

  float64(v: number): void {
    const run = this.cell(8);
    run.view.setFloat64(run.used, v, true);
    run.used += 8;
  }

  int64(v: bigint): void {
    const run = this.cell(8);
    run.view.setBigInt64(run.used, v, true);
    run.used += 8;
  }

  byte(v: number): void {
    const run = this.cell(1);
    run.data[run.used++] = v;
  }

  utf8(v: string): void {
    const run = this.cell(3 * v.length);
    run.used += writeUtf8(run.data, run.used, v);
  }

  bytes(v: Uint8Array): void {
    const run = this.cell(v.byteLength);
    run.data.set(v, run.used);
    run.used += v.byteLength;
  }

  copy(src: Uint8Array, from: number, len: number): void {
    const run = this.cell(len);
    copyBytes(src as Buffer, from, run.data, run.used, len);
    run.used += len;
  }
}

/**
 * The rightmost leaf of a tree being loaded in key order, built column by column: an appended
 * entry's key and cells are copied onto the ends of per-column byte runs (no object per
 * entry, no search, no splice), and encoding the page is one copy per column. It encodes to
 * exactly the bytes a MutableLeaf with the same entries would. Holds no overflow references;
 * any other change to it goes through a MutableLeaf copy.
 */
export class AppendLeaf implements LeafLike, DirtyPage {
  readonly isLeaf = true as const;
  readonly pageType = PageType.Leaf;
  count = 0;
  /** Upper bound of the encoded body size, as MutableLeaf.bytes. */
  bytes: number;
  private readonly keys: ByteRun;
  private readonly cells: ByteRun[];
  /** Per column: bit i set = entry i's cell is absent; null while none is. */
  private readonly absent: (Uint8Array | null)[];
  /** Per column: the width every present cell has so far (WIDTH_NONE, WIDTH_MIXED). */
  private readonly widths: Int32Array;
  private readonly staged: StagedCells;

  /** `like`: an earlier leaf of the same load, whose sizes the new one starts with. */
  constructor(readonly columns: number, like?: AppendLeaf) {
    this.bytes = leafFixedBytes(columns);
    const items = like ? like.count + 1 : 64;
    // Room for what the last leaf held and some more: staged cells reserve their worst case
    // (3 bytes a UTF-16 unit), and a run that must grow is copied whole.
    const room = (used: number) => used + (used >> 3) + 256;
    this.keys = new ByteRun(like ? room(like.keys.used) : 1024, items);
    this.cells = Array.from({ length: columns }, (_, c) => new ByteRun(like ? room(like.cells[c].used) : 1024, items));
    this.absent = new Array(columns).fill(null);
    this.widths = new Int32Array(columns).fill(WIDTH_NONE);
    this.staged = new StagedCells(this.cells);
  }

  /** Starts a staged entry: write its cells into the returned sink, then commitStaged. */
  beginStaged(): CellSink {
    this.staged.column = 0;
    return this.staged;
  }

  /**
   * Keeps the staged entry under `key` (above every key the leaf holds) when it has a cell for
   * every column, its entry is at most `maxEntryBytes` (entryBytes of its packed form) and the
   * leaf's encoding with it stays within `capacity` (the bound tryAppend uses); otherwise drops
   * it and says why.
   */
  commitStaged(key: Uint8Array, capacity: number, maxEntryBytes: number): Staged {
    const columns = this.columns, count = this.count, n = count + 1;
    const staged = this.staged;
    if (staged.column !== columns) { this.dropStaged(); return Staged.WrongColumns; }
    let size = LEAF_HEADER_BYTES + 4 * (n + 1) + this.keys.used + key.byteLength + 7;
    let entry = 4 + key.byteLength + columns * 0.25;
    for (let c = 0; c < columns; c++) {
      const run = this.cells[c], used = run.committed, w = this.widths[c];
      if (staged.isAbsent[c] === 1) {
        entry += 4;
        size += columnBound(n, fixedLayoutWidth(w, n, used), used, true);
        continue;
      }
      const len = run.used - used;
      entry += 4 + len;
      const width = w === WIDTH_NONE || w === len ? len : WIDTH_MIXED;
      size += columnBound(n, fixedLayoutWidth(width, n, used + len), used + len, this.absent[c] !== null);
    }
    if (entry > maxEntryBytes) { this.dropStaged(); return Staged.TooLarge; }
    if (size > capacity) { this.dropStaged(); return Staged.Full; }
    this.keys.push(count, key, 0, key.byteLength);
    for (let c = 0; c < columns; c++) {
      const run = this.cells[c];
      if (staged.isAbsent[c] === 1) {
        this.markAbsent(c, count);
      } else {
        const len = run.used - run.committed, w = this.widths[c];
        if (w === WIDTH_NONE) this.widths[c] = len;
        else if (w !== len) this.widths[c] = WIDTH_MIXED;
      }
      run.end(count);
    }
    this.count = n;
    this.bytes += entry;
    return Staged.Appended;
  }

  /** Forgets the staged entry's cells. */
  dropStaged(): void {
    for (let c = 0; c < this.columns; c++) this.cells[c].used = this.cells[c].committed;
    this.staged.column = 0;
  }

  private markAbsent(c: number, i: number): void {
    let bits = this.absent[c];
    if (bits === null || bits.byteLength <= i >> 3) {
      const grown = new Uint8Array(Math.max(16, 2 * ((i >> 3) + 1)));
      if (bits !== null) grown.set(bits);
      this.absent[c] = bits = grown;
    }
    bits[i >> 3] |= 1 << (i & 7);
  }

  /**
   * Appends the entry when the leaf's encoding with it stays within `capacity` bytes, by the
   * bound MutableLeaf.tightBytes computes (kept here column by column as entries arrive);
   * false, changing nothing, when it would not. `row` has `columns` cells and no overflow
   * (plainCellCount).
   */
  tryAppend(key: Uint8Array, row: PackedRow, capacity: number): boolean {
    writePackedCells(this.beginStaged(), row);
    return this.commitStaged(key, capacity, Infinity) === Staged.Appended;
  }

  /** Appends an entry above every key it holds, whatever its size; `row` as for tryAppend. */
  append(key: Uint8Array, row: PackedRow): void {
    writePackedCells(this.beginStaged(), row);
    if (this.commitStaged(key, Infinity, Infinity) !== Staged.Appended) throw new Error('internal: a packed row without a cell per column');
  }

  compareKey(i: number, key: Buffer): number {
    return compareBytes(this.keys.data, this.keys.start(i), this.keys.ends[i], key);
  }

  key(i: number): Buffer {
    return this.keys.data.subarray(this.keys.start(i), this.keys.ends[i]);
  }

  cell(i: number, c: number): StoredCell {
    if (c >= this.columns || bitSet(this.absent[c], i)) return null;
    const run = this.cells[c];
    return run.data.subarray(run.start(i), run.ends[i]);
  }

  encodeInto(body: Uint8Array): number {
    const out = asBuffer(body);
    const n = this.count;
    out.writeUInt16LE(n, 0);
    out.writeUInt16LE(this.columns, 2);
    out.writeUInt32LE(0, 4);
    let at = writeRun(out, LEAF_HEADER_BYTES, this.keys, n);
    const keysEnd = at;
    at = pad8(at);
    out.fill(0, keysEnd, at);
    for (let c = 0; c < this.columns; c++) at = this.encodeColumn(out, at, c);
    return at;
  }

  /** MutableLeaf.encodeColumn's layout, from the column's run instead of packed rows. */
  private encodeColumn(out: Buffer, at: number, c: number): number {
    const n = this.count, run = this.cells[c], bits = this.absent[c];
    const width = fixedLayoutWidth(this.widths[c], n, run.used), fixed = width >= 0;
    const dictionary = fixed ? 0
      : planDictionary(n, run.used, (i) => (bitSet(bits, i) ? null : run.data), (i) => run.start(i), (i) => run.ends[i] - run.start(i));
    const descriptor = at;
    at = beginColumn(out, at, dictionary > 0 ? KIND_DICT : fixed ? KIND_FIXED : KIND_VARIABLE, dictionary > 0 ? dictionary : Math.max(0, width),
      bits !== null ? FLAG_ABSENT : 0);
    if (bits !== null) at = writeBitmap(out, at, n, (i) => bitSet(bits, i));
    if (dictionary > 0) {
      at = writeDictionary(out, at, n, dictionary);
    } else if (fixed) {
      if (bits === null) run.data.copy(out, at, 0, run.used); // present cells of one width, back to back
      else {
        for (let i = 0; i < n; i++) {
          const dst = at + i * width;
          if (bitSet(bits, i)) out.fill(0, dst, dst + width);
          else copyBytes(run.data, run.start(i), out, dst, width);
        }
      }
      at += n * width;
    } else {
      at = writeRun(out, at, run, n);
    }
    return endColumn(out, descriptor, at);
  }
}

/** u32 offsets[n+1] then the run's bytes (the layout writeKeys makes). */
function writeRun(out: Buffer, at: number, run: ByteRun, n: number): number {
  for (let i = 0; i <= n; i++) out.writeUInt32LE(i === 0 ? 0 : run.ends[i - 1], at + 4 * i);
  at += 4 * (n + 1);
  run.data.copy(out, at, 0, run.used);
  return at + run.used;
}

/**
 * A modified leaf the transaction has finished filling (the left half of a split at the right
 * edge, as sorted loads make them), kept in page form until it is written: its exact page
 * bytes instead of two objects per entry, so a bulk load's unwritten pages cost what they
 * weigh and give the garbage collector nothing to trace. Modifying it again turns it back
 * into a MutableLeaf.
 */
export class EncodedLeaf implements DirtyPage {
  readonly pageType = PageType.Leaf;
  readonly view: LeafView;

  private constructor(private readonly body: Buffer) {
    this.view = new LeafView(body, 0);
  }

  static of(leaf: MutableLeaf | AppendLeaf): EncodedLeaf {
    const buffer = alignedBufferUnsafe(pad8(Math.ceil(leaf.bytes)));
    return new EncodedLeaf(buffer.subarray(0, leaf.encodeInto(buffer)));
  }

  encodeInto(body: Uint8Array): number {
    body.set(this.body);
    return this.body.byteLength;
  }
}

export class MutableBranch implements BranchLike, DirtyPage {
  readonly isLeaf = false as const;
  readonly pageType = PageType.Branch;
  bytes: number;

  constructor(readonly level: number, public keys: Buffer[], public children: number[]) {
    this.bytes = BRANCH_HEADER_BYTES + 4;
    for (const k of keys) this.bytes += 8 + k.byteLength;
  }

  static from(node: BranchLike): MutableBranch {
    const keys: Buffer[] = [], children: number[] = [];
    for (let i = 0; i < node.count; i++) {
      keys.push(Buffer.from(node.key(i)));
      children.push(node.child(i));
    }
    return new MutableBranch(node.level, keys, children);
  }

  get count(): number { return this.children.length; }
  compareKey(i: number, key: Buffer): number { return compareBytes(this.keys[i], 0, this.keys[i].length, key); }
  key(i: number): Buffer { return this.keys[i]; }
  child(i: number): number { return this.children[i]; }

  insert(i: number, key: Buffer, child: number): void {
    this.keys.splice(i, 0, key);
    this.children.splice(i, 0, child);
    this.bytes += 8 + key.byteLength;
  }

  remove(i: number): void {
    this.bytes -= 8 + this.keys[i].byteLength;
    this.keys.splice(i, 1);
    this.children.splice(i, 1);
  }

  setKey(i: number, key: Buffer): void {
    this.bytes += key.byteLength - this.keys[i].byteLength;
    this.keys[i] = key;
  }

  splitOff(from: number): MutableBranch {
    const right = new MutableBranch(this.level, this.keys.splice(from), this.children.splice(from));
    this.bytes -= right.bytes - (BRANCH_HEADER_BYTES + 4);
    return right;
  }

  absorb(right: MutableBranch): void {
    this.keys.push(...right.keys);
    this.children.push(...right.children);
    this.bytes += right.bytes - (BRANCH_HEADER_BYTES + 4);
  }

  encodeInto(body: Uint8Array): number {
    const out = asBuffer(body);
    const n = this.children.length;
    out.writeUInt16LE(n, 0);
    out.writeUInt16LE(this.level, 2);
    out.writeUInt32LE(0, 4);
    let at = BRANCH_HEADER_BYTES;
    for (let i = 0; i < n; i++) out.writeUInt32LE(this.children[i], at + 4 * i);
    at += 4 * n;
    return writeKeys(out, at, this.keys);
  }
}

export const branchFixedBytes = BRANCH_HEADER_BYTES + 4;
