// Operators of one query share its memoryLimit. A join whose build side is one key (400 tags of
// one user) reads that partition back a record at a time, beside buffering operators above it
// (a group-by, or a group-by and a sort of its groups). These queries used to fail with ABORTED
// under 128–384 KiB: a record was a whole input batch (59 KB of tags), more than the operators
// above left free, and a group-by of 61k groups ran out of re-partitioning levels.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { count, sum, type Collection, type Database } from '../../src/index.js';
import {
  MODES, Orders, Tags, canonAggRows, intIn, makeOrders, openShared, prng, project, refAggregate, refCompare, refJoin,
  type Order, type Tag,
} from './helpers.js';

const KiB = 1024;

describe.each(MODES)('operators sharing a small memoryLimit over a skewed join (%s)', (mode) => {
  let db: Database;
  let orders: Collection<typeof Orders>;
  let joinedRef: Record<string, any>[];
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    const rnd = prng(33);
    const hot = intIn(rnd, 0, 300);
    const rows: Order[] = [...makeOrders({ count: 4000, seed: 19, users: 400, padBytes: 120, userId: (i, r) => (r() < 0.02 ? hot : intIn(r, 0, 399)) })];
    const tagRows: Tag[] = Array.from({ length: 3000 }, (_, k) => ({ id: k, userId: k < 400 ? hot : intIn(rnd, 0, 499), label: `t${k % 37}:`.padEnd(40 + (k % 50), 'l') }));
    ({ db, cleanup } = await openShared(mode, { pageSize: 16384, cacheSize: 64 * 2 ** 20 }));
    orders = await db.register(Orders);
    await orders.insertMany(rows);
    await (await db.register(Tags)).insertMany(tagRows);
    joinedRef = refJoin(rows.map((r) => project(r, ['id', 'userId', 'amount', 'pad'])), tagRows, 'userId', 'userId', 'tag', 'left');
  }, 120_000);
  afterAll(async () => cleanup?.());

  const joined = () => orders.query().select('id', 'userId', 'amount', 'pad').join(Tags, 'userId', 'userId', { as: 'tag', type: 'left' });

  /** Runs `q` under `kib`: its rows, after checking that it stayed within the limit and gave back its spill pages. */
  async function runUnder<T>(q: { options(o: { memoryLimit: number }): { toArray(): Promise<T[]>; explain(o: { analyze: true }): Promise<string> } }, kib: number) {
    const limited = q.options({ memoryLimit: kib * KiB });
    const got = await limited.toArray();
    const text = await limited.explain({ analyze: true });
    const [, peak] = /peak memory (\d+) bytes of (\d+)/.exec(text)!.map(Number);
    expect(peak, `${kib} KiB`).toBeLessThanOrEqual(kib * KiB);
    expect(db.stats().spill.pagesInUse, `${kib} KiB`).toBe(0);
    return got;
  }

  it('a group-by over the join', async () => {
    const want = canonAggRows(refAggregate(joinedRef, ['tag.label'], { n: { fn: 'count' }, total: { fn: 'sum', path: 'amount' } }), ['tag.label']);
    for (const kib of [128, 192, 256, 384]) {
      const got = await runUnder(joined().groupBy('tag.label').aggregate({ n: count(), total: sum('amount') }), kib);
      expect(canonAggRows(got as Record<string, unknown>[], ['tag.label']), `${kib} KiB`).toEqual(want);
    }
  }, 60_000);

  it('a sort of the groups of the join', async () => {
    // 61k groups: the group-by partitions (many levels at 128 KiB, where it writes to 2 partitions
    // at a time) while the sort above holds the groups of the partitions drained before.
    const want = refAggregate(joinedRef, ['id', 'tag.label'], { n: { fn: 'count' } })
      .sort((x: any, y: any) => refCompare(y.n, x.n) || refCompare(x.id, y.id) || refCompare(x['tag.label'], y['tag.label'])); // a flat 'tag.label' key
    for (const kib of [128, 256]) {
      const q = joined().groupBy('id', 'tag.label').aggregate({ n: count() }).orderBy('n', 'desc').orderBy('id').orderBy('tag.label');
      const got = await runUnder(q, kib);
      expect(got, `${kib} KiB`).toEqual(want);
    }
  }, 120_000);
});
