// Leaves a load in key order fills are sized by their real layout (fixed columns carry no
// offsets), so they come out nearly full; and updating such a leaf in place with a row of the
// same size must not split it, although the all-variable bound of a modified leaf is over a page.
import { describe, expect, it } from 'vitest';
import { LeafView } from '../../storage/btree-node.js';
import { MODES, openEngine, u32Key } from '../helpers/storage.js';

const PAGE_SIZE = 16384;
const f64 = (v: number) => { const b = Buffer.alloc(8); b.writeDoubleLE(v); return b; };
/** Three fixed 8-byte cells and a string of varying length (variable layout): an orders-like row. */
const cells = (i: number, salt = 0) => [f64(i), f64(i * 3 + salt), f64(-i), Buffer.from(`note ${i % 7 === 0 ? 'long ' : ''}${i}`)];

describe.each(MODES)('leaf fill (%s)', (mode) => {
  it('a load in key order fills leaves to within a row, and a same-size update of a full leaf does not split it', async () => {
    const engine = await openEngine(mode, { pageSize: PAGE_SIZE });
    const N = 20_000;
    await engine.write(async (tx) => {
      const t = await tx.tree('rows', 4);
      for (let i = 0; i < N; i++) await t.put(u32Key(i), cells(i));
    });
    const leaves = async () => {
      const out: { count: number; bytes: number; first: Buffer }[] = [];
      using snap = engine.snapshot();
      for await (const s of snap.slices('rows')) {
        const leaf = s.leaf as LeafView;
        out.push({ count: leaf.count, bytes: leaf.body.byteLength, first: Buffer.from(leaf.key(0)) });
      }
      return out;
    };
    const before = await leaves();
    expect(before.reduce((n, l) => n + l.count, 0)).toBe(N);
    const capacity = PAGE_SIZE - 32;
    // Every leaf but the last is within a row (key, offsets and cells: under 64 bytes) and the
    // bound's per-column padding allowance (7 bytes each, keys included) of the page.
    for (const l of before.slice(0, -1)) expect(capacity - l.bytes).toBeLessThan(64 + 7 * 5);
    // Each of these leaves' loose bound (every cell counted as variable) is over the page.
    const fullLeafKey = before[1].first;
    const i = fullLeafKey.readUInt32BE(0);
    await engine.write(async (tx) => {
      const t = await tx.tree('rows', 4);
      await t.put(u32Key(i), cells(i, 1), 'update');
    });
    const after = await leaves();
    expect(after.length).toBe(before.length);
    expect(after.map((l) => l.count)).toEqual(before.map((l) => l.count));
    await engine.close();
  });
});
