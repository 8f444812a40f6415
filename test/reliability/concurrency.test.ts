// Concurrency, bounded in time (RELIABILITY_SECONDS, default 10 s for the in-process run):
//   - in one process, two writer loops move money between accounts in transactions (some of
//     which fail halfway and must roll back) while many readers sum the balances through
//     queries (builder, SQL, aggregate, index scans, a slow consumer holding its snapshot):
//     every read sees the conserved total and a whole number of transfers, never a partial one;
//   - a second process opening the same file for writing gets LOCKED at once, or waits with
//     lockTimeoutMs and gets in when the first closes;
//   - a reader process opening the file read-only while this process writes sees committed
//     states only: the conserved total, every time.
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database, ModelVaultError, count, sum } from '../../src/index.js';
import { makeTempDir, prng, randomInt } from '../crash/crash-helpers.js';
import { childCommand } from './child-command.js';
import { ACCOUNTS, Accounts, BIG_ACCOUNTS, BIG_TOTAL, LedgerBig, OPENING_BALANCE, RollbackProbe, TOTAL, openBank, transfer } from './concurrency-model.js';

const SECONDS = Number(process.env.RELIABILITY_SECONDS ?? 10);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../..');
const CHILD = path.join(HERE, 'concurrency-child.ts');

let tmp: { dir: string; cleanup: () => void };
let childArgs: string[];

function startChild(args: string[]): { child: ChildProcess; lines: string[]; closed: Promise<{ code: number | null; stderr: string }>; waitFor(prefix: string): Promise<string> } {
  const child = spawn(process.execPath, [...childArgs, ...args], { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters: { prefix: string; resolve: (l: string) => void }[] = [];
  let pending = '', stderr = '';
  child.stdout!.setEncoding('utf8');
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => { stderr += c; });
  child.stdin!.on('error', () => undefined);
  child.stdout!.on('data', (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      lines.push(line);
      for (let i = waiters.length - 1; i >= 0; i--) if (line.startsWith(waiters[i].prefix)) waiters.splice(i, 1)[0].resolve(line);
    }
  });
  const closed = new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
  return {
    child, lines, closed,
    waitFor: (prefix) => {
      const seen = lines.find((l) => l.startsWith(prefix));
      if (seen) return Promise.resolve(seen);
      return Promise.race([
        new Promise<string>((resolve) => waiters.push({ prefix, resolve })),
        closed.then(({ code, stderr: e }) => { throw new Error(`child exited (${code}) before "${prefix}": ${e}`); }),
      ]);
    },
  };
}

interface BankCheck { reads: number; slowReads: number; sqlReads: number; indexReads: number }

/** Reads that must always see the conserved total and a whole number of transfers. */
async function checkedRead(db: Database, kind: number, stats: BankCheck): Promise<void> {
  const accounts = await db.collection('accounts');
  switch (kind % 4) {
    case 0: {
      const [agg] = await accounts.query().aggregate({ total: sum('balance'), n: count(), versions: sum('version') }).toArray();
      expect(agg.total, 'aggregate total').toBe(TOTAL);
      expect(agg.n).toBe(ACCOUNTS);
      expect(agg.versions % 2, 'a transfer bumps two versions: an odd sum is half a transfer').toBe(0);
      break;
    }
    case 1: {
      const [row] = await db.sql('SELECT SUM(balance) AS total, COUNT(*) AS n FROM accounts').toArray();
      expect(row.total, 'SQL total').toBe(TOTAL);
      stats.sqlReads++;
      break;
    }
    case 2: {
      // An index range scan (byOwner) over every account, in one snapshot.
      let total = 0, n = 0;
      for (const r of await accounts.query().where('owner', 'startsWith', 'owner').select('balance').toArray()) { total += r.balance as number; n++; }
      expect(n).toBe(ACCOUNTS);
      expect(total, 'index scan total').toBe(TOTAL);
      stats.indexReads++;
      break;
    }
    case 3: {
      // A slow consumer: one snapshot held across many event-loop turns while commits go on.
      let total = 0, versions = 0, n = 0;
      for await (const r of accounts.query().select('balance', 'version')) {
        total += r.balance as number;
        versions += r.version as number;
        n++;
        if (n % 8 === 0) await new Promise((resolve) => setImmediate(resolve));
      }
      expect(total, 'slow consumer total').toBe(TOTAL);
      expect(versions % 2).toBe(0);
      stats.slowReads++;
      break;
    }
  }
  stats.reads++;
}

