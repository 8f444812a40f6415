// Order-preserving composite keys: byte order of the encoding = natural order of the values,
// component by component, so B+trees compare keys with memcmp. Each component is encoded by
// `ordered-binary` (numbers, bigints, strings, booleans, null) and then made self-delimiting:
// 0x00 is escaped as 0x00 0xFF and a component ends with 0x00 0x01. That keeps a shorter value
// before its extensions ('ab' < 'abc') and makes the encoding of a key prefix a byte prefix of
// every key that extends it, which index range scans rely on.
import { readKey, writeKey } from 'ordered-binary';
import { ModelVaultError } from './errors.js';

export type KeyPart = number | bigint | string | boolean | Date | null;

const TERMINATOR = [0x00, 0x01];
const MAX_KEY_PART_BYTES = 4096;

/** ordered-binary writes each component here first (a component is at most ~2 x 4 KiB). */
const raw = Buffer.allocUnsafe(4 * MAX_KEY_PART_BYTES);
/** The escaped key is assembled here, then copied out at its exact length. */
let assembled = Buffer.allocUnsafe(1024);

/**
 * Writes one component's ordered-binary bytes to `raw`; returns their length. Errors carry the
 * component's position (`details.part`), so a caller that knows the key's fields can name one.
 */
function writePart(part: KeyPart, index: number): number {
  if (part === null || part === undefined) return writeKey(null, raw, 0);
  if (part instanceof Date) {
    const ms = part.getTime();
    if (Number.isNaN(ms)) throw partError(index, 'an invalid Date cannot be part of a key');
    return writeKey(ms === 0 ? 0 : ms, raw, 0);
  }
  if (typeof part === 'number') {
    if (Number.isNaN(part)) throw partError(index, 'NaN cannot be part of a key');
    return writeKey(part === 0 ? 0 : part, raw, 0); // -0 and 0 are one key
  }
  if (typeof part === 'bigint') {
    if (part < -(2n ** 63n) || part >= 2n ** 63n) throw partError(index, 'a bigint key must fit in 64 bits');
    return writeKey(part, raw, 0);
  }
  // Refuse long strings before encoding them, so `raw` always has room.
  if (typeof part === 'string' && part.length > MAX_KEY_PART_BYTES / 3 && Buffer.byteLength(part, 'utf8') > MAX_KEY_PART_BYTES) {
    throw tooLong(index, Buffer.byteLength(part, 'utf8'));
  }
  if (typeof part === 'string' || typeof part === 'boolean') return writeKey(part, raw, 0);
  throw partError(index, `a ${typeof part} cannot be part of a key`);
}

const partError = (index: number, message: string) => new ModelVaultError('VALIDATION', message, { part: index });
const tooLong = (index: number, bytes: number) => partError(index, `a key part of ${bytes} bytes is longer than the ${MAX_KEY_PART_BYTES} a key part may take`);

/**
 * Whether `part` can be encoded as a key component: strings are limited to 4 KiB, and NaN and
 * an invalid Date have no place in the key order.
 */
export function keyPartFits(part: KeyPart): boolean {
  if (typeof part === 'number') return !Number.isNaN(part);
  if (part instanceof Date) return !Number.isNaN(part.getTime());
  // Up to a quarter as many UTF-16 units as bytes: at most 3 bytes each, far below the limit.
  if (typeof part !== 'string' || part.length <= MAX_KEY_PART_BYTES / 4) return true;
  try {
    return writePart(part, 0) <= MAX_KEY_PART_BYTES;
  } catch {
    return false;
  }
}

/** The key bytes of a composite key (one part for a single-field key). */
export function encodeKey(parts: readonly KeyPart[]): Buffer {
  const at = assemble(parts);
  const out = Buffer.allocUnsafe(at);
  for (let i = 0; i < at; i++) out[i] = assembled[i];
  return out;
}

/**
 * `encodeKey` into a buffer shared by every call: valid until the next encodeKey or
 * encodeKeyScratch, so for keys that are copied at once (a row appended to a leaf).
 */
