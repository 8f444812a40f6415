// Batches in spill runs: msgpack of the vectors (typed arrays stay typed arrays), so a run
// holds the same columnar form the operators work on.
import { Packr } from 'msgpackr';
import { ModelVaultError } from '../storage/errors.js';
import type { Batch, Vector } from './batch.js';

const packr = new Packr({ useRecords: false, int64AsType: 'bigint', moreTypes: true });

type Encoded = [number, [string, 0 | 1, unknown, Uint8Array | null][]];

export function encodeBatch(b: Batch): Uint8Array {
  const cols: Encoded[1] = [];
  for (const [path, v] of b.vectors) {
    cols.push(v.kind === 'f64' ? [path, 0, v.values, v.absent] : [path, 1, v.values, null]);
  }
  return packr.pack([b.length, cols] satisfies Encoded);
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
    } else {
      throw unreadable(`malformed column ${path}`);
    }
  }
  return { length, vectors };
}

const unreadable = (why: string, cause?: unknown) =>
  new ModelVaultError('CORRUPT', `spill record is unreadable: ${why}`, { offset: -1 }, cause === undefined ? undefined : { cause });
