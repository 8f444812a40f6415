// A bounded soak (RELIABILITY_SECONDS × 2, default 20 s, at least 12 s; SOAK_TRACE=1 prints the
// samples): mixed writes (inserts, updates, deletes, transactions, insertMany) and queries
// (point reads, index lookups, aggregates, spilling sorts, SQL, top-k) on one file, keeping the
// row count around a steady level. Process
// memory and file size are sampled throughout; after a warm-up (the first half of the run),
// neither may grow beyond what the configuration allows:
//   - rss and heapUsed stay within cacheSize + memoryLimit + a fixed margin of the warm-up level
//     (no leak per operation: over a thousand operations run after the warm-up);
//   - the file stays within twice its warm-up size plus spill room: freed pages are reused;
//   - at the end the content equals the reference, verify() is clean, no snapshot or spill page
//     is left in use.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database, count, max, model, sum, t } from '../../src/index.js';
import { makeTempDir, prng, randomInt } from '../crash/crash-helpers.js';

const SECONDS = Math.max(12, Number(process.env.RELIABILITY_SECONDS ?? 10) * 2);
/**
 * Samples before this are the warm-up (buffer pool filling, JIT, V8 heap sizing); growth is
 * measured after it. Half the run: on a loaded machine V8 went on sizing its heap for 8–10 s
 * (RSS rising 128 → 182 MiB, then flat around 165), past a fixed 5 s warm-up.
 */
const WARM_UP_MS = SECONDS * 500;
const CACHE_SIZE = 8 << 20;
const MEMORY_LIMIT = 256 << 10;
/** Allocator noise, V8 heap slack, msgpack and buffers in flight: generous, but far below a per-operation leak over the run. */
const MARGIN = 48 << 20;
const STEADY_ROWS = 6000;

const Events = model('events', {
  id: t.int(),
  kind: t.enum(['click', 'view', 'buy', 'refund']),
  user: t.int(),
  amount: t.float(),
  note: t.string(),
  tags: t.list(t.string()),
  at: t.timestamp(),
}, { primaryKey: 'id', indexes: [{ name: 'byUser', fields: ['user'] }, { name: 'byKindAt', fields: ['kind', 'at'] }] });

type Event = typeof Events['__row'];
const KINDS = ['click', 'view', 'buy', 'refund'] as const;

function makeEvent(id: number, random: () => number): Event {
  return {
    id,
    kind: KINDS[randomInt(random, 0, 4)],
    user: randomInt(random, 0, 500),
    amount: Math.round(random() * 10_000) / 100,
    note: `event ${id} `.padEnd(40 + randomInt(random, 0, 160), 'n'),
    tags: Array.from({ length: randomInt(random, 0, 4) }, (_, k) => `tag${k}`),
    at: new Date(Date.UTC(2024, 0, 1) + id * 1000),
  };
}

let tmp: { dir: string; cleanup: () => void };

