// The compiled insert validator must agree with validateShape on every input: the same row
// (absent optionals as undefined properties) or the same VALIDATION error with the same path.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { t } from '../../src/index.js';
import type { FieldSpec } from '../../src/types.js';
import { insertValidator, validateShape } from '../../src/validate.js';

const shape: Record<string, FieldSpec> = {
  id: t.int().spec,
  n: t.int().optional().spec,
  lim: t.int().min(0).max(9).optional().spec,
  f: t.float().spec,
  s: t.string().optional().spec,
  short: t.string().maxLength(3).optional().spec,
  b: t.bool().optional().spec,
  ts: t.timestamp().spec,
  old: t.timestamp().max(new Date(0)).optional().spec,
  d: t.string().default('x').spec,
  j: t.json().optional().spec,
  o: t.object({ k: t.int() }).optional().spec,
};

const anyValue = fc.oneof(
  fc.integer(), fc.double(), fc.constantFrom(NaN, Infinity, -0, 2 ** 60), fc.string({ maxLength: 6 }),
  fc.constantFrom('\uD800', '', 'abcd'), fc.boolean(), fc.constant(null), fc.constant(undefined),
  fc.date({ noInvalidDate: false }), fc.bigInt(), fc.constant({ k: 1 }), fc.constant([1, 2]),
);
const field = (good: fc.Arbitrary<unknown>) => fc.oneof({ weight: 4, arbitrary: good }, { weight: 1, arbitrary: anyValue });
const rowArb = fc.record({
  id: field(fc.integer()), n: field(fc.integer()), lim: field(fc.integer({ min: -2, max: 12 })), f: field(fc.double()),
  s: field(fc.string()), short: field(fc.string({ maxLength: 5 })), b: field(fc.boolean()), ts: field(fc.date()),
  old: field(fc.date()), d: field(fc.string()), j: field(fc.jsonValue()), o: field(fc.record({ k: fc.integer() })),
  extra: fc.constantFrom(undefined, 1),
}, { requiredKeys: [] }).map((r) => {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) if (k !== 'extra' || v !== undefined) out[k] = v;
  return out;
});
const input = fc.oneof({ weight: 20, arbitrary: rowArb }, { weight: 1, arbitrary: anyValue }, { weight: 1, arbitrary: fc.constant(JSON.parse('{"id":1,"f":1,"ts":null,"__proto__":{"x":1}}')) });

function outcome(fn: () => Record<string, unknown>): unknown {
  try {
    return { row: fn() };
  } catch (err) {
    const e = err as { code?: string; message: string; details?: { path?: string } };
    return { code: e.code, message: e.message, path: e.details?.path };
  }
}

describe('insertValidator', () => {
  it('returns what validateShape returns and throws what it throws', () => {
    const compiled = insertValidator(shape);
    fc.assert(fc.property(input, (row) => {
      expect(outcome(() => compiled(row))).toEqual(outcome(() => validateShape(shape, row, '', 'insert')));
    }), { numRuns: 3000 });
  });

  it('copies dates and leaves the input untouched', () => {
    const ts = new Date(5);
    const row = { id: 1, f: 0.5, ts };
    const out = insertValidator(shape)(row);
    expect(out.ts).toEqual(ts);
    expect(out.ts).not.toBe(ts);
    expect(out.d).toBe('x');
    expect(row).toEqual({ id: 1, f: 0.5, ts });
  });
});
