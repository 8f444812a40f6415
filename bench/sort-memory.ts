// Where a spilling sort's memory goes, read from inside the process: RSS, external memory
// (ArrayBuffers and Buffers: the buffer pool, the sort's packed numbers, spill I/O, typed-array
// garbage not yet collected), the JS heap and V8's young generation, before the query and at
// the process's peak. The ORDER BY of spill-operators.ts (1M orders, every column, rows one by
// one to JS), one memoryLimit per process.
//
//   npx tsx bench/sort-memory.ts                  LIMITS=8,64 (MiB) N=1000000, cacheSize 64 MiB
//   LIMITS=1,8,32,64,1024 npx tsx bench/sort-memory.ts
//
// The data file is built once into the OS temp directory (sort-memory-<N>.modelvault). Each limit
// runs in a child process of its own (harness.runChild: an esbuild bundle on bare Node) so that
// one run's garbage does not count in the next one's peak, and tsx's loader not at all.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import { Database } from '../src/index.js';
import { Orders, mvBuild } from './orders-data.js';
import { MiB, emitResult, runChild } from './harness.js';

const N = Number(process.env.N ?? 1_000_000);
const FILE = path.join(os.tmpdir(), `sort-memory-${N}.modelvault`);

interface Snapshot { rss: number; external: number; heapTotal: number; young: number; pool: number }

async function child(limitMiB: number): Promise<void> {
  const memoryLimit = limitMiB * MiB;
  const db = await Database.open(FILE, { cacheSize: 64 * MiB, memoryLimit });
  const orders = await db.register(Orders);
  const snap = (): Snapshot => {
    const m = process.memoryUsage();
    const young = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
    return { rss: m.rss, external: m.external, heapTotal: m.heapTotal, young, pool: db.stats().cache.bytes };
  };
  const before = snap();
  let peak = before;
  const sample = () => { const s = snap(); if (s.rss > peak.rss) peak = s; };
  const timer = setInterval(sample, 5);
  let rows = 0, last = -Infinity;
  const t0 = performance.now();
  for await (const r of orders.query().orderBy('amount').options({ memoryLimit })) {
    if (r.amount < last) throw new Error('rows out of order');
    last = r.amount;
    if ((++rows & 4095) === 0) sample();
  }
  clearInterval(timer);
  const ms = performance.now() - t0;
  await db.close();
  if (rows !== N) throw new Error(`sorted ${rows} of ${N} rows`);
  emitResult({ ms, before, peak });
}

async function main(): Promise<void> {
  if (!fs.existsSync(FILE)) {
    console.log(`building ${N} orders into ${FILE} …`);
    await mvBuild(FILE, N, { indexed: false, customers: false });
  }
  const limits = (process.env.LIMITS ?? '8,64').split(',').map(Number);
  const mib = (b: number) => `${(b / MiB).toFixed(0)} MiB`;
  console.log(`ORDER BY amount over ${N} orders, cacheSize 64 MiB, one process per memoryLimit (Node ${process.version})`);
  console.log('memoryLimit | time | RSS before | peak RSS | at the peak: pool | other external | JS heap (young generation)');
  for (const limit of limits) {
    const { ms, before, peak } = await runChild<{ ms: number; before: Snapshot; peak: Snapshot }>(new URL(import.meta.url), ['--child', String(limit)]);
    console.log(`${limit} MiB | ${(ms / 1000).toFixed(2)} s | ${mib(before.rss)} | ${mib(peak.rss)} | ${mib(peak.pool)} | ${mib(peak.external - peak.pool)} | ${mib(peak.heapTotal)} (${mib(peak.young)})`);
  }
}

if (process.argv[2] === '--child') await child(Number(process.argv[3]));
else await main();
