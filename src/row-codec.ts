// Rows ↔ leaf cells. Each top-level field is one column of the collection's tree: numbers
// and timestamps as 8-byte float64 (fixed-width columns a scan reads as a Float64Array),
// bigints as int64, booleans as one byte, strings as UTF-8, bytes raw; lists, objects and json
// as msgpack. Nested objects are stored as arrays in schema order (the record structure is the
// schema kept in the catalog), so rows carry no field names.
import { Packr } from 'msgpackr/pack'; // under Node, msgpackr's JS build: its native string extractor is not loaded
import { readOverflowSync, resolveRowSync, type Cell } from '../storage/btree.js';
import { LeafView, OverflowRef, PackedRowBuilder, bitSet, type CellSink, type LeafLike, type PackedRow } from '../storage/btree-node.js';
import type { Pager } from '../storage/pager.js';
import { dictionaryCacheOf, dictionaryString, utf8Slice } from '../operators/scan-op.js';
import { ModelVaultError } from '../storage/errors.js';
import type { FieldSpec } from './types.js';

// copyBuffers: binary inside json/list values gets its own memory, never a view of the page
// (a scan may read leaves into a buffer it reuses).
const packr = new Packr({ useRecords: false, int64AsType: 'bigint', moreTypes: true, copyBuffers: true });
/** Shared by every codec: rows are encoded one at a time, synchronously. */
const builder = new PackedRowBuilder();

export interface ColumnCodec {
  readonly field: string;
  readonly spec: FieldSpec;
  encode(value: unknown): Uint8Array;
  /** The same bytes as `encode`, written to a packed row or a leaf's column. */
  encodeInto(b: CellSink, value: unknown): void;
  decode(cell: Uint8Array): unknown;
}

function toStorageForm(spec: FieldSpec, v: unknown): unknown {
  if (v === undefined) return undefined;
  switch (spec.kind) {
    case 'float':
      return Object.is(v, -0) ? new Float64Array([-0]) : v; // msgpack would store -0 as the integer 0
    case 'list':
      return (v as unknown[]).map((x) => toStorageForm(spec.element!, x));
    case 'object':
      return Object.entries(spec.shape!).map(([k, s]) => toStorageForm(s, (v as Record<string, unknown>)[k]));
    default:
      return v;
  }
}

function fromStorageForm(spec: FieldSpec, v: unknown, path: string): unknown {
  if (v === undefined) return undefined;
  switch (spec.kind) {
    case 'float':
      if (v instanceof Float64Array) return v[0];
      if (typeof v !== 'number') throw corruptValue(path);
      return v;
    case 'int':
      if (typeof v !== 'number') throw corruptValue(path);
      return v;
    case 'timestamp':
      if (!(v instanceof Date)) throw corruptValue(path);
      return v;
    case 'bytes':
      if (!(v instanceof Uint8Array)) throw corruptValue(path);
      return new Uint8Array(v);
    case 'list':
      if (!Array.isArray(v)) throw corruptValue(path);
      return v.map((x, i) => fromStorageForm(spec.element!, x, `${path}.${i}`));
    case 'object': {
      if (!Array.isArray(v)) throw corruptValue(path);
      const out: Record<string, unknown> = {};
      Object.entries(spec.shape!).forEach(([k, s], i) => {
        const x = fromStorageForm(s, v[i], `${path}.${k}`);
        if (x !== undefined) out[k] = x;
        else if (s.hasDefault) out[k] = structuredClone(s.defaultValue);
      });
      return out;
    }
    default:
      return v;
  }
}

const corruptValue = (path: string) => new ModelVaultError('CORRUPT', `stored value of ${path} does not match its type`, { path, offset: -1 });

