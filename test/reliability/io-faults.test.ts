// I/O failures at every I/O call of a workload: a database over a FaultyStore opens a base
// image, runs multi-collection transactions with secondary indexes, a spilling ORDER BY and
// index reads, and closes. A clean run counts the calls; then, for every N, the Nth write,
// sync, read or truncate fails (or the Nth write lands only partly), once ("transient") or
// from then on ("sticky": a dead or full device). Each time:
//   - every operation either succeeds or fails with ModelVaultError code IO, nothing else;
//   - a failed step leaves no pinned snapshot and no spill pages behind, and the live
//     database still shows exactly the last acknowledged state and passes verify();
//   - the durable image, after a power loss (every write since the last completed sync
//     dropped), with an arbitrary subset of those writes, and as the file stands, reopens to
//     the last acknowledged state or to the state of the commit that failed (never a mix,
//     never less than what was acknowledged), with every index agreeing with its rows and
//     verify() clean.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Database, ModelVaultError, model, t } from '../../src/index.js';
import { FileStore } from '../../storage/file-store.js';
import { prng, removeDatabase } from '../crash/crash-helpers.js';
import { FaultyStore, faultyMemoryStore, type FaultPlan, type IoCounts, type IoKind } from './faulty-store.js';
import { PAGE_SIZE, RefState, baseState, buildBaseImage, isIoError, openOver, readState, steps } from './io-workload.js';

const base = baseState();
let baseImage: Uint8Array;
let clean: IoCounts;

const totals = {
  runs: 0,
  faultsInjected: 0,
  byPlan: {} as Record<string, number>,
  failedSteps: 0,
  ackedCommits: 0,
  imagesChecked: 0,
  /** Distinct images actually opened, read back and verified. */
  imagesReopened: 0,
  reopenedAfterFailedCommit: 0,
};

interface Outcome {
  store: FaultyStore;
  acked: number;
  failed: string[];
}

/** Runs the workload over a fresh FaultyStore with `plan`, checking everything listed at the top. */
async function runWorkload(plan: FaultPlan | null, context: string, file: string | null = null): Promise<Outcome> {
  let store: FaultyStore;
  if (file) {
    // Over a real file: the base image written and synced, then a FileStore under the faults.
    fs.writeFileSync(file, baseImage);
    store = new FaultyStore(await FileStore.open(file, { readOnly: false, create: false }), plan);
  } else {
    store = faultyMemoryStore(baseImage, plan);
  }
  let ref = base.clone();
  /** States the durable image may hold: the last acknowledged one, plus failed commits after it. */
  let candidates = [ref.digest()];
  const failed: string[] = [];
  let acked = 0;
  let db: Database | null = null;
  try {
    db = await openOver(store);
  } catch (err) {
    if (!isIoError(err)) throw new Error(`${context}: open failed with ${explain(err)}`, { cause: err });
    failed.push('open');
  }
  if (db) {
    for (const step of steps()) {
      try {
        await step.run(db, ref);
        if (step.apply) { ref = ref.clone(); step.apply(ref); }
        if (step.commits) { candidates = [ref.digest()]; acked++; }
      } catch (err) {
        if (!isIoError(err)) throw new Error(`${context}: step "${step.name}" failed with ${explain(err)}`, { cause: err });
        failed.push(step.name);
        if (step.commits) { const after = ref.clone(); step.apply!(after); candidates.push(after.digest()); }
      }
      const stats = db.stats();
      expect(stats.snapshots, `${context}: pinned snapshots after "${step.name}"`).toBe(0);
      expect(stats.spill.pagesInUse, `${context}: spill pages in use after "${step.name}"`).toBe(0);
    }
    // The live handle: still readable, exactly the last acknowledged state, structurally sound.
    store.paused = true;
    const live = await readState(db);
    expect(live.digest() === ref.digest(), `${context}: the live database differs from the last acknowledged state`).toBe(true);
    const report = await db.verify();
    expect(report.problems, `${context}: live verify`).toEqual([]);
    store.paused = false;
    try {
      await db.close();
    } catch (err) {
      if (!isIoError(err)) throw new Error(`${context}: close failed with ${explain(err)}`, { cause: err });
      failed.push('close');
    }
  }

  // What the disk may hold: after a power loss, after a partial power loss, and as it stands.
  const random = prng(store.counts.write * 31 + store.counts.sync);
  const images: [string, Uint8Array][] = [
    ['power loss', store.powerLoss()],
    ['partial power loss', await store.powerLossSubset(() => random() < 0.5)],
    ['as is', file ? fs.readFileSync(file) : store.currentImage()],
  ];
  for (const [what, image] of images) {
    const where = `${context}: ${what} image`;
    const digest = await reopenedDigest(image, where);
    const which = candidates.indexOf(digest.text);
    if (which < 0) {
      expect.fail(`${where}: holds a state that is neither the last acknowledged one nor a failed commit's (${digest.summary} vs acknowledged ${summary(ref)})`);
    }
    if (which > 0) totals.reopenedAfterFailedCommit++;
    totals.imagesChecked++;
  }
  if (file) {
    // And the file itself, opened where it lies (recovery repairs it on disk).
    const db = await Database.open(file, { pageSize: PAGE_SIZE });
    try {
      const state = await readState(db);
      expect(candidates.includes(state.digest()), `${context}: the file on disk holds ${summary(state)}`).toBe(true);
      expect(fs.statSync(file).size, context).toBe(db.stats().pageCount * PAGE_SIZE);
      expect((await db.verify()).problems, context).toEqual([]);
    } finally {
      await db.close();
    }
  }
  totals.runs++;
  totals.faultsInjected += store.faultsRaised;
  totals.failedSteps += failed.length;
  totals.ackedCommits += acked;
  return { store, acked, failed };
}

