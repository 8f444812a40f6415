// Child process of kill-during-commit.test.ts: prints "opening", opens FILE (recovering what the
// last kill left), checks it holds exactly commit START-1, prints "ready", then commits START,
// START+1, ... forever, printing "ack <seq>" after each commit has returned (so is durable).
// The parent kills it with SIGKILL at a random moment.
//
//   node --import tsx test/crash/commit-child.ts FILE START
//   node --import tsx test/crash/commit-child.ts FILE -     (loads, then waits for "go START" on stdin)
//
// The second form lets the parent start the next child while it checks the last kill, so each
// round does not pay for Node and tsx starting up; the file is not touched before "go".
import { StorageEngine } from '../../storage/engine.js';
import { PAGE_SIZE, applyCommit, readCounter } from './commit-model.js';

const MAX_LIFETIME_MS = 60_000; // never outlive a parent that died without killing us

/** The START of a "go START" line on stdin; exits quietly when stdin closes first (the parent is gone). */
function waitForGo(): Promise<number> {
  return new Promise((resolve) => {
    let buffered = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk: string) => {
      buffered += chunk;
      const m = /^go (\d+)\n/.exec(buffered);
      if (m) {
        process.stdin.pause();
        resolve(Number(m[1]));
      }
    });
    process.stdin.on('end', () => process.exit(0));
  });
}

async function main(): Promise<void> {
  const [file, startArg] = process.argv.slice(2);
  setTimeout(() => process.exit(3), MAX_LIFETIME_MS).unref();
  const start = startArg === '-' ? await waitForGo() : Number(startArg);
  if (!file || !Number.isInteger(start) || start < 1) throw new Error('usage: commit-child.ts FILE START|-');

  process.stdout.write('opening\n');
  const engine = await StorageEngine.open(file, { recovery: 'truncate', pageSize: PAGE_SIZE, cacheSize: 4 << 20 });
  const snap = engine.snapshot();
  const counter = await readCounter(snap);
  snap.release();
  if (counter !== start - 1) throw new Error(`file holds commit ${counter}, expected ${start - 1}`);
  process.stdout.write('ready\n');

  for (let seq = start; ; seq++) {
    await engine.write((tx) => applyCommit(tx, seq));
    process.stdout.write(`ack ${seq}\n`); // a pipe: written synchronously, before the next commit starts
  }
}

main().catch((err) => {
  process.stderr.write(`commit-child failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(2);
});
