// Dotted paths inside batches: 'meta.score' is derived from the 'meta' vector (objects) the
// first time a batch is asked for it, and kept on the batch.
import type { Batch, Vector } from './batch.js';

export function pathVector(b: Batch, path: string): Vector {
  const direct = b.vectors.get(path);
  if (direct) return direct;
  const dot = path.lastIndexOf('.');
  if (dot < 0) throw new Error(`internal: batch has no vector for ${path}`);
  const parent = pathVector(b, path.slice(0, dot));
  const key = path.slice(dot + 1);
  const values = new Array(b.length);
  for (let i = 0; i < b.length; i++) {
    const o = parent.kind === 'any' ? parent.values[i] : undefined;
    const x = o !== null && typeof o === 'object' && Object.prototype.hasOwnProperty.call(o, key) ? (o as Record<string, unknown>)[key] : undefined;
    values[i] = x instanceof Date ? x.getTime() : x; // timestamps compare as epoch ms everywhere
  }
  const derived: Vector = { kind: 'any', values };
  (b.vectors as Map<string, Vector>).set(path, derived);
  return derived;
}
