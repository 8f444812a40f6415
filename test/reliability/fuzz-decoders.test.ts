// Random and mutated bytes into every decoder of the file format and of the row, catalog and
// spill encodings (see fuzz-worker.ts for the properties): each returns a well-formed result
// or throws a ModelVaultError (CORRUPT / NOT_A_DATABASE / UNSUPPORTED_VERSION), never another
// error, never a hang. The properties run in a worker thread under a watchdog: a decoder that
// loops is terminated and reported instead of stalling the suite.
//
// RELIABILITY_FUZZ_RUNS sets the cases per property (default 2000); FUZZ_SEED the seed.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FuzzMessage, FuzzRequest } from './fuzz-worker.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const NUM_RUNS = Number(process.env.RELIABILITY_FUZZ_RUNS ?? 2000);
const SEED = Number(process.env.FUZZ_SEED ?? 0xf022);
/** Silence from the worker for this long means a decoder is stuck (each property takes well under a second per thousand cases). */
const WATCHDOG_MS = 120_000;

const DECODERS = [
  'decodeHeader', 'decodeHeader (checksum recomputed)', 'decodeSuperblock', 'decodeSuperblock (checksum recomputed)',
  'verifyPage', 'verifyPage → decodeNode (a whole page through the read path)', 'decodeNode (mutated leaf and branch bodies)',
  'decodeNode (random bodies)', 'LeafView', 'BranchView', 'catalog decodeMeta',
  'catalog decodeMeta → CollectionLayout (a collection opened from a damaged catalog entry)',
  'RowCodec.decode', 'columnCodec(...).decode', 'spill decodeBatch',
];

interface Result { cases: number; failed: boolean; message: string | null }

/** Runs fuzz-worker.ts (TypeScript, through tsx's loader) and collects one result per property. */
function runWorker(request: FuzzRequest): Promise<{ results: Map<string, Result>; hung: string | null }> {
  const require = createRequire(import.meta.url);
  const tsxApi = require.resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs');
  const boot = `import { register } from ${JSON.stringify(pathToFileURL(tsxApi).href)};
register();
await import(${JSON.stringify(pathToFileURL(path.join(HERE, 'fuzz-worker.ts')).href)});`;
  const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(boot)}`), { workerData: request });
  const results = new Map<string, Result>();
  let running: string | null = 'worker start-up';
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        void worker.terminate();
        resolve({ results, hung: running });
      }, WATCHDOG_MS);
    };
    arm();
    worker.on('message', (m: FuzzMessage) => {
      arm();
      if (m.type === 'start') running = m.name;
      else if (m.type === 'result') { results.set(m.name, m); running = null; }
      else { clearTimeout(timer); void worker.terminate(); resolve({ results, hung: null }); }
    });
    worker.on('error', (err) => { clearTimeout(timer); reject(err); });
    worker.on('exit', (code) => {
      clearTimeout(timer);
      if (running !== null) resolve({ results, hung: `${running} (worker exited with code ${code})` });
    });
  });
}

describe(`decoders under random and mutated bytes (${NUM_RUNS} cases per property, FUZZ_SEED=${SEED})`, () => {
  let run: { results: Map<string, Result>; hung: string | null };
  beforeAll(async () => {
    run = await runWorker({ numRuns: NUM_RUNS, seed: SEED });
  }, WATCHDOG_MS * 2);

  afterAll(() => {
    const cases = [...(run?.results.values() ?? [])].reduce((n, r) => n + r.cases, 0);
    console.log(`fuzz-decoders: ${cases} cases over ${run?.results.size ?? 0} properties (seed ${SEED})`);
  });

  it('the worker finished every property without hanging', () => {
    expect(run.hung, `stuck in: ${run.hung}`).toBeNull();
    expect(run.results.get('worker')?.message ?? null).toBeNull();
    expect([...run.results.keys()].sort()).toEqual([...DECODERS].sort());
  });

  it.each(DECODERS)('%s: a result or a ModelVaultError, nothing else', (name) => {
    const r = run.results.get(name);
    expect(r, `no result for ${name}`).toBeDefined();
    expect(r!.failed, r!.message ?? '').toBe(false);
    expect(r!.cases).toBe(NUM_RUNS);
  });
});
