// Open-addressing hash table from numbers (doubles) to dense ids 0, 1, 2, ... in insertion
// order, on typed arrays: no boxed keys, no per-entry objects. Keys compare like Map's
// SameValueZero: -0 equals 0, NaN equals NaN. Used by the hash join (build keys) and the hash
// aggregate (numeric group keys), where a Map<number, …> was several times slower.
const EMPTY = -1;
const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);

function hashF64(k: number): number {
  let h: number;
  if ((k | 0) === k) h = Math.imul(k | 0, 0x9e3779b1);
  else {
    f64[0] = k !== k ? NaN : k; // one NaN bit pattern
    h = Math.imul(u32[0] ^ Math.imul(u32[1], 0x85ebca6b), 0x9e3779b1);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  return h ^ (h >>> 15);
}

export class F64HashTable {
  /** The key of each id, in insertion order (the first spelling seen: -0 stays -0). */
  keys: Float64Array;
  size = 0;
  private slots: Int32Array;
  private mask: number;

  constructor(expected = 16) {
    let cap = 16;
    while (cap < expected * 2) cap *= 2;
    this.slots = new Int32Array(cap).fill(EMPTY);
    this.mask = cap - 1;
    this.keys = new Float64Array(Math.max(8, expected));
  }

  /** The id of `k`, or -1. */
  get(k: number): number {
    const keys = this.keys, slots = this.slots, mask = this.mask;
    for (let s = hashF64(k) & mask; ; s = (s + 1) & mask) {
      const id = slots[s];
      if (id === EMPTY) return -1;
      const x = keys[id];
      if (x === k || (x !== x && k !== k)) return id;
    }
  }

  /** The id of `k`, adding it (id = size before the call) when new. */
  add(k: number): number {
    const keys = this.keys, slots = this.slots, mask = this.mask;
    let s = hashF64(k) & mask;
    for (; ; s = (s + 1) & mask) {
      const id = slots[s];
      if (id === EMPTY) break;
      const x = keys[id];
      if (x === k || (x !== x && k !== k)) return id;
    }
    const id = this.size++;
    if (id >= keys.length) { const g = new Float64Array(keys.length * 2); g.set(keys); this.keys = g; }
    this.keys[id] = k;
    slots[s] = id;
    if (this.size * 2 > slots.length) this.rehash();
    return id;
  }

  /** Bytes held (for memory reservations). */
  get byteLength(): number { return this.slots.byteLength + this.keys.byteLength; }

  private rehash(): void {
    const cap = this.slots.length * 2, mask = cap - 1;
    const slots = new Int32Array(cap).fill(EMPTY);
    for (let id = 0; id < this.size; id++) {
      let s = hashF64(this.keys[id]) & mask;
      while (slots[s] !== EMPTY) s = (s + 1) & mask;
      slots[s] = id;
    }
    this.slots = slots;
    this.mask = mask;
  }
}
