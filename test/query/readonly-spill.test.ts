// A read-only open must not write its file, so its queries spill into a scratch file of the OS
// temp directory instead (unlinked as soon as it is open). Sorts, aggregates and joins larger
// than memoryLimit give the rows a writable open gives, the database file stays byte for byte
// the same, and no scratch file is left behind: not at close, not after a SIGKILL.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database, avg, count, sum } from '../../src/index.js';
import { Customers, Orders, canonAggRows, compareRows, makeCustomers, makeOrders, refAggregate, tempDir, type Order } from './helpers.js';

const N = 12_000;
const LIMIT = 192 * 1024;
const digest = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');
const scratchDirs = () => fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('modelvault-spill-'));

describe('spilling queries on a read-only open', () => {
  let dir: string;
  let file: string;
  let rows: Order[];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mv-ro-spill-'));
    file = path.join(dir, 'orders.modelvault');
    rows = [...makeOrders({ count: N, seed: 17, padBytes: 60 })];
    const db = await Database.open(file, { pageSize: 16384 });
    await (await db.register(Orders)).insertMany(rows);
    await (await db.register(Customers)).insertMany(makeCustomers({ count: 500, seed: 3 }));
    await db.close();
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('sort, group-by and join spill to a scratch file and give the writable answer; the file is untouched', async () => {
    const before = { digest: digest(file), mtime: fs.statSync(file).mtimeMs };
    const scratchBefore = scratchDirs();
    const db = await Database.open(file, { readOnly: true, memoryLimit: LIMIT });
    try {
      const orders = await db.register(Orders);
      const sorted = await orders.query().orderBy('amount', 'desc').orderBy('id').toArray();
      expect(sorted.map((r) => r.id)).toEqual([...rows].sort(compareRows([{ path: 'amount', desc: true }, { path: 'id', desc: false }])).map((r) => r.id));
      expect(db.stats().spill.runsWritten).toBeGreaterThan(0);

      const grouped = await orders.query().groupBy('userId', 'category').aggregate({ n: count(), total: sum('amount'), q: avg('qty') }).toArray();
      expect(canonAggRows(grouped, ['userId', 'category'])).toEqual(canonAggRows(
        refAggregate(rows, ['userId', 'category'], { n: { fn: 'count' }, total: { fn: 'sum', path: 'amount' }, q: { fn: 'avg', path: 'qty' } }), ['userId', 'category']));

      const joined = await orders.query().join(Customers, 'userId', 'id', { as: 'customer' }).groupBy('customer.country').aggregate({ n: count() }).toArray();
      const customers = new Map([...makeCustomers({ count: 500, seed: 3 })].map((c) => [c.id, c.country]));
      const want = new Map<string, number>();
      for (const r of rows) if (customers.has(r.userId)) want.set(customers.get(r.userId)!, (want.get(customers.get(r.userId)!) ?? 0) + 1);
      expect(new Map(joined.map((g) => [g['customer.country'] as string, g.n]))).toEqual(want);

      const analyzed = await orders.query().orderBy('note').explain({ analyze: true });
      expect(analyzed).toMatch(/spilled [\d.]+ (KiB|MiB) in \d+ runs/);
      expect(db.stats().spill.pagesInUse).toBe(0);
    } finally {
      await db.close();
    }
    expect(digest(file)).toBe(before.digest);
    expect(fs.statSync(file).mtimeMs).toBe(before.mtime);
    expect(scratchDirs()).toEqual(scratchBefore);
  });

  it('a read-only process killed in the middle of a spilling sort leaves no scratch file', async () => {
    const scratchBefore = scratchDirs();
    const script = path.join(tempDir(), 'child.mts');
    fs.writeFileSync(script, `
      import { Database } from ${JSON.stringify(path.resolve('src/index.ts'))};
      import { Orders } from ${JSON.stringify(path.resolve('test/query/helpers.ts'))};
      const db = await Database.open(${JSON.stringify(file)}, { readOnly: true, memoryLimit: ${LIMIT} });
      const orders = await db.register(Orders);
      for (;;) for await (const _ of orders.query().orderBy('note')) { process.stdout.write('row\\n'); await new Promise((r) => setTimeout(r, 50)); }
    `);
    const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    const exited = new Promise((resolve) => child.on('close', resolve));
    await new Promise<void>((resolve, reject) => {
      child.stdout.once('data', () => resolve());
      child.once('close', () => reject(new Error(`child ended before its first row: ${stderr}`)));
    });
    // The first row comes after the sort has spilled its runs: its scratch file is open now.
    expect(scratchDirs()).toEqual(scratchBefore);
    child.kill('SIGKILL');
    await exited;
    expect(scratchDirs()).toEqual(scratchBefore);
    const db = await Database.open(file, { recovery: 'strict', readOnly: true });
    expect((await db.verify()).ok).toBe(true);
    await db.close();
  });
});