export function columnCodec(field: string, spec: FieldSpec): ColumnCodec {
  const f64 = {
    encode: (v: unknown) => { const b = Buffer.allocUnsafe(8); b.writeDoubleLE(v as number, 0); return b; },
    decode: (c: Uint8Array) => { if (c.byteLength !== 8) throw corruptValue(field); return Buffer.from(c.buffer, c.byteOffset, 8).readDoubleLE(0); },
  };
  switch (spec.kind) {
    case 'int':
    case 'float':
      return { field, spec, ...f64, encodeInto: (b, v) => b.float64(v as number) };
    case 'timestamp':
      return {
        field, spec,
        encode: (v) => f64.encode((v as Date).getTime()),
        encodeInto: (b, v) => b.float64((v as Date).getTime()),
        decode: (c) => new Date(f64.decode(c)),
      };
    case 'bigint':
      return {
        field, spec,
        encode: (v) => { const b = Buffer.allocUnsafe(8); b.writeBigInt64LE(v as bigint, 0); return b; },
        encodeInto: (b, v) => b.int64(v as bigint),
        decode: (c) => { if (c.byteLength !== 8) throw corruptValue(field); return Buffer.from(c.buffer, c.byteOffset, 8).readBigInt64LE(0); },
      };
    case 'bool':
      return {
        field, spec,
        encode: (v) => Uint8Array.of(v ? 1 : 0),
        encodeInto: (b, v) => b.byte(v ? 1 : 0),
        decode: (c) => { if (c.byteLength !== 1) throw corruptValue(field); return c[0] === 1; },
      };
    case 'string':
    case 'uuid':
    case 'enum':
      return {
        field, spec,
        encode: (v) => Buffer.from(v as string, 'utf8'),
        encodeInto: (b, v) => b.utf8(v as string),
        decode: (c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength).toString('utf8'),
      };
    case 'bytes':
      return { field, spec, encode: (v) => v as Uint8Array, encodeInto: (b, v) => b.bytes(v as Uint8Array), decode: (c) => new Uint8Array(c) };
    case 'list':
    case 'object':
    case 'json':
      return {
        field, spec,
        encode: (v) => packr.pack(toStorageForm(spec, v)),
        encodeInto: (b, v) => b.bytes(packr.pack(toStorageForm(spec, v))),
        decode: (c) => {
          let raw: unknown;
          try {
            raw = packr.unpack(c);
          } catch (err) {
            throw new ModelVaultError('CORRUPT', `stored value of ${field} is not valid msgpack`, { path: field, offset: -1 }, { cause: err });
          }
          return fromStorageForm(spec, raw, field);
        },
      };
  }
}

const ENCODE_OTHER = 0, ENCODE_F64 = 1, ENCODE_TIMESTAMP = 2, ENCODE_UTF8 = 3;

function encodeKindOf(spec: FieldSpec): number {
  switch (spec.kind) {
    case 'int': case 'float': return ENCODE_F64;
    case 'timestamp': return ENCODE_TIMESTAMP;
    case 'string': case 'uuid': case 'enum': return ENCODE_UTF8;
    default: return ENCODE_OTHER;
  }
}

type DecodeAtPresent = (leaf: LeafView, i: number) => Record<string, unknown> | null;

/**
 * A point get's row decoder compiled for one column list: every value read into a local, then
 * one object literal, so each row gets one hidden class instead of a transition per field
 * (assigning fields one by one was a quarter of a cached point get). It returns null, and the
 * caller takes the general path, at the first cell it does not handle: an absent cell (which
 * may take a default or stay absent), an overflow value, a layout other than the expected one.
 * Null when a field name cannot be an object-literal key (`__proto__` would set the prototype).
 */
function compileDecodeAt(columns: readonly ColumnCodec[], kinds: Uint8Array): DecodeAtPresent | null {
  if (columns.length === 0 || columns.some((c) => c.field === '__proto__')) return null;
  const body: string[] = ['let a;'];
  const absentCheck = (k: number) => `if ((a = c${k}.absent) !== null && (a[i >> 3] & (1 << (i & 7))) !== 0) return null;`;
  columns.forEach((_col, k) => {
    switch (kinds[k]) {
      case ENCODE_F64:
      case ENCODE_TIMESTAMP:
        body.push(`const c${k} = leaf.column(${k});`, absentCheck(k), `if (c${k}.kind !== 'fixed' || c${k}.f64 === null) return null;`,
          kinds[k] === ENCODE_F64 ? `const v${k} = c${k}.f64[i];` : `const v${k} = new Date(c${k}.f64[i]);`);
        break;
      case ENCODE_UTF8:
        body.push(`const c${k} = leaf.column(${k});`, absentCheck(k), `let v${k};`,
          `if (c${k}.kind === 'fixed') v${k} = utf8Slice(c${k}.data, i * c${k}.width, (i + 1) * c${k}.width);`,
          `else if (c${k}.kind === 'dict') v${k} = dictionaryString(c${k}, dictionaryCacheOf(c${k}), c${k}.codes[i]);`,
          `else if ((a = c${k}.overflow) !== null && (a[i >> 3] & (1 << (i & 7))) !== 0) return null;`,
          `else v${k} = utf8Slice(c${k}.data, c${k}.offsets[i], c${k}.offsets[i + 1]);`);
        break;
      default:
        body.push(`const x${k} = leaf.cell(i, ${k});`, `if (x${k} === null || x${k} instanceof OverflowRef) return null;`, `const v${k} = decoders[${k}](x${k});`);
    }
  });
  body.push(`return { ${columns.map((c, k) => `${JSON.stringify(c.field)}: v${k}`).join(', ')} };`);
  const make = new Function('utf8Slice', 'dictionaryString', 'dictionaryCacheOf', 'OverflowRef', 'decoders', `return function decodeAtPresent(leaf, i) {\n${body.join('\n')}\n};`);
  return make(utf8Slice, dictionaryString, dictionaryCacheOf, OverflowRef, columns.map((c) => c.decode)) as DecodeAtPresent;
}

