// Order-preserving composite keys: byte order of the encoding = natural order of the values,
// component by component, so B+trees compare keys with memcmp. Each component is encoded by
// `ordered-binary` (numbers, bigints, strings, booleans, null) and then made self-delimiting:
// 0x00 is escaped as 0x00 0xFF and a component ends with 0x00 0x01. That keeps a shorter value
// before its extensions ('ab' < 'abc') and makes the encoding of a key prefix a byte prefix of
// every key that extends it, which index range scans rely on.
import { toBufferKey } from 'ordered-binary';
import { ModelVaultError } from './errors.js';

export type KeyPart = number | bigint | string | boolean | Date | null;

const TERMINATOR = [0x00, 0x01];
const MAX_KEY_PART_BYTES = 4096;

function partBytes(part: KeyPart): Uint8Array {
  if (part === null || part === undefined) return toBufferKey(null);
  if (part instanceof Date) {
    const ms = part.getTime();
    if (Number.isNaN(ms)) throw new ModelVaultError('VALIDATION', 'an invalid Date cannot be part of a key', {});
    return toBufferKey(ms === 0 ? 0 : ms);
  }
  if (typeof part === 'number') {
    if (Number.isNaN(part)) throw new ModelVaultError('VALIDATION', 'NaN cannot be part of a key', {});
    return toBufferKey(part === 0 ? 0 : part); // -0 and 0 are one key
  }
  if (typeof part === 'bigint') {
    if (part < -(2n ** 63n) || part >= 2n ** 63n) throw new ModelVaultError('VALIDATION', 'a bigint key must fit in 64 bits', {});
    return toBufferKey(part);
  }
  // ordered-binary throws a RangeError for strings past its buffer (~10 KB): refuse long ones first.
  if (typeof part === 'string' && part.length > MAX_KEY_PART_BYTES / 3 && Buffer.byteLength(part, 'utf8') > MAX_KEY_PART_BYTES) {
    throw new ModelVaultError('VALIDATION', `key component of ${Buffer.byteLength(part, 'utf8')} bytes exceeds ${MAX_KEY_PART_BYTES}`, {});
  }
  if (typeof part === 'string' || typeof part === 'boolean') return toBufferKey(part);
  throw new ModelVaultError('VALIDATION', `a ${typeof part} cannot be part of a key`, {});
}

/** The key bytes of a composite key (one part for a single-field key). */
export function encodeKey(parts: readonly KeyPart[]): Buffer {
  const encoded = parts.map(partBytes);
  let length = 0;
  for (const bytes of encoded) {
    if (bytes.byteLength > MAX_KEY_PART_BYTES) {
      throw new ModelVaultError('VALIDATION', `key component of ${bytes.byteLength} bytes exceeds ${MAX_KEY_PART_BYTES}`, {});
    }
    length += bytes.byteLength + TERMINATOR.length;
    for (let i = 0; i < bytes.byteLength; i++) if (bytes[i] === 0x00) length++;
  }
  const out = Buffer.allocUnsafe(length);
  let at = 0;
  for (const bytes of encoded) {
    for (let i = 0; i < bytes.byteLength; i++) {
      const b = bytes[i];
      out[at++] = b;
      if (b === 0x00) out[at++] = 0xff;
    }
    out[at++] = TERMINATOR[0];
    out[at++] = TERMINATOR[1];
  }
  return out;
}

/** Bounds covering every key whose leading components equal `parts`. */
export function prefixBounds(parts: readonly KeyPart[]): { gte: Buffer; lt: Buffer } {
  const gte = encodeKey(parts);
  // Every continuation starts with a component's first byte, never 0xFF 0xFF.
  return { gte, lt: Buffer.concat([gte, Buffer.from([0xff, 0xff])]) };
}

/** The bytes after the first `parts` components of an encoded key (an index key's primary key). */
export function keySuffix(key: Uint8Array, parts: number): Buffer {
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
  return Buffer.from(key.buffer, key.byteOffset + at, key.byteLength - at);
}
