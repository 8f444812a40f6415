// I/O faults inside spilling operators: a group-by and a join that partition into spill runs
// (48 KiB memoryLimit, 16 KiB pages) over a FaultyStore, with the Nth write or read of the
// query failing, for every N. Each run either gives the clean run's rows or fails with code IO,
// and leaves no spill page and no snapshot behind, whichever writer or reader failed (a
// group-by's partition writer failing as it finished left the writers after it holding their
// pages, and a join re-partitioning a partition kept the build side's new partitions when the
// probe side's failed).
import { beforeAll, describe, expect, it } from 'vitest';
import { count, sum, type Database } from '../../src/index.js';
import { expectCode } from '../query/helpers.js';
import { faultyMemoryStore, type FaultyStore, type IoKind } from './faulty-store.js';
import { baseState, buildBaseImage, isIoError, openOver } from './io-workload.js';

let baseImage: Uint8Array;

const sortedBy = <T extends Record<string, unknown>>(rows: T[], key: (r: T) => string) => rows.map((r) => [key(r), r] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([, r]) => r);

const QUERIES: Record<string, (db: Database) => Promise<unknown[]>> = {
  // Sorted here, not by the query: a sort above would take the room the partitions need.
  'group-by': async (db) => sortedBy(await (await db.collection('ledger')).query()
    .groupBy('account', 'memo').aggregate({ n: count(), total: sum('amount') }).toArray(), (r) => `${r.account}:${r.memo}`),
  join: async (db) => {
    const ledger = await db.collection('ledger');
    const rows = await ledger.query().select('id', 'account').join(ledger.query().where('amount', '>', 0), 'account', 'account', { as: 'other', type: 'inner' }).toArray();
    return sortedBy(rows, (r) => `${r.id}:${(r.other as { id: number }).id}`);
  },
};

describe('I/O faults inside spilling operators', () => {
  beforeAll(async () => {
    baseImage = await buildBaseImage(baseState());
  });

  it('a group-by with no room for even one group fails at once, not after every re-partitioning level', async () => {
    const db = await openOver(faultyMemoryStore(baseImage));
    try {
      // The sort above keeps its writer's page: 48 KiB leaves the group-by its partition writers only.
      const q = (await db.collection('ledger')).query().groupBy('account', 'memo').aggregate({ n: count() }).orderBy('n');
      const err = await expectCode(() => q.toArray(), 'ABORTED');
      expect(err.message).toMatch(/re-partitionings \(one group does not fit\)/);
      expect(db.stats().spill.pagesInUse).toBe(0);
    } finally {
      await db.close();
    }
  });

  describe.each(Object.keys(QUERIES))('%s', (name) => {
    const query = QUERIES[name];

    it.each(['write', 'read'] as IoKind[])('a failed %s at every call of the query', async (kind) => {
      const store: FaultyStore = faultyMemoryStore(baseImage);
      const db = await openOver(store);
      try {
        const before = store.counts[kind];
        const want = await query(db);
        const calls = store.counts[kind] - before;
        // The query spilled, so the loop below fails its spill writes and reads.
        expect(db.stats().spill.runsWritten).toBeGreaterThan(2);
        expect(calls).toBeGreaterThan(kind === 'write' ? 4 : 0);
        let failures = 0;
        for (let n = 1; n <= calls; n++) {
          store.arm({ kind, at: store.counts[kind] + n });
          try {
            expect(await query(db), `${kind} ${n} of ${calls}`).toEqual(want);
          } catch (err) {
            if (!isIoError(err)) throw err;
            failures++;
          }
          store.arm(null);
          const stats = db.stats();
          expect(stats.spill.pagesInUse, `spill pages after a failed ${kind} ${n} of ${calls}`).toBe(0);
          expect(stats.snapshots, `snapshots after a failed ${kind} ${n} of ${calls}`).toBe(0);
        }
        if (kind === 'write') expect(failures).toBe(calls); // every write of the query is a spill write
      } finally {
        await db.close();
      }
    }, 120_000);
  });
});
