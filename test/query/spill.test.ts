// Bounded memory: sort, top-k, aggregate and join under a 1 MiB memory limit over data more
// than 50x larger spill into the file and still give the plain-JS reference answer, the same
// answer as an unlimited run, and give every spill page back (also when aborted mid-spill).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Reservation } from '../../storage/memory-pool.js';
import { Database, avg, count, countDistinct, max, min, model, sum, type Collection } from '../../src/index.js';
import {
  Customers, MODES, Orders, Tags, byId, canonAggRows, compareRows, expectCode, intIn, keyTuples, makeCustomers, makeOrders, prng, project,
  refAggregate, refJoin, tempDir, type Customer, type Mode, type Order, type OrderKey, type RefAggs, type Tag,
} from './helpers.js';

const LIMIT = 2 ** 20;
const UNLIMITED = { memoryLimit: 2 ** 30 };
/** A buffer pool that holds the whole file, so repeated scans cost no re-reads (operator memory is what is limited). */
const CACHE = 160 * 2 ** 20;
const ROWS = 20_000;
const PAD = 2_700; // 20k rows x 2.7 KB of padding = 54 MB, more than 50x LIMIT

// Orders: half the rows have userId 0 (skew on the probe side of joins), three have userId 1.
const orderRows: Order[] = [...makeOrders({
  count: ROWS,
  seed: 77,
  padBytes: PAD,
  userId: (i, rnd) => (i % 2 === 0 ? 0 : i < 6 ? 1 : intIn(rnd, 2, 4001)),
})];
// Tags: userId 1 holds 3000 tags (a build-side key too large for memory on its own); the rest
// spread over 2..5000, so most users have several tags and some tags match no order.
const tagRows: Tag[] = (() => {
  const rnd = prng(5);
  return Array.from({ length: 12_000 }, (_, k) => ({ id: k, userId: k < 3000 ? 1 : intIn(rnd, 2, 5000), label: `t${k}:`.padEnd(200, 'l') }));
})();
// Customers 0..3999 with long names: customer 0 matches half the orders, ids 4000/4001 of orders match none.
const customerRows: Customer[] = [...makeCustomers({ count: 4000, seed: 6, nameBytes: 300 })];
const EmptyOrders = model('orders_empty', Orders.shape, { primaryKey: 'id' });

/** The committed image of the data set, built once and opened by both modes. */
let image: Promise<Uint8Array> | null = null;
function dataImage(): Promise<Uint8Array> {
  image ??= (async () => {
    const db = await Database.openInMemory();
    try {
      await (await db.register(Orders)).insertMany(orderRows);
      await (await db.register(Tags)).insertMany(tagRows);
      await (await db.register(Customers)).insertMany(customerRows);
      await db.register(EmptyOrders);
      return await db.snapshotBytes();
    } finally {
      await db.close();
    }
  })();
  return image;
}

/** A database over the data set: the image in memory, or written to a temporary file. */
async function openData(mode: Mode, dir: string, memoryLimit = LIMIT): Promise<{ db: Database; file: string | null }> {
  const bytes = await dataImage();
  if (mode === 'memory') return { db: await Database.openSnapshotBytes(bytes, { memoryLimit, cacheSize: CACHE }), file: null };
  const file = path.join(dir, `spill-${Math.random().toString(36).slice(2)}.modelvault`);
  fs.writeFileSync(file, bytes);
  return { db: await Database.open(file, { memoryLimit, cacheSize: CACHE }), file };
}

const AGGS = { n: count(), total: sum('amount'), avgQty: avg('qty'), first: min('ts'), top: max('amount'), users: countDistinct('userId') };
const REF_AGGS: RefAggs = {
  n: { fn: 'count' }, total: { fn: 'sum', path: 'amount' }, avgQty: { fn: 'avg', path: 'qty' },
  first: { fn: 'min', path: 'ts' }, top: { fn: 'max', path: 'amount' }, users: { fn: 'countDistinct', path: 'userId' },
};

/** The padding string the generator gives row `id`. */
const padOf = (id: number) => `${id}:${'x'.repeat(PAD)}`.slice(0, PAD);

