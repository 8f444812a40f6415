// Strings order by code point everywhere: an index scan (keys are UTF-8 bytes), an in-memory
// sort, a spilled sort's merge, top-k, range filters and min/max must agree. JS `<` orders
// UTF-16 code units, which puts a character above U+FFFF (a surrogate pair) before
// U+E000–U+FFFF; the reference here is UTF-8 byte order, computed with Buffer.compare.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareStrings, compareValues } from '../../operators/expr.js';
import { max, min, model, t } from '../../src/index.js';
import { MODES, openDb } from '../helpers/db.js';

const Words = model('words', {
  id: t.int(),
  word: t.string(),
  plain: t.string(),
}, { primaryKey: 'id', indexes: [{ name: 'byWord', fields: ['word'] }] });

const byUtf8 = (a: string, b: string) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

// Pieces whose code unit order and code point order disagree: '\u{1F600}' is D83D DE00 in
// UTF-16, below '\uFF21' (fullwidth A) and '\uE000' by code unit, above them by code point.
const PIECES = ['a', 'b', 'z', '\u00e9', '\u4e2d', '\ue000', '\uff21', '\uffee', '\u{1F600}', '\u{10000}', '\u{1F4A9}', '\u{2F800}'];

function makeWords(n: number): { id: number; word: string; plain: string }[] {
  let seed = 12345;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const rows = [];
  for (let id = 0; id < n; id++) {
    let word = '';
    const len = 1 + Math.floor(rnd() * 4);
    for (let k = 0; k < len; k++) word += PIECES[Math.floor(rnd() * PIECES.length)];
    // `plain` is the same string on an unindexed field, so ordering by it must sort.
    rows.push({ id, word, plain: word });
  }
  return rows;
}

describe('compareStrings', () => {
  it('orders any two strings as their UTF-8 bytes order', () => {
    const text = fc.oneof(
      // no lone surrogates: UTF-8 cannot hold them
      fc.string({ unit: 'binary', maxLength: 6 }).filter((s) => !/\p{Cs}/u.test(s)),
      fc.array(fc.constantFrom(...PIECES), { maxLength: 5 }).map((p) => p.join('')),
    );
    fc.assert(fc.property(text, text, (a, b) => {
      const want = Math.sign(byUtf8(a, b));
      expect(Math.sign(compareStrings(a, b))).toBe(want);
      expect(Math.sign(compareValues(a, b))).toBe(want);
    }), { numRuns: 5000 });
  });
});

describe.each(MODES)('string order is code point order (%s)', (mode) => {
  it('sorts, spills, top-k, filters and min/max agree with UTF-8 byte order and with the index', async () => {
    const rows = makeWords(20_000);
    const db = await openDb(mode);
    const words = await db.register(Words);
    await words.insertMany(rows);
    const expected = rows.map((r) => r.word).sort(byUtf8);
    // Sanity of the data: code unit order really differs from the expected order here.
    expect([...expected].sort()).not.toEqual(expected);

    // The index delivers the order (no sort), the unindexed copy is sorted in memory, and
    // with a 256 KiB budget the sort spills runs and merges them.
    const viaIndex = await words.query().orderBy('word').toArray();
    expect(await words.query().orderBy('word').explain()).toMatch(/byWord/);
    expect(viaIndex.map((r) => r.word)).toEqual(expected);
    const sorted = await words.query().orderBy('plain').toArray();
    expect(sorted.map((r) => r.plain)).toEqual(expected);
    const spilled = words.query().orderBy('plain', 'desc').options({ memoryLimit: 256 * 1024 });
    expect((await spilled.toArray()).map((r) => r.plain)).toEqual([...expected].reverse());
    expect(await spilled.explain({ analyze: true })).toMatch(/spilled [1-9]/);
    expect((await words.query().orderBy('plain').limit(25).toArray()).map((r) => r.plain)).toEqual(expected.slice(0, 25));

    // Range filters with a bound above U+D800, on the index and on the unindexed copy.
    for (const bound of ['\uff21', '\u{1F600}', '\ue000b']) {
      const below = rows.filter((r) => byUtf8(r.word, bound) < 0).map((r) => r.id).sort((a, b) => a - b);
      const atOrAbove = rows.filter((r) => byUtf8(r.word, bound) >= 0).map((r) => r.id).sort((a, b) => a - b);
      const ids = (rs: { id: number }[]) => rs.map((r) => r.id).sort((a, b) => a - b);
      expect(ids(await words.query().where('word', '<', bound).toArray()), `word < ${bound}`).toEqual(below);
      expect(ids(await words.query().where('plain', '<', bound).toArray()), `plain < ${bound}`).toEqual(below);
      expect(ids(await words.query().where('plain', '>=', bound).toArray()), `plain >= ${bound}`).toEqual(atOrAbove);
    }

    const [agg] = await words.query().aggregate({ lo: min('plain'), hi: max('plain') }).toArray();
    expect(agg).toEqual({ lo: expected[0], hi: expected[expected.length - 1] });
  });
});
