// Batches in spill runs: msgpack of the vectors (typed arrays stay typed arrays), so a run
// holds the same columnar form the operators work on.
import { Packr } from 'msgpackr';
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

export function decodeBatch(bytes: Uint8Array): Batch {
  const [length, cols] = packr.unpack(bytes) as Encoded;
  const vectors = new Map<string, Vector>();
  for (const [path, kind, values, absent] of cols) {
    if (kind === 0) {
      const f = values instanceof Float64Array ? values : new Float64Array(values as ArrayLike<number>);
      vectors.set(path, { kind: 'f64', values: f, absent: absent ? new Uint8Array(absent) : null });
    } else {
      vectors.set(path, { kind: 'any', values: values as unknown[] });
    }
  }
  return { length, vectors };
}
