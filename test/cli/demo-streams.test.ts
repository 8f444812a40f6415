// The demo end to end; the progress bar on a terminal (and only there); a reader that goes
// away early (`modelvault query ... | head`); and the library's Node stream interop:
// query.stream() under backpressure, insertMany from a piped file stream.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Transform, Writable, pipeline } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database, ModelVaultError } from '../../src/index.js';
import { Orders } from './fixtures/orders-model.js';
import { PROGRESS_BAR_CHARS, ROOT, generateOrders, makeTempDir, removeDir, runScript, toNdjson, type OrderRow } from './helpers.js';

const pipelineAsync = promisify(pipeline);

const N = 5000;
let dir: string;
let rows: OrderRow[];
let ndjson: string;
let file: string; // N orders

beforeAll(async () => {
  dir = makeTempDir('misc');
  rows = generateOrders(N, 3);
  ndjson = path.join(dir, 'orders.ndjson');
  fs.writeFileSync(ndjson, toNdjson(rows));
  file = path.join(dir, 'orders.modelvault');
  const db = await Database.open(file);
  try {
    await (await db.register(Orders)).insertMany(rows);
  } finally {
    await db.close();
  }
});

afterAll(() => removeDir(dir));

describe('demo', () => {
  it('runs with small sizes, exits 0 and reports the plan, spilling, peak memory and its checks', async () => {
    // 0.25 MiB is below what the 20,000-row sort needs, so the demo really spills at this size.
    const r = await runScript('src/demo.ts', ['--rows', '20000', '--customers', '2000', '--memory-mib', '0.25']);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const out = r.stdout;
    expect(out).toContain('ModelVault demo: 20,000 orders, 2,000 customers, memoryLimit 0.3 MiB');
    expect(out).toMatch(/1\. ETL: loaded 20,000 orders \+ 2,000 customers in /);
    expect(out).toContain('explain({ analyze: true })');
    expect(out).toMatch(/HashJoin: .*\[rows in 22000, rows out 20000/);
    expect(out).toMatch(/Sort: by amount desc.*\[rows in 20000, rows out 20000/);
    expect(out).toMatch(/peak memory \d+ bytes of 262144/);
    expect(out).toMatch(/Sort: by amount desc.*spilled [\d.]+ (KiB|MiB) in \d+ runs/);
    expect(out).toMatch(/over all 20,000 orders streamed in .* s, in order:/);
    expect(out).not.toContain('OUT OF ORDER');
    expect(out).toMatch(/spill: [1-9]\d* runs, [\d.]+ MiB written, 0 pages still in use/);
    expect(out).toMatch(/plan: .*IndexScan: orders via index byUser/);
    expect(out).toMatch(/books (\d+) = \1 ✓/);
    expect(out).not.toContain('✗');
    expect(out).toMatch(/Peak RSS of this process: [\d.]+ MiB/);
    // the demo removes its file unless --keep
    const demoFile = /^file: (.*)$/m.exec(out)?.[1];
    expect(demoFile).toBeTruthy();
    expect(fs.existsSync(demoFile!)).toBe(false);
  });

  it('refuses bad flags with one line and the usage, before making a file', async () => {
    const target = path.join(dir, 'flags.modelvault');
    for (const flags of [['--rows', 'abc'], ['--rows', '1e3'], ['--customers', '0'], ['--memory-mib', '0'], ['--bogus']]) {
      const r = await runScript('src/demo.ts', [...flags, '--file', target]);
      expect(r.code, flags.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^demo: .+\nusage: npm run demo -- /);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(fs.existsSync(target)).toBe(false);
    }
  });

  it('removes its file when it fails, with the error code on one line', async () => {
    const target = path.join(dir, 'fails.modelvault');
    // 0.001 MiB cannot hold the join's partition writers: the analytics step fails with ABORTED.
    const r = await runScript('src/demo.ts', ['--rows', '3000', '--customers', '300', '--memory-mib', '0.001', '--file', target]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^demo failed: ABORTED: .*raise memoryLimit\n$/);
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.existsSync(`${target}.lock`)).toBe(false);
  });

  it('removes its file when interrupted (Ctrl-C) in the middle of its load', async () => {
    const target = path.join(dir, 'interrupted.modelvault');
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/demo.ts', '--rows', '5000000', '--file', target], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    // The file exists once the load has begun; 5M rows take far longer than this wait.
    const deadline = Date.now() + 60_000;
    while (!fs.existsSync(target) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(fs.existsSync(target)).toBe(true);
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toContain('demo interrupted');
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.existsSync(`${target}.lock`)).toBe(false);
  });
});

const hasScript = (() => {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('progress bar', () => {
  // The other tests check that piped stderr shows no bar; this checks the bar is drawn at all on
  // a terminal, so that those checks mean something.
  it.skipIf(!hasScript)('is drawn when stderr is a terminal (under script(1))', async () => {
    const target = path.join(dir, 'tty.modelvault');
    const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    const command = [process.execPath, '--import', 'tsx', 'src/cli.ts', 'import', target, 'orders', ndjson, '--infer'].map(quote).join(' ');
    const output = await new Promise<{ code: number | null; text: string }>((resolve, reject) => {
      const child = spawn('script', ['-qec', command, '/dev/null'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.setEncoding('utf8').on('data', (s: string) => { text += s; });
      child.stderr.setEncoding('utf8').on('data', (s: string) => { text += s; });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, text }));
    });
    expect(output.code, output.text).toBe(0);
    expect(output.text).toMatch(PROGRESS_BAR_CHARS);
    expect(output.text).toMatch(/import [\u2588\u2591]+ 100% \|/);
    expect(output.text).toContain(`imported ${N} rows into orders (0 skipped)`);
  });
});

describe('a reader that stops early', () => {
  it('query --ndjson into a pipe closed after the first chunk ends quietly, without a stack trace', async () => {
    const result = await new Promise<{ code: number | null; stderr: string; got: number }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'query', file, 'orders', '--ndjson'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      let got = 0;
      child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
      // like `| head -c 1`: read one chunk, then close the read end of the pipe
      child.stdout.once('data', (chunk: Buffer) => { got = chunk.length; child.stdout.destroy(); });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stderr, got }));
    });
    expect(result.got).toBeGreaterThan(0);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });
});

