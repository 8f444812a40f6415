// One hash for partitioning (aggregate and join spill partitions): FNV-1a over the value's
// string form with a per-level seed, then a final mix so that low bits spread.
export function hashValue(key: unknown, seed: number): number {
  const s = typeof key === 'string' ? key : `${typeof key}:${String(key)}`;
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h >>> 0;
}
