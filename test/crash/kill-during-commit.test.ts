// A writer process killed with SIGKILL at random moments, over and over on one file: after
// each kill, reopening gives exactly the state of some commit >= the last acknowledged one
// (that one, or the next when it finished before its ack was read), never a mix of two.
//
// The parent checks a copy of the file as the kill left it, so the next child recovers the
// original itself (and may be killed while doing so); the child refuses to start unless its own
// recovery found the same commit the parent did.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { StorageEngine } from '../../storage/engine.js';
import { ModelVaultError } from '../../storage/errors.js';
import { META, PAGE_SIZE, TREES, expectedState, readCounter, readTree } from './commit-model.js';
import { makeTempDir, prng, randomInt, removeDatabase } from './crash-helpers.js';

const ROUNDS = 50;
const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '../..');
const CHILD = path.join(HERE, 'commit-child.ts');
const CHILD_STARTUP_LIMIT_MS = 20_000; // a child that never gets ready fails the test instead of hanging it

type KillPlan =
  | { kind: 'afterReady'; delayMs: number }          // somewhere in the commit loop
  | { kind: 'duringOpen'; delayMs: number }          // while it opens (and recovers) the file
  | { kind: 'afterAcks'; acks: number; delayMs: number };

interface ChildRun {
  acked: number; // highest seq acknowledged (start - 1 when none)
  signal: NodeJS.Signals | null;
  code: number | null;
  stderr: string;
}

/**
 * A child started ahead of its round: Node and tsx load while the previous round runs, and the
 * file is untouched until `run` sends "go START". `run` SIGKILLs it according to `plan`.
 */
class WarmChild {
  private readonly child: ChildProcess;
  private readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private stderr = '';
  private started = false;

  constructor(file: string) {
    // `--import tsx` is tsx's loader for Node >= 20.6, resolved from the repository's node_modules.
    this.child = spawn(process.execPath, ['--import', 'tsx', CHILD, file, '-'], { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (chunk: string) => { this.stderr += chunk; });
    this.child.stdin!.on('error', () => undefined); // a child that died early: reported through 'close'
    // 'close' comes after stdout is drained: every ack written before the kill has been seen.
    this.closed = new Promise((resolve, reject) => {
      this.child.on('error', reject);
      this.child.on('close', (code, signal) => resolve({ code, signal }));
    });
  }

  async run(start: number, plan: KillPlan): Promise<ChildRun> {
    this.started = true;
    let acked = start - 1, acks = 0, pending = '', scheduled = false, protocolError: Error | null = null;
    const kill = () => { this.child.kill('SIGKILL'); };
    const schedule = (delayMs: number) => {
      if (scheduled) return;
      scheduled = true;
      if (delayMs <= 0) kill();
      else setTimeout(kill, delayMs);
    };
    const fail = (err: Error) => { protocolError ??= err; kill(); };
    const startup = setTimeout(kill, CHILD_STARTUP_LIMIT_MS);
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (chunk: string) => {
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line === 'opening') {
          if (plan.kind === 'duringOpen') schedule(plan.delayMs);
        } else if (line === 'ready') {
          clearTimeout(startup);
          if (plan.kind === 'afterReady') schedule(plan.delayMs);
        } else {
          const m = /^ack (\d+)$/.exec(line);
          if (!m) return fail(new Error(`unexpected child output: ${line}`));
          const seq = Number(m[1]);
          if (seq !== acked + 1) return fail(new Error(`ack ${seq} after ack ${acked}`));
          acked = seq;
          if (plan.kind === 'afterAcks' && ++acks >= plan.acks) schedule(plan.delayMs);
        }
      }
    });
    this.child.stdin!.write(`go ${start}\n`);
    const { code, signal } = await this.closed;
    clearTimeout(startup);
    if (protocolError) throw protocolError;
    return { acked, signal, code, stderr: this.stderr };
  }

  /** Kills a child that was never started (the spare left at the end). */
  async dispose(): Promise<void> {
    if (this.started) return;
    this.child.kill('SIGKILL');
    await this.closed.catch(() => undefined);
  }
}

interface Checked {
  counter: number;
  recovered: boolean;
  truncatedBytes: number;
}

/**
 * Opens `file` as a crash left it: strict refuses exactly when truncate has something to repair;
 * the state is exactly commit `counter` for a counter in `allowed`; verify() is clean.
 */