export function encodeKeyScratch(parts: readonly KeyPart[]): Buffer {
  const length = assemble(parts);
  // One view of the shared buffer per key length, reused: a load encodes a key per row.
  if (scratchViewsOf !== assembled) { scratchViews.length = 0; scratchViewsOf = assembled; }
  return (scratchViews[length] ??= assembled.subarray(0, length));
}

const scratchViews: Buffer[] = [];
let scratchViewsOf: Buffer | null = null;

/** Escapes and terminates the parts' ordered-binary encodings into `assembled`; returns the length. */
function assemble(parts: readonly KeyPart[]): number {
  let at = 0;
  for (let p = 0; p < parts.length; p++) {
    const length = writePart(parts[p], p);
    if (length > MAX_KEY_PART_BYTES) throw tooLong(p, length);
    if (at + 2 * length + TERMINATOR.length > assembled.byteLength) {
      const grown = Buffer.allocUnsafe(Math.max(2 * assembled.byteLength, at + 2 * length + TERMINATOR.length));
      assembled.copy(grown, 0, 0, at);
      assembled = grown;
    }
    for (let i = 0; i < length; i++) {
      const b = raw[i];
      assembled[at++] = b;
      if (b === 0x00) assembled[at++] = 0xff;
    }
    assembled[at++] = TERMINATOR[0];
    assembled[at++] = TERMINATOR[1];
  }
  return at;
}

/** Bounds covering every key whose leading components equal `parts`. */
export function prefixBounds(parts: readonly KeyPart[]): { gte: Buffer; lt: Buffer } {
  const gte = encodeKey(parts);
  // Every continuation starts with a component's first byte, never 0xFF 0xFF.
  return { gte, lt: Buffer.concat([gte, Buffer.from([0xff, 0xff])]) };
}

/**
 * The components of an encoded key that `wanted` marks, decoded into `out` at their positions
 * (null for absent values; Dates as epoch ms); the others are skipped without decoding, and the
 * key is read only up to the last wanted one.
 */
export function decodeKeyParts(key: Uint8Array, wanted: readonly boolean[], out: KeyPart[]): void {
  let n = 0, part = 0;
  for (let at = 0; part < wanted.length; ) {
    if (at + 1 >= key.byteLength) throw new ModelVaultError('CORRUPT', 'key has fewer components than asked for', { offset: -1 });
    const b = key[at];
    if (b === 0x00 && key[at + 1] === TERMINATOR[1]) {
      if (wanted[part]) out[part] = readPart(n);
      part++;
      n = 0;
      at += 2;
      continue;
    }
    if (wanted[part]) {
      if (n >= raw.byteLength) throw new ModelVaultError('CORRUPT', 'key component longer than any valid one', { offset: -1 });
      raw[n++] = b; // an escaped 0x00 (0x00 0xFF) is one 0x00
    }
    at += b === 0x00 ? 2 : 1;
  }
}

/** The ordered-binary value of the first `n` bytes of `raw`. */
function readPart(n: number): KeyPart {
  try {
    return readKey(raw, 0, n) as KeyPart;
  } catch {
    throw new ModelVaultError('CORRUPT', 'key component that does not decode', { offset: -1 });
  }
}

/**
 * Component `index` of an encoded key, decoded (null for an absent value's part; a Date's part
 * comes back as its epoch milliseconds).
 */
export function keyPart(key: Uint8Array, index: number): KeyPart {
  const wanted = new Array<boolean>(index + 1).fill(false);
  wanted[index] = true;
  const out: KeyPart[] = [];
  decodeKeyParts(key, wanted, out);
  return out[index];
}

/** Where the bytes after the first `parts` components of an encoded key start (an index key's primary key). */
export function keySuffixStart(key: Uint8Array, parts: number): number {
  let at = 0;
  for (let done = 0; done < parts; ) {
    if (at + 1 >= key.byteLength) throw new ModelVaultError('CORRUPT', 'index key has fewer components than its index', { offset: -1 });
    if (key[at] === 0x00) {
      if (key[at + 1] === TERMINATOR[1]) done++;
      at += 2;
    } else {
      at++;
    }
  }
  return at;
}