describe.each(MODES)('bounded memory: spilling operators under a 1 MiB limit (%s)', (mode) => {
  let db: Database;
  let orders: Collection<typeof Orders>;
  let tags: Collection<typeof Tags>;
  let dir: string;
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'modelvault-spill-'));
    ({ db } = await openData(mode, dir));
    cleanup = async () => { await db.close(); fs.rmSync(dir, { recursive: true, force: true }); };
    orders = await db.register(Orders);
    tags = await db.register(Tags);
    await db.register(Customers);
    await db.register(EmptyOrders);
  }, 120_000);
  afterAll(async () => cleanup?.());

  /** Whole rows without the padding: still several MiB, so sorting them spills. */
  const narrow = () => orders.query().select('id', 'amount', 'qty', 'note', 'meta', 'ts');

  /** Runs `fn` and checks that it spilled and that every spill page and snapshot came back. */
  async function spilling<T>(fn: () => Promise<T>, expectSpill = true): Promise<T> {
    const before = db.stats().spill.runsWritten;
    const out = await fn();
    const after = db.stats();
    if (expectSpill) expect(after.spill.runsWritten, 'the query should have spilled').toBeGreaterThan(before);
    else expect(after.spill.runsWritten, 'the query should not have spilled').toBe(before);
    expect(after.spill.pagesInUse).toBe(0);
    expect(after.snapshots).toBe(0);
    return out;
  }

  it('the data set is more than 50x the memory limit', () => {
    const padBytes = orderRows.reduce((n, r) => n + r.pad!.length, 0);
    expect(padBytes).toBeGreaterThan(50 * LIMIT);
    expect(db.stats().memoryLimit).toBe(LIMIT);
    expect(db.stats().fileBytes).toBeGreaterThan(50 * LIMIT);
  });

  it('sorts whole rows by several keys (ties, absent values, desc) by spilling', async () => {
    const keys: OrderKey[] = [{ path: 'note', desc: true }, { path: 'amount', desc: false }, { path: 'meta.score', desc: true }];
    const q = orders.query().orderBy('note', 'desc').orderBy('amount').orderBy('meta.score', 'desc');
    const got = await spilling(() => q.toArray());
    const want = [...orderRows].sort(compareRows(keys));
    expect(got.length).toBe(ROWS);
    expect(keyTuples(got, keys)).toEqual(keyTuples(want, keys));
    // Every row exactly once, whole, with its padding intact.
    expect(byId(got).map((r) => r.id)).toEqual(orderRows.map((r) => r.id));
    for (const r of got) if (r.pad !== padOf(r.id)) expect.fail(`row ${r.id} lost its padding`);
    const byKey = new Map(orderRows.map((r) => [r.id, r]));
    for (let i = 0; i < got.length; i += 97) expect(got[i]).toEqual(project(byKey.get(got[i].id)!));
    // Absent notes come last when descending.
    const firstAbsent = got.findIndex((r) => r.note === undefined);
    expect(firstAbsent).toBeGreaterThan(0);
    expect(got.slice(firstAbsent).every((r) => r.note === undefined)).toBe(true);
  });

  it('sort results are identical (ties included: the sort is stable) with and without the limit', async () => {
    const q = orders.query().select('id', 'amount', 'note', 'meta', 'ts').orderBy('amount', 'desc').orderBy('meta.score');
    const limited = await spilling(() => q.toArray());
    const unlimited = await spilling(() => q.options(UNLIMITED).toArray(), false);
    expect(limited.length).toBe(ROWS);
    expect(limited).toEqual(unlimited);
    const keys: OrderKey[] = [{ path: 'amount', desc: true }, { path: 'meta.score', desc: false }];
    expect(keyTuples(limited, keys)).toEqual(keyTuples([...orderRows].sort(compareRows(keys)), keys));
  });

  it('top-k returns the best rows in memory for a small k, and spills correctly for a large one', async () => {
    const keys: OrderKey[] = [{ path: 'amount', desc: true }, { path: 'id', desc: false }];
    const want = [...orderRows].sort(compareRows(keys));
    const small = orders.query().orderBy('amount', 'desc').orderBy('id').offset(10).limit(100);
    expect(small.explain()).toMatch(/TopK: keep best 110/);
    const got = await spilling(() => small.toArray(), false);
    expect(got).toEqual(want.slice(10, 110).map((r) => project(r)));

    // 12,000 rows (several MiB even without the padding) cannot stay in 1 MiB: the top-k spills and merges.
    const large = narrow().orderBy('ts').orderBy('id', 'desc').offset(500).limit(11_500);
    const tsKeys: OrderKey[] = [{ path: 'ts', desc: false }, { path: 'id', desc: true }];
    const gotLarge = await spilling(() => large.toArray());
    expect(gotLarge.map((r) => r.id)).toEqual([...orderRows].sort(compareRows(tsKeys)).slice(500, 12_000).map((r) => r.id));
  });

  /** Runs `fn` and returns what it returned with every reservation granted meanwhile, by label. */
  async function grantedDuring<T>(fn: () => Promise<T>): Promise<{ out: T; granted: { label: string; bytes: number }[] }> {
    const granted: { label: string; bytes: number }[] = [];
    const tryGrow = Reservation.prototype.tryGrow;
    const spy = vi.spyOn(Reservation.prototype, 'tryGrow').mockImplementation(function (this: Reservation, bytes: number) {
      const ok = tryGrow.call(this, bytes);
      if (ok) granted.push({ label: this.label, bytes });
      return ok;
    });
    try {
      return { out: await fn(), granted };
    } finally {
      spy.mockRestore();
    }
  }

  it('a spilling sort holds its spill I/O inside the budget: the peak, I/O buffers counted, stays within the limit', async () => {
    const { out: text, granted } = await grantedDuring(() => orders.query().orderBy('amount').orderBy('id').explain({ analyze: true }));
    const sort = /Sort: .*spilled .* in (\d+) runs/.exec(text);
    expect(sort, text).not.toBeNull();
    expect(Number(sort![1])).toBeGreaterThan(2); // enough runs to merge several at once
    // The run writer's extent (at least one 16 KiB page) and each merge input's read and join
    // buffers (two pages at least, for at least two inputs) were reserved, not just allocated.
    expect(granted.some((g) => g.label.endsWith('spill I/O') && g.bytes >= 16384)).toBe(true);
    expect(granted.some((g) => g.label === 'SortMerge' && g.bytes >= 2 * 2 * 16384)).toBe(true);
    const [, peak, limit] = /peak memory (\d+) bytes of (\d+)/.exec(text)!.map(Number);
    expect(limit).toBe(LIMIT);
    expect(peak).toBeLessThanOrEqual(LIMIT);
    expect(db.stats().spill.pagesInUse).toBe(0);
  });

  it('grace partitioning (join, aggregate) reserves its writers\' buffers, and the peak stays within the limit', async () => {
    const { out: texts, granted } = await grantedDuring(async () => [
      await orders.query().select('id', 'userId', 'amount').join(Tags, 'userId', 'userId', { as: 'tag' }).explain({ analyze: true }),
      await orders.query().groupBy('id').aggregate({ n: count() }).explain({ analyze: true }),
    ]);
    expect(texts[0]).toMatch(/HashJoin: .*partitions/);
    expect(texts[1]).toMatch(/HashAggregate: .*spilled .* partitions/);
    // The writers' pages were reserved: a page for each partition, a quarter of the 1 MiB limit
    // (4 partitions of a 64 KiB page, or 16 of a 16 KiB one).
    for (const op of ['HashJoin', 'HashAggregate']) {
      const io = granted.filter((g) => g.label.startsWith(op) && g.label.endsWith('spill I/O'));
      expect(io.length, op).toBeGreaterThan(0);
      for (const g of io) expect(g.bytes, op).toBe(LIMIT / 4);
    }
    for (const text of texts) {
      const [, peak, limit] = /peak memory (\d+) bytes of (\d+)/.exec(text)!.map(Number);
      expect(limit).toBe(LIMIT);
      expect(peak).toBeLessThanOrEqual(LIMIT);
      expect(peak).toBeGreaterThanOrEqual(LIMIT / 4);
    }
    expect(db.stats().spill.pagesInUse).toBe(0);
  });

  it('aggregates many groups by spilling partitions, matching the reference and the unlimited run', async () => {
    const q = orders.query().groupBy('id').aggregate(AGGS);
    const got = await spilling(() => q.toArray());
    expect(got.length).toBe(ROWS);
    expect(canonAggRows(got, ['id'])).toEqual(canonAggRows(refAggregate(orderRows, ['id'], REF_AGGS), ['id']));
    const unlimited = await spilling(() => q.options(UNLIMITED).toArray(), false);
    expect(canonAggRows(unlimited, ['id'])).toEqual(canonAggRows(got, ['id']));
    // explain({ analyze: true }) reports the spill, and a peak within the limit.
    const text = await orders.query().groupBy('id').aggregate({ n: count() }).explain({ analyze: true });
    expect(text).toMatch(/HashAggregate: .*spilled .* partitions/);
    const peak = Number(/peak memory (\d+) bytes of (\d+)/.exec(text)![1]);
    expect(peak).toBeLessThanOrEqual(LIMIT);
    expect(db.stats().spill.pagesInUse).toBe(0);
  });

  it('aggregates few groups, skewed groups, multi-key groups and filtered input', async () => {
    const cases: [string[], (q: ReturnType<typeof orders.query>) => ReturnType<typeof orders.query>, (r: Order) => boolean][] = [
      [['category'], (q) => q, () => true],
      [['userId'], (q) => q, () => true], // userId 0 holds half the rows
      [['category', 'qty'], (q) => q.where('amount', '>', 10), (r) => r.amount > 10],
      [['meta.source'], (q) => q.where('note', 'is not', null), (r) => r.note !== undefined], // absent group → null
    ];
    for (const [groups, filter, ref] of cases) {
      const got = await filter(orders.query()).groupBy(...groups).aggregate(AGGS).toArray();
      const want = refAggregate(orderRows.filter(ref), groups, REF_AGGS);
      expect(canonAggRows(got, groups), groups.join(',')).toEqual(canonAggRows(want, groups));
    }
    expect(db.stats().spill.pagesInUse).toBe(0);
  });

  it('aggregate without groupBy gives one row, also over no rows and an empty collection', async () => {
    const all = await orders.query().aggregate(AGGS).toArray();
    expect(all).toHaveLength(1);
    expect(canonAggRows(all, [])).toEqual(canonAggRows(refAggregate(orderRows, [], REF_AGGS), []));
    const emptyRow = { n: 0, total: 0, avgQty: null, first: null, top: null, users: 0 };
    expect(await orders.query().where('id', '<', 0).aggregate(AGGS).toArray()).toEqual([emptyRow]);
    const empty = await db.register(EmptyOrders);
    expect(await empty.query().aggregate(AGGS).toArray()).toEqual([emptyRow]);
    expect(await empty.query().groupBy('category').aggregate(AGGS).toArray()).toEqual([]);
  });

  it('inner join with duplicate keys on both sides and a skewed build key spills (grace + block join)', async () => {
    const q = orders.query().select('id', 'userId', 'amount').join(Tags, 'userId', 'userId', { as: 'tag' });
    const got = await spilling(() => q.toArray());
    const want = refJoin(orderRows, tagRows, 'userId', 'userId', 'tag', 'inner');
    expect(want.length).toBeGreaterThan(20_000);
    expect(pairs(got)).toEqual(pairs(want));
    // Whole joined rows: the selected order fields and the whole tag.
    const tagById = new Map(tagRows.map((t) => [t.id, t]));
    const orderById = new Map(orderRows.map((o) => [o.id, o]));
    for (let i = 0; i < got.length; i += 53) {
      const r = got[i] as Record<string, any>;
      expect(r).toEqual({ ...project(orderById.get(r.id)!, ['id', 'userId', 'amount']), tag: tagById.get(r.tag.id) });
    }
    // The skewed key: 3 orders x 3000 tags.
    expect(got.filter((r) => r.userId === 1)).toHaveLength(3 * 3000);
    const unlimited = await spilling(() => q.options(UNLIMITED).toArray(), false);
    expect(pairs(unlimited)).toEqual(pairs(got));
  });

  it('left join keeps unmatched rows with null; no matches at all gives nulls (left) or nothing (inner)', async () => {
    const q = orders.query().select('id', 'userId').join(Tags, 'userId', 'userId', { as: 'tag', type: 'left' });
    const got = await spilling(() => q.toArray());
    const want = refJoin(orderRows, tagRows, 'userId', 'userId', 'tag', 'left');
    expect(pairs(got)).toEqual(pairs(want));
    expect(got.filter((r) => r.tag === null).length).toBe(want.filter((r) => r.tag === null).length);
    expect(got.filter((r) => r.tag === null).length).toBeGreaterThan(ROWS / 2 - 1); // userId 0 has no tags

    const none = tags.query().where('label', '=', 'no such label');
    expect(await orders.query().select('id').join(none, 'userId', 'userId', { as: 'tag' }).count()).toBe(0);
    const leftNone = await orders.query().select('id').join(none, 'userId', 'userId', { as: 'tag', type: 'left' }).toArray();
    expect(leftNone.length).toBe(ROWS);
    expect(leftNone.every((r) => r.tag === null)).toBe(true);
    expect(db.stats().spill.pagesInUse).toBe(0);
  });

  it('where, groupBy and orderBy on joined paths (skewed probe side)', async () => {
    const joined = refJoin(orderRows, customerRows, 'userId', 'id', 'customer', 'inner');
    const byCountry = orders.query()
      .join(Customers, 'userId', 'id', { as: 'customer' })
      .where('customer.country', 'in', ['FR', 'DE', 'US'])
      .where('qty', '>=', 2)
      .groupBy('customer.country')
      .aggregate(AGGS);
    // Only the join keys and country are decoded here, so this join fits in memory.
    const got = await byCountry.toArray();
    const ref = joined.filter((r) => ['FR', 'DE', 'US'].includes((r.customer as Customer).country) && (r.qty as number) >= 2);
    expect(canonAggRows(got, ['customer.country'])).toEqual(canonAggRows(refAggregate(ref, ['customer.country'], REF_AGGS), ['customer.country']));

    const ordered = orders.query().select('id', 'amount')
      .join(Customers, 'userId', 'id', { as: 'customer' })
      .where('customer.name', '>=', 'c2')
      .orderBy('customer.country', 'desc').orderBy('amount').orderBy('id')
      .limit(300);
    const keys: OrderKey[] = [{ path: 'customer.country', desc: true }, { path: 'amount', desc: false }, { path: 'id', desc: false }];
    const gotOrdered = await spilling(() => ordered.toArray());
    const wantOrdered = joined.filter((r) => (r.customer as Customer).name >= 'c2').sort(compareRows(keys)).slice(0, 300);
    expect(gotOrdered.map((r) => [r.id, r.customer.id])).toEqual(wantOrdered.map((r) => [r.id, (r.customer as Customer).id]));
  });

  it('SQL GROUP BY and JOIN ... ON give the same results as the builder', async () => {
    const sqlAgg = db.sql('SELECT userId, COUNT(*) AS n, SUM(amount) AS total, AVG(qty) AS avgQty, MIN(ts) AS first, MAX(amount) AS top, COUNT(DISTINCT category) AS cats FROM orders WHERE qty > ? GROUP BY userId', [3]);
    const builderAgg = orders.query().where('qty', '>', 3).groupBy('userId')
      .aggregate({ n: count(), total: sum('amount'), avgQty: avg('qty'), first: min('ts'), top: max('amount'), cats: countDistinct('category') });
    expect(canonAggRows(await sqlAgg.toArray(), ['userId'])).toEqual(canonAggRows(await builderAgg.toArray(), ['userId']));

    const sqlJoin = db.sql('SELECT o.id, o.userId, t FROM orders o JOIN tags t ON o.userId = t.userId WHERE t.label >= ? AND o.qty < ?', ['t5', 5]);
    const builderJoin = orders.query().select('id', 'userId').join(Tags, 'userId', 'userId', { as: 't' }).where('t.label', '>=', 't5').where('qty', '<', 5);
    const [a, b] = [await spilling(() => sqlJoin.toArray()), await builderJoin.toArray()];
    expect(a.length).toBeGreaterThan(1000);
    expect(pairs(a, 't')).toEqual(pairs(b, 't'));

    const sqlJoinAgg = db.sql('SELECT c.country, SUM(o.amount) AS revenue, COUNT(*) AS n FROM orders o LEFT JOIN customers c ON o.userId = c.id GROUP BY c.country');
    const builderJoinAgg = orders.query().join(Customers, 'userId', 'id', { as: 'c', type: 'left' }).groupBy('c.country').aggregate({ revenue: sum('amount'), n: count() });
    const gotSql = canonAggRows(await sqlJoinAgg.toArray(), ['c.country']);
    expect(gotSql).toEqual(canonAggRows(await builderJoinAgg.toArray(), ['c.country']));
    expect(gotSql[0]['c.country']).toBeNull(); // orders of users 4000 and 4001 have no customer
  });

  it('aborting mid-spill (while writing runs, and while merging) gives ABORTED and releases the spill space', async () => {
    // Each query creates its runs through a group of the spill space: the third run aborts.
    const spill = db.host.spill;
    const group = spill.group;
    try {
      for (const make of [
        () => orders.query().orderBy('amount'),
        () => orders.query().groupBy('id').aggregate(AGGS),
        () => orders.query().select('id').join(Tags, 'userId', 'userId', { as: 'tag' }),
      ]) {
        const ac = new AbortController();
        let runs = 0;
        spill.group = function (this: typeof spill) {
          const g = group.call(this);
          const createRun = g.createRun;
          g.createRun = (label: string, extentPages?: number) => {
            if (++runs === 3) ac.abort(new Error('enough'));
            return createRun.call(g, label, extentPages);
          };
          return g;
        };
        await expectCode(() => make().options({ signal: ac.signal }).toArray(), 'ABORTED');
        spill.group = group;
        expect(runs).toBeGreaterThanOrEqual(3);
        expect(db.stats().spill.pagesInUse).toBe(0);
        expect(db.stats().snapshots).toBe(0);
      }
    } finally {
      spill.group = group;
    }

    // Aborted while the merge holds every run: after the first row of a spilled sort.
    const ac = new AbortController();
    const it = narrow().orderBy('qty').orderBy('id').options({ signal: ac.signal })[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.value?.id).toBe(orderRows.filter((r) => r.qty === 0)[0].id);
    expect(db.stats().spill.pagesInUse).toBeGreaterThan(0);
    ac.abort();
    await expectCode(async () => { for (;;) if ((await it.next()).done) break; }, 'ABORTED');
    expect(db.stats().spill.pagesInUse).toBe(0);
    expect(db.stats().snapshots).toBe(0);

    // Breaking out of a spilled sort releases the runs too.
    for await (const r of narrow().orderBy('amount', 'desc')) {
      expect(db.stats().spill.pagesInUse).toBeGreaterThan(0);
      expect(typeof r.id).toBe('number');
      break;
    }
    expect(db.stats().spill.pagesInUse).toBe(0);
  });

  it('spill pages live in the file only while a query runs: after close the file is its committed size', async () => {
    const own = await openData(mode, dir);
    const o = await own.db.register(Orders);
    const committedBytes = own.db.stats().pageCount * own.db.stats().pageSize;
    const it = o.query().select('id', 'amount', 'note', 'meta', 'ts').orderBy('amount').orderBy('id')[Symbol.asyncIterator]();
    await it.next();
    const during = own.db.stats();
    expect(during.spill.pagesInUse).toBeGreaterThan(0);
    expect(during.fileBytes).toBeGreaterThan(committedBytes);
    await it.return!(undefined);
    expect(own.db.stats().spill.pagesInUse).toBe(0);
    await own.db.close();
    if (own.file) {
      expect(fs.statSync(own.file).size).toBe(committedBytes);
      const reopened = await Database.open(own.file);
      expect((await reopened.verify()).ok).toBe(true);
      await reopened.close();
    }
  });
});

describe('per-query memoryLimit overrides the database default', () => {
  it('options({ memoryLimit }) makes a query spill on a database with a large default', async () => {
    const { db } = await openData('memory', tempDir(), 256 * 2 ** 20);
    try {
      const orders = await db.register(Orders);
      const q = orders.query().select('id', 'amount', 'note', 'meta', 'ts').orderBy('note').orderBy('amount', 'desc');
      const before = db.stats().spill.runsWritten;
      const plain = await q.toArray();
      expect(db.stats().spill.runsWritten).toBe(before);
      const limited = await q.options({ memoryLimit: LIMIT }).toArray();
      expect(db.stats().spill.runsWritten).toBeGreaterThan(before);
      expect(limited).toEqual(plain);
      expect(db.stats().spill.pagesInUse).toBe(0);
    } finally {
      await db.close();
    }
  });
});

/** (order id, joined row id) pairs, sorted: the join's content independent of output order. */
function pairs(rows: readonly Record<string, any>[], as = 'tag'): string[] {
  return rows.map((r) => `${r.id}:${r[as] === null ? 'null' : r[as].id}`).sort();
}