describe(`soak for ${SECONDS} s: bounded memory and file size`, () => {
  beforeAll(() => { tmp = makeTempDir('mv-soak-'); });
  afterAll(() => tmp?.cleanup());

  it('mixed writes and queries, some spilling, with memory and file size sampled', { timeout: 120_000 + SECONDS * 4000 }, async () => {
    const file = path.join(tmp.dir, 'soak.modelvault');
    const db = await Database.open(file, { cacheSize: CACHE_SIZE, memoryLimit: MEMORY_LIMIT, pageSize: 16384 });
    const random = prng(0x50a);
    const ref = new Map<number, Event>();
    const events = await db.register(Events);
    let nextId = 0;
    const initial = Array.from({ length: STEADY_ROWS }, () => makeEvent(nextId++, random));
    await events.insertMany(initial);
    for (const e of initial) ref.set(e.id, e);
    const ids = () => [...ref.keys()];

    const ops = { insert: 0, update: 0, delete: 0, transaction: 0, insertMany: 0, get: 0, index: 0, aggregate: 0, spillingSort: 0, sql: 0, topK: 0 };
    const pick = () => { const all = ids(); return all[randomInt(random, 0, all.length)]; };

    async function step(): Promise<void> {
      const r = random();
      if (r < 0.12) {
        const e = makeEvent(nextId++, random);
        await events.insert(e); ref.set(e.id, e); ops.insert++;
      } else if (r < 0.24) {
        const id = pick();
        const amount = Math.round(random() * 10_000) / 100;
        expect(await events.update(id, { amount })).toBe(true);
        ref.get(id)!.amount = amount; ops.update++;
      } else if (r < 0.36) {
        if (ref.size > STEADY_ROWS * 0.9) { const id = pick(); expect(await events.delete(id)).toBe(true); ref.delete(id); ops.delete++; }
      } else if (r < 0.42) {
        // A transaction: insert some, delete as many (keeps the size steady), all or nothing.
        const added = Array.from({ length: 20 }, () => makeEvent(nextId++, random));
        const removed = Array.from(new Set(Array.from({ length: 20 }, pick)));
        await db.transaction(async (tx) => {
          const c = tx.collection(Events);
          for (const e of added) await c.insert(e);
          for (const id of removed) await c.delete(id);
        });
        for (const e of added) ref.set(e.id, e);
        for (const id of removed) ref.delete(id);
        ops.transaction++;
      } else if (r < 0.45) {
        const added = Array.from({ length: 300 }, () => makeEvent(nextId++, random));
        await events.insertMany(added);
        for (const e of added) ref.set(e.id, e);
        const removed = ids().slice(0, 300); // the oldest
        await db.transaction(async (tx) => { const c = tx.collection(Events); for (const id of removed) await c.delete(id); });
        for (const id of removed) ref.delete(id);
        ops.insertMany++;
      } else if (r < 0.62) {
        const id = pick();
        expect(await events.get(id)).toEqual(ref.get(id));
        ops.get++;
      } else if (r < 0.74) {
        const user = randomInt(random, 0, 500);
        const n = await events.query().where('user', '=', user).count();
        expect(n).toBe([...ref.values()].filter((e) => e.user === user).length);
        ops.index++;
      } else if (r < 0.82) {
        const rows = await events.query().groupBy('kind').aggregate({ n: count(), total: sum('amount'), top: max('amount') }).toArray();
        expect(rows.reduce((a, g) => a + (g.n as number), 0)).toBe(ref.size);
        ops.aggregate++;
      } else if (r < 0.88) {
        // A full sort by a string under a 1 MiB limit: spills.
        let n = 0, last = '';
        for await (const row of events.query().orderBy('note').select('id', 'note')) {
          expect((row.note as string) >= last).toBe(true);
          last = row.note as string;
          n++;
        }
        expect(n).toBe(ref.size);
        ops.spillingSort++;
      } else if (r < 0.94) {
        const [row] = await db.sql('SELECT COUNT(*) AS n, SUM(amount) AS total FROM events WHERE kind = ?', ['buy']).toArray();
        expect(row.n).toBe([...ref.values()].filter((e) => e.kind === 'buy').length);
        ops.sql++;
      } else {
        const top = await events.query().orderBy('amount', 'desc').limit(10).select('amount').toArray();
        expect(top.length).toBe(Math.min(10, ref.size));
        ops.topK++;
      }
    }

    const samples: { t: number; rss: number; heap: number; file: number }[] = [];
    const sample = (t: number) => {
      const m = process.memoryUsage();
      samples.push({ t, rss: m.rss, heap: m.heapUsed, file: fs.statSync(file).size });
    };
    const start = Date.now();
    const warmUpEnd = start + WARM_UP_MS;
    let steps = 0, stepsAfterWarmUp = 0;
    while (Date.now() - start < SECONDS * 1000) {
      await step();
      steps++;
      if (Date.now() >= warmUpEnd) stepsAfterWarmUp++;
      if (steps % 25 === 0) sample(Date.now() - start);
    }
    sample(Date.now() - start);

    if (process.env.SOAK_TRACE) {
      console.log(samples.filter((_, i) => i % 5 === 0).map((s) => `${(s.t / 1000).toFixed(0)}s:${(s.rss / 2 ** 20).toFixed(0)}/${(s.heap / 2 ** 20).toFixed(0)} MiB`).join(' '));
    }
    const warm = samples.filter((s) => s.t < WARM_UP_MS);
    const after = samples.filter((s) => s.t >= WARM_UP_MS);
    expect(warm.length).toBeGreaterThan(0);
    expect(after.length).toBeGreaterThan(2);
    const peak = (xs: typeof samples, k: 'rss' | 'heap' | 'file') => Math.max(...xs.map((s) => s[k]));
    const baseline = { rss: peak(warm, 'rss'), heap: peak(warm, 'heap'), file: peak(warm, 'file') };
    const later = { rss: peak(after, 'rss'), heap: peak(after, 'heap'), file: peak(after, 'file') };
    const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
    console.log(`soak: ${steps} operations (${stepsAfterWarmUp} after warm-up) in ${SECONDS} s ${JSON.stringify(ops)}; `
      + `rss ${mib(baseline.rss)} → peak ${mib(later.rss)}, heapUsed ${mib(baseline.heap)} → ${mib(later.heap)}, file ${mib(baseline.file)} → ${mib(later.file)}; `
      + `spill runs ${db.stats().spill.runsWritten}`);

    const allowance = CACHE_SIZE + MEMORY_LIMIT + MARGIN;
    expect(later.rss - baseline.rss, `rss grew by ${mib(later.rss - baseline.rss)}`).toBeLessThanOrEqual(allowance);
    expect(later.heap - baseline.heap, `heapUsed grew by ${mib(later.heap - baseline.heap)}`).toBeLessThanOrEqual(allowance);
    expect(later.file, `the file grew from ${mib(baseline.file)} to ${mib(later.file)}`).toBeLessThanOrEqual(2 * baseline.file + 8 * MEMORY_LIMIT);
    expect(stepsAfterWarmUp).toBeGreaterThan(100);
    expect(ops.spillingSort).toBeGreaterThan(0);
    expect(db.stats().spill.runsWritten).toBeGreaterThan(0);

    // The end state: exactly the reference, structurally sound, nothing left pinned or spilled.
    const rows = await events.query().orderBy('id').toArray();
    expect(rows.length).toBe(ref.size);
    expect(rows).toEqual([...ref.values()].sort((a, b) => a.id - b.id));
    expect(await events.count()).toBe(ref.size);
    expect((await db.verify()).problems).toEqual([]);
    expect(db.stats().snapshots).toBe(0);
    expect(db.stats().spill.pagesInUse).toBe(0);
    await db.close();
    const reopened = await Database.open(file);
    expect(reopened.recoveryInfo).toBeNull();
    expect(await (await reopened.collection('events')).count()).toBe(ref.size);
    await reopened.close();
  });
});
