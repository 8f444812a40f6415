// `npm run demo`: the main job end to end on generated data. An ETL step streams a million
// orders into a .modelvault file with insertMany; an analytics query joins, aggregates and
// sorts them under a memory limit far below the data size (so the operators spill into the
// file); then `for await` over an indexed query and the in-memory mode with a snapshot round
// trip. Flags: --rows N (default 1,000,000), --customers N, --memory-mib N (default 8), --file PATH, --keep.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Database, ModelVaultError, avg, count, model, sum, t } from './index.js';

const USAGE = 'usage: npm run demo -- [--rows N] [--customers N] [--memory-mib MIB] [--file PATH] [--keep]';

/** Bad flags end the demo with one line and the usage, before any file is made. */
function usageError(message: string): never {
  process.stderr.write(`demo: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function parseFlags() {
  try {
    return parseArgs({
      options: {
        rows: { type: 'string', default: '1000000' },
        customers: { type: 'string', default: '100000' },
        'memory-mib': { type: 'string', default: '8' },
        file: { type: 'string' },
        keep: { type: 'boolean', default: false },
      },
    }).values;
  } catch (err) {
    return usageError((err as Error).message);
  }
}

function wholeNumber(flag: string, text: string, min: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < min) usageError(`--${flag} must be a whole number of at least ${min}, not '${text}'`);
  return n;
}

const args = parseFlags();
const ROWS = wholeNumber('rows', args.rows, 1);
const CUSTOMERS = wholeNumber('customers', args.customers, 1);
const memoryMiB = Number(args['memory-mib']);
if (!(memoryMiB > 0) || !Number.isFinite(memoryMiB)) usageError(`--memory-mib must be a positive number, not '${args['memory-mib']}'`);
const MEMORY_LIMIT = Math.round(memoryMiB * 2 ** 20);
const file = args.file ?? path.join(os.tmpdir(), `modelvault-demo-${process.pid}.modelvault`);

/** The demo's file is scratch: removed at the end, on failure and on Ctrl-C, unless --keep. */
function removeDemoFile(): void {
  if (args.keep) return;
  fs.rmSync(file, { force: true });
  fs.rmSync(`${file}.lock`, { force: true });
}

for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.on(signal, () => {
    removeDemoFile();
    process.stderr.write(`\ndemo interrupted${args.keep ? `; kept ${file}` : ''}\n`);
    process.exit(code);
  });
}

export const Customers = model('customers', {
  id: t.int(),
  name: t.string(),
  country: t.enum(['FR', 'DE', 'US', 'JP', 'BR', 'IN', 'GB', 'ES']),
}, { primaryKey: 'id' });

export const Orders = model('orders', {
  id: t.int(),
  userId: t.int(),
  category: t.string(),
  amount: t.float().min(0),
  qty: t.int().min(1),
  ts: t.timestamp(),
  note: t.string().optional(),
}, { primaryKey: 'id', indexes: [{ name: 'byUser', fields: ['userId'] }] });

const CATEGORIES = ['books', 'games', 'garden', 'music', 'tools', 'toys', 'food', 'sports', 'beauty', 'auto',
  'baby', 'office', 'pets', 'shoes', 'home', 'health', 'movies', 'phones', 'tv', 'watches'];

/** A small deterministic PRNG, so every run sees the same data. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0) / 2 ** 32);
}

/** The "extract" side of the ETL step: raw events as an upstream system would send them. */
async function* rawEvents(n: number): AsyncGenerator<{ order_id: string; customer: string; cat: string; cents: number; count: number; at: string; comment: string }> {
  const r = rng(42);
  const start = Date.UTC(2025, 0, 1);
  for (let i = 0; i < n; i++) {
    yield {
      order_id: String(i + 1),
      customer: `C${Math.floor(r() * CUSTOMERS)}`,
      cat: CATEGORIES[Math.floor(r() * r() * CATEGORIES.length)],
      cents: Math.floor(r() * 50_000),
      count: 1 + Math.floor(r() * 5),
      at: new Date(start + Math.floor(r() * 365 * 86_400_000)).toISOString(),
      comment: r() < 0.3 ? `gift wrap please, order ${i + 1}` : '',
    };
  }
}

/** The "transform" side: typed, validated rows for insertMany. */
async function* transform(events: AsyncIterable<Awaited<ReturnType<typeof rawEvents> extends AsyncGenerator<infer E> ? E : never>>) {
  for await (const e of events) {
    yield {
      id: Number(e.order_id),
      userId: Number(e.customer.slice(1)),
      category: e.cat,
      amount: e.cents / 100,
      qty: e.count,
      ts: new Date(e.at),
      ...(e.comment ? { note: e.comment } : {}),
    };
  }
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
const line = (s = '') => process.stdout.write(`${s}\n`);
const peakRss = () => process.resourceUsage().maxRSS * 1024;

function table(rows: Record<string, unknown>[]): void {
  const cols = Object.keys(rows[0] ?? {});
  const fmt = (v: unknown) => (typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(2) : v instanceof Date ? v.toISOString().slice(0, 10) : String(v));
  const cells = rows.map((r) => cols.map((c) => fmt(r[c])));
  const w = cols.map((c, i) => Math.max(c.length, ...cells.map((x) => x[i].length)));
  line(`  ${cols.map((c, i) => c.padEnd(w[i])).join('  ')}`);
  for (const x of cells) line(`  ${x.map((s, i) => s.padStart(w[i])).join('  ')}`);
}

async function main(): Promise<void> {
  fs.rmSync(file, { force: true });
  line(`ModelVault demo: ${ROWS.toLocaleString()} orders, ${CUSTOMERS.toLocaleString()} customers, memoryLimit ${mib(MEMORY_LIMIT)}, cacheSize 64 MiB`);
  line(`file: ${file}`);
  const db = await Database.open(file, { memoryLimit: MEMORY_LIMIT, cacheSize: 64 * 2 ** 20 });
  try {
    // 1. ETL: extract → transform → load, streamed in one transaction.
    const customers = await db.register(Customers);
    const orders = await db.register(Orders);
    let t0 = performance.now();
    const countries = Customers.fields.country.values!;
    await customers.insertMany((function* () {
      for (let i = 0; i < CUSTOMERS; i++) yield { id: i, name: `customer ${i}`, country: countries[i % countries.length] as 'FR' };
    })());
    const loaded = await orders.insertMany(transform(rawEvents(ROWS)));
    let secs = (performance.now() - t0) / 1000;
    line(`\n1. ETL: loaded ${loaded.toLocaleString()} orders + ${CUSTOMERS.toLocaleString()} customers in ${secs.toFixed(1)} s (${Math.round((loaded + CUSTOMERS) / secs).toLocaleString()} rows/s); file ${mib(fs.statSync(file).size)}`);

    // 2. Analytics: join + group + sort, spilling under the memory limit.
    const revenue = orders.query()
      .join(Customers, 'userId', 'id', { as: 'customer' })
      .groupBy('customer.country', 'category')
      .aggregate({ orders: count(), revenue: sum('amount'), avgQty: avg('qty') })
      .orderBy('revenue', 'desc')
      .limit(8);
    t0 = performance.now();
    const top = await revenue.toArray();
    line(`\n2. Revenue by country and category (join ${loaded.toLocaleString()} × ${CUSTOMERS.toLocaleString()}, group, top 8) in ${((performance.now() - t0) / 1000).toFixed(1)} s:`);
    table(top);
    line('\n   explain({ analyze: true }):');
    for (const l of (await revenue.explain({ analyze: true })).split('\n')) line(`   ${l}`);

    // A full sort of every order by amount: far larger than the memory limit, so it spills runs and merges.
    const sorted = orders.query().orderBy('amount', 'desc').select('id', 'amount');
    t0 = performance.now();
    let n = 0, previous = Infinity, inOrder = true;
    for await (const batch of sorted.batches()) {
      for (const r of batch) { if (r.amount > previous) inOrder = false; previous = r.amount; }
      n += batch.length;
    }
    line(`\n   ORDER BY amount DESC over all ${n.toLocaleString()} orders streamed in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${inOrder ? 'in order' : 'OUT OF ORDER'}:`);
    const analyzed = await sorted.explain({ analyze: true });
    for (const l of analyzed.split('\n')) line(`   ${l}`);
    const s = db.stats();
    line(`   spill: ${s.spill.runsWritten} runs, ${mib(s.spill.bytesWritten)} written, ${s.spill.pagesInUse} pages still in use; cache ${s.cache.hits} hits / ${s.cache.misses} misses`);
    line(`   process peak RSS so far: ${mib(peakRss())}`);

    // 3. for await over an indexed query.
    line('\n3. for await over orders of customer 7 (index byUser):');
    const q = orders.query().where('userId', '=', 7).orderBy('amount', 'desc').limit(3);
    line(`   plan: ${q.explain().split('\n').map((x) => x.trim()).join(' <- ')}`);
    for await (const o of q) line(`   order ${o.id}: ${o.category}, ${o.amount.toFixed(2)} × ${o.qty} on ${o.ts.toISOString().slice(0, 10)}`);
  } finally {
    await db.close();
  }

  // 4. In-memory mode: same engine, snapshot export and import.
  const mem = await Database.openInMemory({ memoryLimit: 8 * 2 ** 20 });
  const memOrders = await mem.register(Orders);
  await memOrders.insertMany((async function* () { for await (const o of transform(rawEvents(1000))) yield o; })());
  const image = await mem.snapshotBytes();
  const copy = await Database.openSnapshotBytes(image);
  const copyOrders = await copy.register(Orders);
  const a = await memOrders.query().where('category', '=', 'books').count();
  const b = await copyOrders.query().where('category', '=', 'books').count();
  line(`\n4. In-memory database: 1,000 orders, snapshot image ${mib(image.byteLength)}, reopened from bytes: books ${a} = ${b} ${a === b ? '✓' : '✗'}`);
  await mem.close();
  await copy.close();

  line(`\nPeak RSS of this process: ${mib(peakRss())} (cacheSize 64 MiB + memoryLimit ${mib(MEMORY_LIMIT)})`);
  removeDemoFile();
  if (args.keep) line(`kept ${file}`);
}

main().catch((err) => {
  // A ModelVaultError is the user's to act on (a memory limit too small, a full disk): one line.
  process.stderr.write(err instanceof ModelVaultError ? `demo failed: ${err.code}: ${err.message}\n` : `demo failed: internal error: ${err?.stack ?? err}\n`);
  removeDemoFile();
  process.exitCode = 1;
});
