// The write path's one-pass encoders must produce exactly the bytes of the general ones they
// replace: `RowCodec.encodePacked` = `packRow(RowCodec.encode)`, and a leaf encoded from packed
// rows reads back every cell (fixed, variable, absent, columns added later) unchanged.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LeafView, MutableLeaf, packRow } from '../../storage/btree-node.js';
import { encodeKey } from '../../storage/keys.js';
import { RowCodec } from '../../src/row-codec.js';
import { t } from '../../src/index.js';
import type { FieldSpec } from '../../src/types.js';

const fields: Record<string, FieldSpec> = {
  i: t.int().spec,
  f: t.float().optional().spec,
  ts: t.timestamp().spec,
  s: t.string().optional().spec,
  e: t.enum(['a', 'bb', 'ccc']).spec,
  b: t.bool().optional().spec,
  big: t.bigint().optional().spec,
  bytes: t.bytes().optional().spec,
  list: t.list(t.int()).optional().spec,
};
const columns = Object.keys(fields);

const rowArb = fc.record({
  i: fc.integer(),
  f: fc.option(fc.double(), { nil: undefined }),
  ts: fc.date({ noInvalidDate: true }),
  s: fc.option(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.string({ maxLength: 600 })), { nil: undefined }),
  e: fc.constantFrom('a', 'bb', 'ccc'),
  b: fc.option(fc.boolean(), { nil: undefined }),
  big: fc.option(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { nil: undefined }),
  bytes: fc.option(fc.uint8Array({ maxLength: 40 }), { nil: undefined }),
  list: fc.option(fc.array(fc.integer(), { maxLength: 5 }), { nil: undefined }),
});

describe('packed rows', () => {
  const codec = new RowCodec(columns, fields);

  it('encodePacked writes the bytes of packRow(encode(row))', () => {
    fc.assert(fc.property(rowArb, (row) => {
      const fast = codec.encodePacked(row);
      const general = packRow(codec.encode(row) as never);
      expect(Buffer.compare(fast, general)).toBe(0);
    }), { numRuns: 400 });
  });

  it('a leaf encoded from packed rows decodes to the same rows, including columns added later', () => {
    fc.assert(fc.property(fc.array(rowArb, { minLength: 1, maxLength: 60 }), fc.integer({ min: 0, max: 3 }), (rows, extra) => {
      const leaf = new MutableLeaf(columns.length + extra);
      rows.forEach((row, i) => leaf.insert(i, encodeKey([i]), codec.encodePacked(row)));
      const page = Buffer.alloc(1 << 20);
      const length = leaf.encodeInto(page);
      const view = new LeafView(page.subarray(0, length), 0);
      expect(view.count).toBe(rows.length);
      rows.forEach((row, i) => {
        const cells = Array.from({ length: columns.length }, (_, c) => view.cell(i, c));
        expect(codec.decode(cells as never)).toEqual(Object.fromEntries(Object.entries(row).filter(([, v]) => v !== undefined)));
        for (let c = columns.length; c < columns.length + extra; c++) expect(view.cell(i, c)).toBeNull();
      });
    }), { numRuns: 150 });
  });
});
