// A full sort gives its packed rows' memory back the moment its query ends — run to the end,
// left by `break`, aborted, spilled or not — instead of leaving it for V8's next full
// collection, where the next query would find it still held. Every case also checks the rows
// against a plain-JS sort of the same data.
import { describe, expect, it } from 'vitest';
import { model, t } from '../../src/index.js';
import { sortPackBytesHeld } from '../../operators/sort-buffer.js';
import { MODES, expectCode, openDb, prng } from './helpers.js';

const Items = model('items', { id: t.int(), score: t.float(), tag: t.string(), note: t.string().optional() }, { primaryKey: 'id' });

const ROWS = 20_000;
function items(): { id: number; score: number; tag: string; note?: string }[] {
  const r = prng(41);
  return Array.from({ length: ROWS }, (_, id) => {
    const row: { id: number; score: number; tag: string; note?: string } = { id, score: Math.floor(r() * 5000) / 10, tag: `t${Math.floor(r() * 30)}` };
    if (r() < 0.8) row.note = `note ${id} ${'x'.repeat(Math.floor(r() * 40))}`;
    return row;
  });
}
/** Stable by score (ties keep primary-key order, the scan's). */
const byScore = (rows: ReturnType<typeof items>) => [...rows].sort((a, b) => a.score - b.score || a.id - b.id);

describe.each(MODES)('a full sort releases its packed rows when the query ends (%s)', (mode) => {
  async function setup(memoryLimit?: number) {
    const { db } = await openDb(mode, memoryLimit === undefined ? {} : { memoryLimit });
    const coll = await db.register(Items);
    const data = items();
    await coll.insertMany(data);
    return { coll, data };
  }

  it('run to the end in memory, left early by break, and aborted', async () => {
    const { coll, data } = await setup();
    expect(sortPackBytesHeld()).toBe(0);
    const got: unknown[] = [];
    let heldWhileRunning = 0;
    for await (const row of coll.query().orderBy('score')) {
      if (got.length === 0) heldWhileRunning = sortPackBytesHeld();
      got.push(row);
    }
    expect(heldWhileRunning).toBeGreaterThan(0);
    expect(got).toEqual(byScore(data));
    expect(sortPackBytesHeld()).toBe(0);

    const first: unknown[] = [];
    for await (const row of coll.query().orderBy('score')) {
      first.push(row);
      if (first.length === 10) break;
    }
    expect(first).toEqual(byScore(data).slice(0, 10));
    expect(sortPackBytesHeld()).toBe(0);

    const ac = new AbortController();
    let n = 0;
    await expectCode(async () => {
      for await (const _row of coll.query().orderBy('score').options({ signal: ac.signal })) if (++n === 100) ac.abort();
    }, 'ABORTED');
    expect(n).toBeGreaterThanOrEqual(100);
    expect(sortPackBytesHeld()).toBe(0);
  });

  it('spilled to sorted runs and merged', async () => {
    const { coll, data } = await setup(256 * 1024);
    const plan = await coll.query().orderBy('score').explain({ analyze: true });
    expect(plan).toMatch(/spilled [1-9][\d.]* \w+ in ([2-9]|[1-9]\d+) runs/);
    expect(sortPackBytesHeld()).toBe(0);
    const rows = await coll.query().orderBy('score').toArray();
    expect(rows).toEqual(byScore(data));
    expect(sortPackBytesHeld()).toBe(0);
  });
});
