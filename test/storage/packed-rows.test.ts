// The write path's one-pass encoders must produce exactly the bytes of the general ones they
// replace: `RowCodec.encodeScratch` = `packRow(RowCodec.encode)`, a leaf encoded from packed
// rows reads back every cell (fixed, variable, absent, columns added later) unchanged, and a
// leaf built column by column (AppendLeaf) encodes to exactly the bytes of a MutableLeaf.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AppendLeaf, LeafView, MutableLeaf, OverflowRef, Staged, entryBytes, packRow, plainCellCount } from '../../storage/btree-node.js';
import { encodeKey } from '../../storage/keys.js';
import { RowCodec } from '../../src/row-codec.js';
import { dictionaryCacheOf, dictionaryString, dictionaryStrings } from '../../operators/scan-op.js';
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
  /** A packed row of its own (encodeScratch's is overwritten by the next encode). */
  const packOwn = (row: Record<string, unknown>) => Buffer.from(codec.encodeScratch(row));

  it('encodeScratch writes the bytes of packRow(encode(row))', () => {
    fc.assert(fc.property(rowArb, (row) => {
      const fast = packOwn(row);
      const general = packRow(codec.encode(row) as never);
      expect(Buffer.compare(fast, general)).toBe(0);
    }), { numRuns: 400 });
  });

  it('a leaf encoded from packed rows decodes to the same rows, including columns added later', () => {
    fc.assert(fc.property(fc.array(rowArb, { minLength: 1, maxLength: 60 }), fc.integer({ min: 0, max: 3 }), (rows, extra) => {
      const leaf = new MutableLeaf(columns.length + extra);
      rows.forEach((row, i) => leaf.insert(i, encodeKey([i]), packOwn(row)));
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

  it('an AppendLeaf reads and encodes exactly as a MutableLeaf with the same entries', () => {
    fc.assert(fc.property(fc.array(rowArb, { minLength: 1, maxLength: 80 }), (rows) => {
      const append = new AppendLeaf(columns.length);
      const mutable = new MutableLeaf(columns.length);
      rows.forEach((row, i) => {
        const packed = packOwn(row);
        expect(plainCellCount(packed)).toBe(columns.length);
        append.append(encodeKey([i]), packed);
        mutable.insert(i, encodeKey([i]), packed);
      });
      expect(append.count).toBe(rows.length);
      expect(append.bytes).toBe(mutable.bytes);
      for (let i = 0; i < rows.length; i++) {
        expect(append.key(i).equals(mutable.key(i))).toBe(true);
        expect(append.compareKey(i, encodeKey([i]))).toBe(0);
        for (let c = 0; c <= columns.length; c++) expect(append.cell(i, c)).toEqual(mutable.cell(i, c));
      }
      const a = Buffer.alloc(1 << 20), m = Buffer.alloc(1 << 20);
      const length = append.encodeInto(a);
      expect(length).toBe(mutable.encodeInto(m));
      expect(length).toBeLessThanOrEqual(Math.ceil(append.bytes));
      expect(a.subarray(0, length).equals(m.subarray(0, length))).toBe(true);
      // A second leaf of the same load starts with the first one's sizes and reads the same.
      const next = new AppendLeaf(columns.length, append);
      next.append(encodeKey([rows.length]), packOwn(rows[0]));
      expect(next.cell(0, 0)).toEqual(append.cell(0, 0));
    }), { numRuns: 200 });
  });

  it('tightBytes bounds the encoding; an AppendLeaf filled by tryAppend fits its capacity and is not over it as a MutableLeaf', () => {
    fc.assert(fc.property(fc.array(rowArb, { minLength: 1, maxLength: 200 }), fc.integer({ min: 2048, max: 16384 }), (rows, capacity) => {
      const append = new AppendLeaf(columns.length);
      const mutable = new MutableLeaf(columns.length);
      let n = 0;
      for (const row of rows) {
        const packed = packOwn(row);
        const key = encodeKey([n]);
        const had = append.bytes;
        if (!append.tryAppend(key, packed, capacity)) {
          expect(append.bytes).toBe(had); // refused: nothing changed
          break;
        }
        mutable.insert(n++, key, packed);
      }
      const page = Buffer.alloc(1 << 20);
      const length = append.encodeInto(page);
      if (n > 0) expect(length).toBeLessThanOrEqual(capacity);
      expect(mutable.encodeInto(page)).toBe(length);
      expect(mutable.tightBytes()).toBeGreaterThanOrEqual(length);
      if (n > 0) expect(mutable.tightBytes()).toBeLessThanOrEqual(capacity);
    }), { numRuns: 150 });
  });

  it('cells staged straight into an AppendLeaf give the leaf tryAppend makes from packed rows; refused entries leave no trace', () => {
    const entryLimit = fc.integer({ min: 40, max: 2000 });
    fc.assert(fc.property(fc.array(rowArb, { minLength: 1, maxLength: 200 }), fc.integer({ min: 2048, max: 16384 }), entryLimit, (rows, capacity, maxEntry) => {
      const staged = new AppendLeaf(columns.length);
      const packedLeaf = new AppendLeaf(columns.length);
      let n = 0;
      for (const row of rows) {
        const packed = packOwn(row);
        const key = encodeKey([n]);
        const had = staged.bytes;
        codec.encodeCells(row, staged.beginStaged());
        const outcome = staged.commitStaged(key, capacity, maxEntry);
        if (entryBytes(key, packed) > maxEntry) {
          expect(outcome).toBe(Staged.TooLarge);
          expect(staged.bytes).toBe(had);
          continue;
        }
        const fits = packedLeaf.tryAppend(key, packed, capacity);
        expect(outcome).toBe(fits ? Staged.Appended : Staged.Full);
        if (!fits) { expect(staged.bytes).toBe(had); break; }
        n++;
      }
      expect(staged.count).toBe(n);
      expect(staged.bytes).toBe(packedLeaf.bytes);
      const a = Buffer.alloc(1 << 20), b = Buffer.alloc(1 << 20);
      const length = staged.encodeInto(a);
      expect(packedLeaf.encodeInto(b)).toBe(length);
      expect(a.subarray(0, length).equals(b.subarray(0, length))).toBe(true);
      for (let i = 0; i < n; i++) for (let c = 0; c < columns.length; c++) expect(staged.cell(i, c)).toEqual(packedLeaf.cell(i, c));
    }), { numRuns: 150 });
  });

  it('a staged entry with too few cells is refused, and a dropped one leaves no trace', () => {
    const leaf = new AppendLeaf(columns.length);
    const row = { i: 1, ts: new Date(5), e: 'a', s: 'kept' };
    codec.encodeCells(row, leaf.beginStaged());
    expect(leaf.commitStaged(encodeKey([1]), 1 << 16, 1 << 16)).toBe(Staged.Appended);
    const sink = leaf.beginStaged();
    sink.float64(2);
    sink.utf8('half a row');
    expect(leaf.commitStaged(encodeKey([2]), 1 << 16, 1 << 16)).toBe(Staged.WrongColumns);
    codec.encodeCells({ ...row, i: 3, s: 'x'.repeat(100) }, leaf.beginStaged());
    leaf.dropStaged();
    const expected = new AppendLeaf(columns.length);
    expected.append(encodeKey([1]), packOwn(row));
    const a = Buffer.alloc(1 << 16), b = Buffer.alloc(1 << 16);
    const length = leaf.encodeInto(a);
    expect(expected.encodeInto(b)).toBe(length);
    expect(a.subarray(0, length).equals(b.subarray(0, length))).toBe(true);
  });

  it('tryAppend fills a leaf of fixed-width cells to within a row of its capacity', () => {
    const narrow = new RowCodec(['a', 'b', 'c'], { a: t.float().spec, b: t.float().spec, c: t.timestamp().spec });
    const leaf = new AppendLeaf(3);
    const capacity = 65536 - 32;
    let n = 0;
    while (leaf.tryAppend(encodeKey([n]), Buffer.from(narrow.encodeScratch({ a: n, b: n / 3, c: new Date(n) })), capacity)) n++;
    const length = leaf.encodeInto(Buffer.alloc(capacity));
    expect(length).toBeLessThanOrEqual(capacity);
    expect(capacity - length).toBeLessThan(100); // a row is 24 bytes of cells, a key and an offset
    expect(leaf.bytes).toBeGreaterThan(capacity); // the all-variable bound would have stopped well before
  });

  it('plainCellCount refuses rows that hold an overflow reference', () => {
    expect(plainCellCount(packRow([Buffer.from('a'), null]))).toBe(2);
    expect(plainCellCount(packRow([Buffer.from('a'), new OverflowRef(7, 2, 100_000), null]))).toBe(-1);
  });

  it('decodeAt of rows with every cell present (its compiled form) gives decode\'s row: same keys, order and types', () => {
    const present = fc.record({
      i: fc.integer(), f: fc.double(), ts: fc.date({ noInvalidDate: true }), s: fc.string({ maxLength: 300 }), e: fc.constantFrom('a', 'bb', 'ccc'),
      b: fc.boolean(), big: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), bytes: fc.uint8Array({ maxLength: 40 }), list: fc.array(fc.integer(), { maxLength: 5 }),
    });
    fc.assert(fc.property(fc.array(present, { minLength: 1, maxLength: 60 }), (rows) => {
      const leaf = new MutableLeaf(columns.length);
      rows.forEach((row, i) => leaf.insert(i, encodeKey([i]), packOwn(row)));
      const page = Buffer.alloc(1 << 20);
      const view = new LeafView(page.subarray(0, leaf.encodeInto(page)), 0);
      rows.forEach((row, i) => {
        const got = codec.decodeAt(null as never, view, i);
        const cells = Array.from({ length: columns.length }, (_c, c) => view.cell(i, c));
        expect(got).toStrictEqual(codec.decode(cells as never));
        expect(Object.keys(got)).toEqual(columns);
        expect(Object.is(got.f, row.f) || (Number.isNaN(got.f) && Number.isNaN(row.f))).toBe(true); // -0 and NaN included
        expect(got.s).toBe(row.s);
      });
    }), { numRuns: 150 });
  });

  it('decodeAt reads a row in place exactly as decode reads its cells, defaults of later columns included', () => {
    const wider = new RowCodec([...columns, 'added'], { ...fields, added: t.string().default('dflt').spec });
    fc.assert(fc.property(fc.array(rowArb, { minLength: 1, maxLength: 60 }), (rows) => {
      const leaf = new MutableLeaf(columns.length);
      rows.forEach((row, i) => leaf.insert(i, encodeKey([i]), packOwn(row)));
      const page = Buffer.alloc(1 << 20);
      const view = new LeafView(page.subarray(0, leaf.encodeInto(page)), 0);
      const pager = null as never; // no overflow cells here: decodeAt never reads a page
      rows.forEach((_, i) => {
        const cells = Array.from({ length: columns.length }, (_c, c) => view.cell(i, c));
        expect(codec.decodeAt(pager, view, i)).toEqual(codec.decode(cells as never));
        expect(wider.decodeAt(pager, view, i)).toEqual(wider.decode(cells as never));
        expect(codec.decodeAt(pager, leaf, i)).toEqual(codec.decode(cells as never)); // a modified leaf: the general path
      });
    }), { numRuns: 150 });
  });
});

describe('dictionary columns', () => {
  const codec = new RowCodec(['k', 'tag'], { k: t.int().spec, tag: t.string().optional().spec });
  /** A leaf of `tags` (undefined = absent) in column 1, encoded by both leaf forms; their bytes must agree. */
  const encodeLeaf = (tags: (string | undefined)[]) => {
    const append = new AppendLeaf(2), mutable = new MutableLeaf(2);
    tags.forEach((tag, i) => {
      const packed = Buffer.from(codec.encodeScratch(tag === undefined ? { k: i } : { k: i, tag }));
      append.append(encodeKey([i]), packed);
      mutable.insert(i, encodeKey([i]), packed);
    });
    const a = Buffer.alloc(1 << 20), m = Buffer.alloc(1 << 20);
    const length = append.encodeInto(a);
    expect(mutable.encodeInto(m)).toBe(length);
    expect(a.subarray(0, length).equals(m.subarray(0, length))).toBe(true);
    expect(length).toBeLessThanOrEqual(Math.ceil(append.bytes));
    return a.subarray(0, length);
  };
  const pool = ['books', 'toys', 'é', '', 'garden tools', 'x'.repeat(64), '日本'];
  const tagsArb = fc.array(fc.option(fc.constantFrom(...pool), { nil: undefined, freq: 8 }), { minLength: 40, maxLength: 600 });

  it('a column of few distinct values is stored as a dictionary and reads back every cell', () => {
    fc.assert(fc.property(tagsArb, (tags) => {
      const view = new LeafView(encodeLeaf(tags), 0);
      const col = view.column(1);
      if (tags.some((x) => x !== undefined)) expect(col.kind).toBe('dict');
      tags.forEach((tag, i) => {
        const cell = view.cell(i, 1);
        expect(cell === null ? undefined : Buffer.from(cell as Buffer).toString('utf8')).toBe(tag);
      });
    }), { numRuns: 100 });
  });

  it('dictionary strings decoded a few at a time (point gets, index fetches) and then all at once (scans) agree with the cells', () => {
    fc.assert(fc.property(tagsArb, fc.array(fc.nat(), { maxLength: 30 }), (tags, picks) => {
      fc.pre(tags.some((x) => x !== undefined));
      const view = new LeafView(encodeLeaf(tags), 0);
      const col = view.column(1);
      if (col.kind !== 'dict') return;
      const strings = dictionaryCacheOf(col);
      for (const pick of picks) {
        const i = pick % tags.length;
        if (tags[i] !== undefined) expect(dictionaryString(col, strings, col.codes[i])).toBe(tags[i]);
      }
      // Later whole-leaf reads fill in what the lookups left undecoded, in the same array.
      const all = dictionaryStrings(col);
      expect(all).toBe(strings);
      tags.forEach((tag, i) => { if (tag !== undefined) expect(all[col.codes[i]]).toBe(tag); });
      expect(all).toHaveLength(col.size);
      for (let k = 0; k < col.size; k++) expect(typeof all[k]).toBe('string'); // no holes (every() would skip them)
    }), { numRuns: 100 });
  });

  it('a dictionary column is smaller than the same cells with offsets; distinct or long values stay variable', () => {
    const tags = Array.from({ length: 500 }, (_, i) => pool[i % 5]);
    const dict = encodeLeaf(tags);
    expect(new LeafView(dict, 0).column(1).kind).toBe('dict');
    const unique = encodeLeaf(tags.map((tag, i) => `${tag} ${i}`));
    expect(new LeafView(unique, 0).column(1).kind).toBe('variable');
    expect(dict.byteLength).toBeLessThan(unique.byteLength - 4 * 500);
    const long = encodeLeaf(tags.map((tag) => tag.padEnd(65, '.')));
    expect(new LeafView(long, 0).column(1).kind).toBe('variable');
  });

  it('a code outside the dictionary, or a dictionary size of 0, is CORRUPT when the column is read', () => {
    const page = encodeLeaf(Array.from({ length: 100 }, (_, i) => pool[i % 3]));
    const view = new LeafView(page, 0);
    const col = view.column(1);
    if (col.kind !== 'dict') throw new Error('expected a dictionary column');
    const codeAt = col.codes.byteOffset - page.byteOffset;
    const badCode = Buffer.from(page);
    badCode[codeAt + 7] = col.size;
    expect(() => new LeafView(badCode, 0).column(1)).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
    const emptyDict = Buffer.from(page);
    const descriptor = col.offsets.byteOffset - page.byteOffset - 8;
    expect(emptyDict[descriptor]).toBe(2); // the descriptor: kind 2, flags, u16 size
    emptyDict.writeUInt16LE(0, descriptor + 2);
    expect(() => new LeafView(emptyDict, 0).column(1)).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
    expect(new LeafView(page, 0).column(1).kind).toBe('dict'); // the undamaged page still reads
  });
});