/** Encodes and decodes whole rows of one collection, column order fixed by the catalog. */
export class RowCodec {
  readonly columns: readonly ColumnCodec[];
  private readonly byField = new Map<string, number>();
  private readonly fieldNames: readonly string[];
  private readonly encodeKinds: Uint8Array;
  /** decodeAt for a leaf holding every column and a row with every cell present (see compileDecodeAt). */
  private readonly decodeAtPresent: DecodeAtPresent | null;

  constructor(columnFields: readonly string[], fields: Readonly<Record<string, FieldSpec>>) {
    this.columns = columnFields.map((f, i) => {
      this.byField.set(f, i);
      return columnCodec(f, fields[f]);
    });
    this.fieldNames = [...columnFields];
    this.encodeKinds = Uint8Array.from(columnFields, (f) => encodeKindOf(fields[f]));
    this.decodeAtPresent = compileDecodeAt(this.columns, this.encodeKinds);
  }

  columnOf(field: string): number {
    const i = this.byField.get(field);
    if (i === undefined) throw new Error(`internal: no column for ${field}`);
    return i;
  }

  encode(row: Record<string, unknown>): Cell[] {
    return this.columns.map((col) => {
      const v = row[col.field];
      return v === undefined ? null : col.encode(v);
    });
  }

  /**
   * `packRow(encode(row))` in one pass, into a scratch buffer shared by every codec: valid until
   * the next encode, so a caller that keeps the row copies it.
   */
  encodeScratch(row: Record<string, unknown>): PackedRow {
    builder.begin(this.fieldNames.length);
    this.encodeCells(row, builder);
    return builder.current();
  }

  /** Writes the row's cells, one per column in order, to `b`. */
  encodeCells(row: Record<string, unknown>, b: CellSink): void {
    const fields = this.fieldNames, kinds = this.encodeKinds;
    for (let i = 0; i < fields.length; i++) {
      const v = row[fields[i]];
      if (v === undefined) { b.absent(); continue; }
      // A switch on a small integer keeps this loop monomorphic; the closures are the general case.
      switch (kinds[i]) {
        case ENCODE_F64: b.float64(v as number); break;
        case ENCODE_TIMESTAMP: b.float64((v as Date).getTime()); break;
        case ENCODE_UTF8: b.utf8(v as string); break;
        default: this.columns[i].encodeInto(b, v);
      }
    }
  }

  /**
   * `decode(resolveRowSync(pager, leaf, i))` read in place: numbers straight from the page,
   * strings from its bytes, no Buffer per cell (a point get's row).
   */
  decodeAt(pager: Pager, leaf: LeafLike, i: number): Record<string, unknown> {
    if (!(leaf instanceof LeafView)) return this.decode(resolveRowSync(pager, leaf, i));
    if (this.decodeAtPresent !== null && leaf.columns >= this.columns.length) {
      const row = this.decodeAtPresent(leaf, i);
      if (row !== null) return row;
    }
    return this.decodeAtEach(pager, leaf, i);
  }

  /** decodeAt's general form: column by column, absent cells (and their defaults) and overflow values included. */
  private decodeAtEach(pager: Pager, leaf: LeafView, i: number): Record<string, unknown> {
    const row: Record<string, unknown> = {};
    for (let c = 0; c < this.columns.length; c++) {
      const col = this.columns[c];
      const view = c < leaf.columns ? leaf.column(c) : null;
      if (view === null || bitSet(view.absent, i)) {
        if (col.spec.hasDefault) row[col.field] = structuredClone(col.spec.defaultValue);
        continue;
      }
      const kind = this.encodeKinds[c];
      if (view.kind === 'fixed' && view.f64 !== null && (kind === ENCODE_F64 || kind === ENCODE_TIMESTAMP)) {
        const v = view.f64[i];
        row[col.field] = kind === ENCODE_F64 ? v : new Date(v);
      } else if (kind === ENCODE_UTF8 && view.kind === 'fixed') {
        row[col.field] = utf8Slice(view.data as Buffer, i * view.width, (i + 1) * view.width);
      } else if (kind === ENCODE_UTF8 && view.kind === 'dict') {
        row[col.field] = dictionaryString(view, dictionaryCacheOf(view), view.codes[i]);
      } else if (kind === ENCODE_UTF8 && view.kind === 'variable' && !bitSet(view.overflow, i)) {
        row[col.field] = utf8Slice(view.data, view.offsets[i], view.offsets[i + 1]);
      } else {
        const cell = leaf.cell(i, c);
        row[col.field] = col.decode(cell instanceof OverflowRef ? readOverflowSync(pager, cell) : cell!);
      }
    }
    return row;
  }

  decode(cells: readonly Cell[]): Record<string, unknown> {
    const row: Record<string, unknown> = {};
    for (let i = 0; i < this.columns.length; i++) {
      const col = this.columns[i];
      const cell = i < cells.length ? cells[i] : null;
      if (cell !== null) row[col.field] = col.decode(cell);
      else if (col.spec.hasDefault) row[col.field] = structuredClone(col.spec.defaultValue);
    }
    return row;
  }
}
