// Decoding encoded keys back into their components (index-only scans, index min/max): for random
// composite keys of numbers, strings (NUL bytes, non-BMP characters), booleans, dates, nulls and
// bigints, decodeKeyParts and keyPart give back each wanted component as the index stores it
// (-0 as 0, a Date as its epoch ms) and leave the others untouched; truncated keys are CORRUPT,
// never a wrong value. Bigint components are only stepped over: ordered-binary decodes them as
// numbers, which is why index-only scans and index min/max leave bigint fields to the scan.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ModelVaultError } from '../../storage/errors.js';
import { decodeKeyParts, encodeKey, keyPart, type KeyPart } from '../../storage/keys.js';

const part: fc.Arbitrary<KeyPart> = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ maxLength: 8 }).map((s) => `a\u0000${s}\u0000`),
  fc.boolean(),
  fc.constant(null),
  fc.date({ noInvalidDate: true }),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
);

/** What a component decodes to: the index's view of the value. */
function stored(p: KeyPart): unknown {
  if (p instanceof Date) return p.getTime() === 0 ? 0 : p.getTime();
  if (typeof p === 'number') return p === 0 ? 0 : p;
  return p;
}

describe('key decoding', () => {
  it('decodeKeyParts and keyPart give back every wanted component', () => {
    fc.assert(fc.property(fc.array(part, { minLength: 1, maxLength: 6 }), fc.array(fc.boolean(), { minLength: 1, maxLength: 6 }), (parts, mask) => {
      const key = encodeKey(parts);
      const wanted = parts.map((_, i) => mask[i % mask.length]);
      const out: KeyPart[] = parts.map(() => 'untouched');
      decodeKeyParts(key, wanted, out);
      parts.forEach((p, i) => {
        if (typeof p === 'bigint') return; // stepped over, not compared (see the header)
        expect(out[i]).toEqual(wanted[i] ? stored(p) : 'untouched');
        expect(keyPart(key, i)).toEqual(stored(p));
      });
    }), { numRuns: 2000 });
  });

  it('a truncated key is CORRUPT', () => {
    fc.assert(fc.property(fc.array(part, { minLength: 1, maxLength: 4 }), fc.nat(), (parts, cut) => {
      const key = encodeKey(parts);
      const short = key.subarray(0, cut % key.byteLength);
      let threw: unknown = null;
      try {
        decodeKeyParts(short, parts.map(() => true), []);
      } catch (err) {
        threw = err;
      }
      expect(threw).toBeInstanceOf(ModelVaultError);
      expect((threw as ModelVaultError).code).toBe('CORRUPT');
    }), { numRuns: 500 });
  });
});