describe('concurrent readers and writers', () => {
  beforeAll(async () => {
    tmp = makeTempDir('mv-concurrency-');
    childArgs = await childCommand(CHILD, tmp.dir);
  });
  afterAll(() => tmp?.cleanup());

  it(`in one process: two writer loops and six readers for ${SECONDS} s; every read sees the conserved total`, { timeout: 120_000 + SECONDS * 3000 }, async () => {
    const file = path.join(tmp.dir, 'bank.modelvault');
    const db = await Database.open(file, { cacheSize: 4 << 20, memoryLimit: 1 << 20 });
    try {
      await openBank(db);
      const deadline = Date.now() + SECONDS * 1000;
      const stats: BankCheck = { reads: 0, slowReads: 0, sqlReads: 0, indexReads: 0 };
      let nextId = 1, committed = 0, rolledBack = 0;
      const committedIds = new Set<number>();
      const writer = async (seed: number) => {
        const random = prng(seed);
        while (Date.now() < deadline) {
          const from = randomInt(random, 0, ACCOUNTS);
          const to = (from + randomInt(random, 1, ACCOUNTS)) % ACCOUNTS;
          const id = nextId++;
          const fail = random() < 0.1;
          try {
            await transfer(db, id, from, to, randomInt(random, 1, 200), fail);
            committed++;
            committedIds.add(id);
          } catch (err) {
            if (!(err instanceof RollbackProbe)) throw err;
            rolledBack++;
          }
        }
      };
      const reader = async (k: number) => {
        let kind = k;
        while (Date.now() < deadline) await checkedRead(db, kind++, stats);
      };
      await Promise.all([writer(1), writer(2), ...Array.from({ length: 6 }, (_, k) => reader(k))]);

      // The ledger holds exactly the committed transfers, and replaying it gives every balance.
      const transfers = await (await db.collection('transfers')).query().toArray();
      expect(transfers.map((t) => t.id as number).sort((a, b) => a - b)).toEqual([...committedIds].sort((a, b) => a - b));
      const balances = new Array(ACCOUNTS).fill(TOTAL / ACCOUNTS);
      for (const t of transfers) { balances[t.from as number] -= t.amount as number; balances[t.to as number] += t.amount as number; }
      const rows = await db.register(Accounts).then((a) => a.query().orderBy('id').toArray());
      expect(rows.map((r) => r.balance)).toEqual(balances);
      expect((await db.verify()).problems).toEqual([]);
      expect(stats.reads).toBeGreaterThan(0);
      expect(stats.slowReads).toBeGreaterThan(0);
      expect(committed).toBeGreaterThan(0);
      expect(rolledBack).toBeGreaterThan(0);
      console.log(`concurrency (one process, ${SECONDS} s): ${committed} transfers committed, ${rolledBack} rolled back, ${stats.reads} checked reads ${JSON.stringify(stats)}`);
    } finally {
      await db.close();
    }
  });

  it('a second process opening the file for writing gets LOCKED, or waits with lockTimeoutMs', { timeout: 120_000 }, async () => {
    const file = path.join(tmp.dir, 'locked.modelvault');
    const db = await Database.open(file);
    await openBank(db);
    const probe = startChild(['probe', file, '0']);
    expect(await probe.waitFor('')).toBe('error LOCKED');
    expect((await probe.closed).code).toBe(0);

    // With a timeout: it waits, and gets in once this process closes.
    const waiting = startChild(['probe', file, '60000']);
    await new Promise((r) => setTimeout(r, 300));
    expect(waiting.lines).toEqual([]);
    await db.close();
    expect(await waiting.waitFor('')).toBe('opened');
    expect((await waiting.closed).code).toBe(0);

    // The other way round: a child holds the file, this process gets LOCKED; after it exits, this process opens.
    const holder = startChild(['hold', file]);
    await holder.waitFor('ready');
    const err = await Database.open(file).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(ModelVaultError);
    expect((err as ModelVaultError).code).toBe('LOCKED');
    expect(await Database.open(file, { readOnly: true }).then(async (ro) => { await ro.close(); return 'read-only is fine'; })).toBe('read-only is fine');
    holder.child.stdin!.end();
    expect((await holder.closed).code).toBe(0);
    const again = await Database.open(file);
    expect(await (await again.collection('accounts')).count()).toBe(ACCOUNTS);
    await again.close();
  });

  it('a read-only reader process sees only committed states while this process writes', { timeout: 120_000 + SECONDS * 3000 }, async () => {
    const file = path.join(tmp.dir, 'shared.modelvault');
    const db = await Database.open(file, { cacheSize: 4 << 20 });
    let committed = 0;
    try {
      await openBank(db);
      const reader = startChild(['reader', file]);
      await reader.waitFor('read ');
      const random = prng(99);
      const deadline = Date.now() + Math.max(2, SECONDS / 4) * 1000;
      let id = 1;
      while (Date.now() < deadline) {
        const from = randomInt(random, 0, ACCOUNTS);
        await transfer(db, id++, from, (from + 1 + randomInt(random, 0, ACCOUNTS - 1)) % ACCOUNTS, randomInt(random, 1, 100));
        committed++;
      }
      reader.child.stdin!.end();
      const { code, stderr } = await reader.closed;
      expect(stderr).toBe('');
      expect(code).toBe(0);
      const reads = reader.lines.filter((l) => l.startsWith('read '));
      const errors = reader.lines.filter((l) => l.startsWith('error '));
      const generations = new Set(reads.map((l) => l.split(' ')[3]));
      console.log(`concurrency (read-only process): ${reads.length} reads over ${generations.size} generations while ${committed} transfers committed; ${errors.length} errors${errors.length ? `: ${errors.slice(0, 3).join(' | ')}` : ''}`);
      for (const l of reads) expect(l.split(' ').slice(1, 3), l).toEqual([String(TOTAL), String(ACCOUNTS)]);
      // A read that overlaps the writer's reuse of its pages is detected and refused, never answered wrongly.
      expect(errors.filter((l) => !l.startsWith('error ABORTED') || !l.includes('changed by another process')), 'reader errors other than a detected change').toEqual([]);
      expect(reads.length).toBeGreaterThan(0);
      expect(generations.size, 'the reader saw the writes progress').toBeGreaterThan(1);
    } finally {
      await db.close();
    }
    const [agg] = await Database.open(file, { readOnly: true }).then(async (ro) => {
      try { return await (await ro.collection('accounts')).query().aggregate({ total: sum('balance') }).toArray(); } finally { await ro.close(); }
    });
    expect(agg.total).toBe(TOTAL);
  });

  // KNOWN BUG (reported, not fixed): the writer reuses pages freed by its earlier commits as
  // soon as no reader *in its own process* needs them; it cannot know about a read-only handle
  // in another process. A reader whose query runs across two of the writer's commits then reads
  // reused pages, which pass their checksum and page-number checks (they are valid pages of a
  // newer generation), and gets a mix of states: wrong totals and wrong rows, with no error.
  // Pages carry the generation that wrote them, so the reader detects it: a page newer than its
  // snapshot means reuse, and the read fails with ABORTED ("changed by another process") instead.
  it('a read-only reader process with queries spanning commits sees only committed states or fails cleanly', { timeout: 120_000 + SECONDS * 3000 }, async () => {
    const file = path.join(tmp.dir, 'shared-big.modelvault');
    const db = await Database.open(file, { cacheSize: 4 << 20, pageSize: 16384 });
    try {
      const ledger = await db.register(LedgerBig);
      await ledger.insertMany(Array.from({ length: BIG_ACCOUNTS }, (_, id) => ({ id, balance: OPENING_BALANCE, memo: `account ${id}`.padEnd(120, '.') })));
      const reader = startChild(['slow-reader', file]);
      await reader.waitFor('read ');
      const random = prng(7);
      const deadline = Date.now() + Math.max(2, SECONDS / 4) * 1000;
      let commits = 0;
      while (Date.now() < deadline || reader.lines.length < 20) {
        await db.transaction(async (tx) => {
          const c = tx.collection(LedgerBig);
          for (let j = 0; j < 20; j++) {
            const a = randomInt(random, 0, BIG_ACCOUNTS), b = (a + 1 + randomInt(random, 0, BIG_ACCOUNTS - 1)) % BIG_ACCOUNTS;
            const ra = await c.get(a), rb = await c.get(b);
            await c.update(a, { balance: ra!.balance - 1 });
            await c.update(b, { balance: rb!.balance + 1 });
          }
        });
        commits++;
        if (Date.now() > deadline + 60_000) break;
      }
      reader.child.stdin!.end();
      await reader.closed;
      const reads = reader.lines.filter((l) => l.startsWith('read '));
      const wrong = reads.filter((l) => l.split(' ')[1] !== String(BIG_TOTAL) || l.split(' ')[2] !== String(BIG_ACCOUNTS));
      const errors = reader.lines.filter((l) => l.startsWith('error '));
      console.log(`concurrency (slow read-only process): ${reads.length} reads, ${wrong.length} saw a mixed state, ${errors.length} detected a concurrent change, while ${commits} commits`);
      expect(wrong, 'reads that saw no committed state').toEqual([]);
      expect(errors.filter((l) => !l.startsWith('error ABORTED') || !l.includes('changed by another process')), 'reader errors other than a detected change').toEqual([]);
      expect(reads.length, 'reads that completed').toBeGreaterThan(0);
    } finally {
      await db.close();
    }
  });
});
