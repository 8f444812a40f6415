// Batches in spill runs: msgpack of the vectors (typed arrays stay typed arrays), so a run
// holds the same columnar form the operators work on. A column of strings (absent allowed) is
// one UTF-8 blob plus the strings' lengths: msgpack spent most of a sort's spill time packing
// strings one by one, while one join + one encode, and one decode + substrings, are cheap.
import { Packr } from 'msgpackr/pack'; // under Node, msgpackr's JS build: its native string extractor is not loaded
import { ModelVaultError } from '../storage/errors.js';
import type { Batch, Vector } from './batch.js';

// copyBuffers: a spill record is a view of a buffer its run reuses (SpillRun.records), so binary
// values decoded from it must own their bytes.
const packr = new Packr({ useRecords: false, int64AsType: 'bigint', moreTypes: true, copyBuffers: true });

type Encoded = [number, [string, 0 | 1 | 2, unknown, Uint8Array | null][]];

export function encodeBatch(b: Batch): Uint8Array {
  const cols: SpillColumn[] = [];
  for (const [path, v] of b.vectors) {
    if (v.kind === 'f64') { cols.push({ path, numbers: v.values, absent: v.absent }); continue; }
    const strings = encodeStrings(v.values, b.length);
    cols.push(strings ? { path, ...strings } : { path, values: v.values });
  }
  return encodeRecord(b.length, cols);
}

/**
 * A column of a spill record, for writers that hold rows in another form than a Batch (the full
 * sort's packed buffer). Typed arrays may be views of reused scratch: the record copies them.
 * `utf8` holds the strings back to back; `lengths` counts each one's UTF-16 code units (a
 * string's `.length`), so that ASCII text is copied byte for byte.
 */
export type SpillColumn =
  | { path: string; numbers: Float64Array; absent: Uint8Array | null }
  | { path: string; utf8: Uint8Array; lengths: Uint32Array; absent: Uint8Array | null }
  | { path: string; values: readonly unknown[] };

/** The spill record of `length` rows in `cols`: what decodeBatch reads back as a Batch. */
export function encodeRecord(length: number, cols: readonly SpillColumn[]): Uint8Array {
  const encoded: Encoded[1] = cols.map((c) =>
    'numbers' in c ? [c.path, 0, c.numbers, c.absent] : 'utf8' in c ? [c.path, 2, [c.utf8, c.lengths], c.absent] : [c.path, 1, c.values, null]);
  return packr.pack([length, encoded] satisfies Encoded);
}

/** A batch from its spill record; a record that does not decode to a well-formed batch is CORRUPT. */
export function decodeBatch(bytes: Uint8Array): Batch {
  let decoded: unknown;
  try {
    decoded = packr.unpack(bytes);
  } catch (err) {
    throw unreadable('not valid msgpack', err);
  }
  if (!Array.isArray(decoded) || decoded.length !== 2 || !Number.isSafeInteger(decoded[0]) || decoded[0] < 0 || !Array.isArray(decoded[1])) {
    throw unreadable('not a batch');
  }
  const [length, cols] = decoded as Encoded;
  const vectors = new Map<string, Vector>();
  for (const col of cols as unknown[]) {
    if (!Array.isArray(col) || col.length !== 4 || typeof col[0] !== 'string') throw unreadable('malformed column');
    const [path, kind, values, absent] = col as Encoded[1][number];
    if (kind === 0) {
      const f = values instanceof Float64Array ? values : Array.isArray(values) ? new Float64Array(values as number[]) : null;
      if (!f || f.length !== length || (absent !== null && !(absent instanceof Uint8Array && absent.byteLength === length))) throw unreadable(`malformed column ${path}`);
      vectors.set(path, { kind: 'f64', values: f, absent: absent ? new Uint8Array(absent) : null });
    } else if (kind === 1 && Array.isArray(values) && values.length === length) {
      vectors.set(path, { kind: 'any', values: values as unknown[] });
    } else if (kind === 2) {
      vectors.set(path, { kind: 'any', values: decodeStrings(values, absent, length, path) });
    } else {
      throw unreadable(`malformed column ${path}`);
    }
  }
  return { length, vectors };
}

const unreadable = (why: string, cause?: unknown) =>
  new ModelVaultError('CORRUPT', `spill record is unreadable: ${why}`, { offset: -1 }, cause === undefined ? undefined : { cause });

/** Strings (and absent values) as UTF-8 back to back, their lengths and an absent mask; null when not all strings. */
function encodeStrings(values: readonly unknown[], length: number): { utf8: Uint8Array; lengths: Uint32Array; absent: Uint8Array | null } | null {
  if (length === 0 || values.length !== length) return null;
  const lengths = new Uint32Array(length);
  let absent: Uint8Array | null = null;
  const parts: string[] = new Array(length);
  for (let i = 0; i < length; i++) {
    const x = values[i];
    if (typeof x === 'string') { parts[i] = x; lengths[i] = x.length; }
    else if (x === undefined) { parts[i] = ''; (absent ??= new Uint8Array(length))[i] = 1; }
    else return null;
  }
  const joined = parts.join('');
  // A lone surrogate would not survive UTF-8: such columns keep the msgpack form.
  if (!(joined as string & { isWellFormed(): boolean }).isWellFormed()) return null;
  return { utf8: Buffer.from(joined, 'utf8'), lengths, absent };
}

function decodeStrings(packed: unknown, absent: Uint8Array | null, length: number, path: string): (string | undefined)[] {
  if (!Array.isArray(packed) || packed.length !== 2 || !(packed[0] instanceof Uint8Array) || !(packed[1] instanceof Uint32Array) || packed[1].length !== length ||
    (absent !== null && !(absent instanceof Uint8Array && absent.byteLength === length))) throw unreadable(`malformed column ${path}`);
  const [blob, lengths] = packed as [Uint8Array, Uint32Array];
  const all = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength).toString('utf8');
  const out = new Array<string | undefined>(length);
  let at = 0;
  for (let i = 0; i < length; i++) {
    const end = at + lengths[i];
    if (end > all.length) throw unreadable(`malformed column ${path}`);
    out[i] = absent !== null && absent[i] ? undefined : all.slice(at, end);
    at = end;
  }
  if (at !== all.length) throw unreadable(`malformed column ${path}`);
  return out;
}