describe('Node streams in the library', () => {
  it('query.stream() is an object-mode Readable that respects backpressure from a slow Writable', async () => {
    const db = await Database.open(file, { readOnly: true, create: false });
    try {
      const orders = await db.collection('orders');
      const source = orders.query().where('id', '>', 100).orderBy('id').select('id', 'amount').stream();
      expect(source.readableObjectMode).toBe(true);
      const received: { id: number; amount: number }[] = [];
      let maxBuffered = 0;
      let pinned = 0;
      const slow = new Writable({
        objectMode: true,
        highWaterMark: 1,
        write(row: { id: number; amount: number }, _enc, done) {
          maxBuffered = Math.max(maxBuffered, source.readableLength);
          pinned = Math.max(pinned, db.stats().snapshots);
          received.push(row);
          setImmediate(done); // one row per turn of the event loop
        },
      });
      await pipelineAsync(source, slow);
      expect(received).toEqual(rows.filter((x) => x.id > 100).map((x) => ({ id: x.id, amount: x.amount })));
      // the source stops reading while the sink is full: never more than its buffer ahead
      expect(maxBuffered).toBeGreaterThan(0);
      expect(maxBuffered).toBeLessThanOrEqual(source.readableHighWaterMark);
      expect(received.length).toBeGreaterThan(source.readableHighWaterMark * 2);
      // the query held its snapshot while streaming and released it at the end
      expect(pinned).toBeGreaterThan(0);
      expect(db.stats().snapshots).toBe(0);

      // a consumer that stops early ends the query and releases its snapshot too
      const early = orders.query().orderBy('id').stream();
      const firstIds: number[] = [];
      for await (const row of early) {
        firstIds.push((row as { id: number }).id);
        if (firstIds.length === 5) {
          expect(db.stats().snapshots).toBeGreaterThan(0);
          break;
        }
      }
      expect(firstIds).toEqual([1, 2, 3, 4, 5]);
      expect(early.destroyed).toBe(true);
      await new Promise((resolve) => setImmediate(resolve));
      expect(db.stats().snapshots).toBe(0);
    } finally {
      await db.close();
    }
  });

  /** NDJSON bytes to row objects, lines split across chunks, timestamps as Dates. */
  function ndjsonToRows(): Transform {
    let rest = '';
    const toRow = (line: string) => {
      const o = JSON.parse(line) as Record<string, unknown>;
      return { ...o, ts: new Date(o.ts as string) };
    };
    return new Transform({
      readableObjectMode: true,
      transform(chunk: Buffer, _enc, done) {
        const lines = (rest + chunk.toString('utf8')).split('\n');
        rest = lines.pop()!;
        try {
          for (const l of lines) if (l.trim() !== '') this.push(toRow(l));
          done();
        } catch (err) {
          done(err as Error);
        }
      },
      flush(done) {
        try {
          if (rest.trim() !== '') this.push(toRow(rest));
          done();
        } catch (err) {
          done(err as Error);
        }
      },
    });
  }

  it('collection.insertMany() takes a file stream piped through a Transform to objects', async () => {
    const db = await Database.openInMemory();
    try {
      const orders = await db.register(Orders);
      // small chunks, so that lines are split between them
      const n = await orders.insertMany(fs.createReadStream(ndjson, { highWaterMark: 1000 }).pipe(ndjsonToRows()));
      expect(n).toBe(N);
      expect(await orders.count()).toBe(N);
      expect(await orders.query().orderBy('id').toArray()).toEqual(rows);
    } finally {
      await db.close();
    }
  });

  it('insertMany() from a stream with a bad row in the middle stores nothing', async () => {
    const bad = path.join(dir, 'bad-row.ndjson');
    const data = rows.slice(0, 300).map((x) => ({ ...x })) as Record<string, unknown>[];
    data[200] = { ...data[200], qty: 'three' };
    fs.writeFileSync(bad, toNdjson(data));
    const db = await Database.openInMemory();
    try {
      const orders = await db.register(Orders);
      const err = await orders.insertMany(fs.createReadStream(bad, { highWaterMark: 1000 }).pipe(ndjsonToRows())).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ModelVaultError);
      expect(err).toMatchObject({ code: 'VALIDATION' });
      expect((err as Error).message).toMatch(/row 200\b.*qty|qty.*row 200\b/);
      expect(await orders.count()).toBe(0);
    } finally {
      await db.close();
    }
  });
});