async function checkCrashedFile(file: string, allowed: readonly number[], context: string): Promise<Checked> {
  const sizeBefore = fs.statSync(file).size;
  const strict = await StorageEngine.open(file, { recovery: 'strict', pageSize: PAGE_SIZE }).then(
    async (engine) => { await engine.close(); return null; },
    (err: unknown) => err,
  );
  if (strict !== null) {
    expect(strict, context).toBeInstanceOf(ModelVaultError);
    expect((strict as ModelVaultError).code, context).toBe('CORRUPT');
  }
  // (An empty file, left by a kill while the first child created it, opens as a new database.)
  const size = fs.statSync(file).size;
  if (sizeBefore > 0) expect(size, `${context}: strict open changed the file`).toBe(sizeBefore);

  const engine = await StorageEngine.open(file, { recovery: 'truncate', pageSize: PAGE_SIZE });
  try {
    const info = engine.recoveryInfo;
    expect(info !== null, `${context}: strict ${strict ? 'refused' : 'accepted'} the file, truncate reported ${JSON.stringify(info)}`)
      .toBe(strict !== null);
    // Recovery leaves exactly the committed image and reports what it cut.
    const { pageCount, pageSize } = engine.stats();
    expect(pageSize, context).toBe(PAGE_SIZE);
    const committedBytes = pageCount * pageSize;
    expect(fs.statSync(file).size, context).toBe(committedBytes);
    expect(info?.truncatedBytes ?? 0, context).toBe(size - committedBytes);

    const snap = engine.snapshot();
    let counter: number;
    try {
      counter = await readCounter(snap);
      expect(allowed, `${context}: the file holds commit ${counter}`).toContain(counter);
      expect(await snap.names(), context).toEqual(counter > 0 ? ['a', 'b', META] : []);
      const expected = expectedState(counter);
      for (const tree of [...TREES, META] as const) {
        const actual = await readTree(snap, tree);
        const where = `${context}: tree ${tree} at commit ${counter}`;
        expect(actual.size, where).toBe(expected[tree].size);
        for (const [key, value] of expected[tree]) {
          const got = actual.get(key);
          if (!got || !got.equals(value)) expect.fail(`${where}: key ${key} ${got ? `holds ${got.byteLength} wrong bytes` : 'is missing'}`);
        }
      }
    } finally {
      snap.release();
    }
    const report = await engine.verify();
    expect(report.problems, context).toEqual([]);
    return { counter, recovered: info !== null, truncatedBytes: info?.truncatedBytes ?? 0 };
  } finally {
    await engine.close();
  }
}

describe('a writer killed with SIGKILL during commits (file store)', () => {
  const tmp = makeTempDir('mv-kill-');
  afterAll(() => tmp.cleanup());

  it(`keeps every acknowledged commit and nothing partial, over ${ROUNDS} kills`, { timeout: 240_000 }, async () => {
    const seed = Number(process.env.CRASH_SEED ?? 0x5eed);
    const random = prng(seed);
    const file = path.join(tmp.dir, 'kill.modelvault');
    const copy = path.join(tmp.dir, 'check.modelvault');
    let committed = 0; // the commit the file holds, as last verified
    const stats = { rounds: 0, commits: 0, aheadOfAck: 0, recovered: 0, truncatedBytes: 0, plans: {} as Record<string, number> };

    let next = new WarmChild(file);
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const r = random();
        const plan: KillPlan = r < 0.55 ? { kind: 'afterReady', delayMs: randomInt(random, 20, 301) }
          : r < 0.7 ? { kind: 'afterReady', delayMs: randomInt(random, 0, 20) }
            : r < 0.8 ? { kind: 'duringOpen', delayMs: randomInt(random, 0, 5) }
              : { kind: 'afterAcks', acks: randomInt(random, 1, 41), delayMs: random() < 0.5 ? 0 : randomInt(random, 1, 4) };
        stats.plans[plan.kind] = (stats.plans[plan.kind] ?? 0) + 1;
        const context = `round ${round} (CRASH_SEED=${seed}, ${JSON.stringify(plan)}, from commit ${committed + 1})`;

        const current = next;
        next = new WarmChild(file); // loads while this round runs and is checked
        const run = await current.run(committed + 1, plan);
        // It died by our SIGKILL, not by an error of its own (such as recovering a different commit).
        expect(run.stderr, context).toBe('');
        expect({ signal: run.signal, code: run.code }, context).toEqual({ signal: 'SIGKILL', code: null });

        if (!fs.existsSync(file)) {
          // Killed before the first child created the file: nothing can have been committed.
          expect(committed, context).toBe(0);
          expect(run.acked, context).toBe(0);
          stats.rounds++;
          continue;
        }
        removeDatabase(copy);
        fs.copyFileSync(file, copy);
        const checked = await checkCrashedFile(copy, [run.acked, run.acked + 1], context);
        if (checked.counter === run.acked + 1) stats.aheadOfAck++;
        if (checked.recovered) stats.recovered++;
        stats.truncatedBytes += checked.truncatedBytes;
        stats.commits += checked.counter - committed;
        committed = checked.counter;
        stats.rounds++;
      }
    } finally {
      await next.dispose();
    }

    // The original, as the last kill left it, recovers to the same commit.
    expect((await checkCrashedFile(file, [committed], 'final file')).counter).toBe(committed);
    expect(stats.rounds).toBe(ROUNDS);
    expect(committed).toBeGreaterThan(ROUNDS); // the rounds did real work between kills
    console.log(`kill-during-commit: ${JSON.stringify(stats)}, final commit ${committed}, file ${fs.statSync(file).size} bytes`);
  });
});