function explain(err: unknown): string {
  return err instanceof ModelVaultError ? `ModelVaultError ${err.code}: ${err.message}` : err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

function summary(s: RefState): string {
  return `${s.accounts.size} accounts, ${s.ledger.size} ledger rows, balance total ${s.total}`;
}

/**
 * Image bytes → what reopening them gives. Date.now is fixed during these tests, so equal
 * workloads write equal bytes and an image seen before need not be opened again: the same
 * bytes open the same way.
 */
const reopened = new Map<string, { text: string; summary: string }>();

async function reopenedDigest(image: Uint8Array, where: string): Promise<{ text: string; summary: string }> {
  const key = createHash('sha1').update(image).digest('hex');
  const known = reopened.get(key);
  if (known) return known;
  const db = await Database.openSnapshotBytes(image, { pageSize: PAGE_SIZE }).catch((err: unknown) => {
    throw new Error(`${where} does not open: ${explain(err)}`, { cause: err });
  });
  try {
    const state = await readState(db).catch((err: unknown) => {
      throw new Error(`${where}: reading it back failed: ${explain(err)}`, { cause: err });
    });
    const report = await db.verify();
    expect(report.problems, where).toEqual([]);
    expect(report.ok, where).toBe(true);
    const result = { text: state.digest(), summary: summary(state) };
    reopened.set(key, result);
    totals.imagesReopened++;
    return result;
  } finally {
    await db.close();
  }
}

/** Torn-write lengths, cycled over N: inside a superblock, inside the first page, across pages. */
const SHORT_BYTES = [1, 37, 4096, PAGE_SIZE + 512, 3 * PAGE_SIZE - 8];

async function loop(kind: IoKind, opts: { short?: boolean; sticky?: boolean; stride?: number } = {}): Promise<void> {
  const n = clean[kind];
  const label = `${kind}${opts.short ? ' (short)' : ''}${opts.sticky ? ' (sticky)' : ''}`;
  let tripped = 0;
  for (let at = 1; at <= n; at += opts.stride ?? 1) {
    const plan: FaultPlan = {
      kind, at,
      after: opts.sticky ? 'sticky' : 'transient',
      ...(opts.short ? { shortBytes: SHORT_BYTES[at % SHORT_BYTES.length] } : {}),
    };
    const { store, failed } = await runWorkload(plan, `fault at ${label} #${at} of ${n}`);
    // The fault happened inside the workload, and something reported it.
    expect(store.tripped, `${label} #${at}: the fault point was not reached`).toBe(true);
    expect(failed.length, `${label} #${at}: a failed ${kind} went unreported`).toBeGreaterThan(0);
    tripped++;
  }
  totals.byPlan[label] = tripped;
}

describe('I/O faults at every I/O call of a transactional, spilling workload', () => {
  beforeAll(async () => {
    vi.spyOn(Date, 'now').mockReturnValue(Date.UTC(2024, 0, 1)); // superblock timestamps: equal runs, equal bytes
    baseImage = await buildBaseImage(base);
  });

  afterAll(() => {
    vi.restoreAllMocks();
    console.log(`io-faults: clean run ${JSON.stringify(clean)}; ${JSON.stringify(totals)}`);
  });

  it('runs cleanly without faults and counts its I/O calls', async () => {
    const { store, acked, failed } = await runWorkload(null, 'clean run');
    expect(failed).toEqual([]);
    expect(acked).toBe(steps().filter((s) => s.commits).length);
    clean = { ...store.counts };
    // Every kind of call is exercised, so every loop below has fault points.
    expect(clean.write).toBeGreaterThan(5);
    expect(clean.sync).toBeGreaterThanOrEqual(2 * acked);
    expect(clean.read).toBeGreaterThan(10);
    expect(clean.truncate).toBeGreaterThan(0);
    // The ORDER BY spilled (spill runs are written, read back and then truncated away).
    const db = await openOver(faultyMemoryStore(baseImage));
    try {
      await steps()[1].run(db, base);
      expect(db.stats().spill.runsWritten).toBeGreaterThan(1);
      expect(db.stats().spill.pagesInUse).toBe(0);
    } finally {
      await db.close();
    }
  });

  it('a failed write, at every write', { timeout: 600_000 }, async () => { await loop('write'); });
  it('a torn (short) write, at every write', { timeout: 600_000 }, async () => { await loop('write', { short: true }); });
  it('a failed fsync, at every sync', { timeout: 600_000 }, async () => { await loop('sync'); });
  it('a failed read, at every read', { timeout: 600_000 }, async () => { await loop('read'); });
  it('a failed truncate, at every truncate', { timeout: 600_000 }, async () => { await loop('truncate'); });
  it('an image from snapshotBytes() survives a torn superblock write by its first commit, for either generation parity', async () => {
    const Notes = model('notes', { id: t.int(), text: t.string() }, { primaryKey: 'id' });
    const parities = new Set<number>();
    for (const extraCommits of [0, 1]) {
      const db = await Database.openInMemory({ pageSize: PAGE_SIZE });
      const notes = await db.register(Notes);
      await notes.insert({ id: 1, text: 'kept' });
      for (let i = 0; i < extraCommits; i++) await notes.insert({ id: 10 + i, text: 'also kept' });
      const generation = db.stats().generation;
      parities.add(generation % 2);
      const image = await db.snapshotBytes();
      await db.close();

      // The superblock is the last write of a commit: count the writes of one clean commit.
      const probe = faultyMemoryStore(image);
      const p = await openOver(probe);
      await (await p.collection('notes')).insert({ id: 99, text: 'new' });
      await p.close();
      const superblockWrite = probe.counts.write;

      const store = faultyMemoryStore(image, { kind: 'write', at: superblockWrite, shortBytes: 20 });
      const torn = await openOver(store);
      const err = await (await torn.collection('notes')).insert({ id: 99, text: 'new' }).catch((e: unknown) => e);
      expect(isIoError(err), explain(err)).toBe(true);
      await torn.close();
      for (const image of [store.currentImage(), store.powerLoss()]) {
        const back = await Database.openSnapshotBytes(image);
        try {
          expect(back.stats().generation).toBe(generation);
          expect((await (await back.collection('notes')).query().toArray()).map((r) => r.id).sort((a, b) => (a as number) - (b as number)))
            .toEqual(extraCommits ? [1, 10] : [1]);
          expect((await back.verify()).problems).toEqual([]);
        } finally {
          await back.close();
        }
      }
    }
    expect([...parities].sort()).toEqual([0, 1]);
  });

  it('the same over a real file (FileStore): a failed fsync at every sync, a torn write at every 4th write', { timeout: 600_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mv-io-faults-'));
    try {
      const file = path.join(dir, 'faulty.modelvault');
      const plans: FaultPlan[] = [
        ...Array.from({ length: clean.sync }, (_, i): FaultPlan => ({ kind: 'sync', at: i + 1 })),
        ...Array.from({ length: Math.ceil(clean.write / 4) }, (_, i): FaultPlan => ({ kind: 'write', at: 4 * i + 1, shortBytes: SHORT_BYTES[i % SHORT_BYTES.length] })),
      ];
      for (const plan of plans) {
        const { store, failed } = await runWorkload(plan, `file store, ${plan.kind} #${plan.at}`, file);
        expect(store.tripped).toBe(true);
        expect(failed.length).toBeGreaterThan(0);
        removeDatabase(file);
      }
      totals.byPlan['file store (sync, short write)'] = plans.length;
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a device that dies at the Nth write, every other N (every later write, truncate and sync fails)', { timeout: 600_000 }, async () => {
    await loop('write', { sticky: true, stride: 2 });
  });
});
