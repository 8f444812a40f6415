// Raw page-read throughput through the pager over every page of the large file, against the
// disk's sequential read rate measured in the same run (a plain fs read of the same file in
// 1 MiB chunks). Cold = the file evicted from the OS page cache before each pass (drop_caches
// when permitted, else posix_fadvise(DONTNEED) through `dd iflag=nocache`); warm = resident.
//
//   npx tsx bench/page-read.ts                 SIZE_GB=2 REPEATS=3
//
// Methods, each a full pass, interleaved, medians of REPEATS:
//   fs read 1 MiB            the baseline: one reused buffer, no checks
//   fs read 1 MiB + CRC32C   the baseline plus the checksum the pager verifies per page
//   ... fresh buffers + CRC  the same into a new zeroed 1 MiB ArrayBuffer per read, as FileStore.read allocates
//   pager.prefetch           runs of up to 1 MiB of consecutive pages, verified, admitted to the pool
//   pager.readRun            leaf pages only (it checks the type), runs of up to 1 MiB, not cached
//   pager.readPage           leaf pages one read each, through the pool
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { crc32c } from '@node-rs/crc32';
import { StorageEngine } from '../storage/engine.js';
import { PageType } from '../storage/page.js';
import type { Pager } from '../storage/pager.js';
import { TREE, bigFileSpec, ensureBigFile } from './big-file.js';
import { GiB, MiB, dropFileCache, emitResult, fmtRatio, mibps, median, printTable, ratio } from './harness.js';

const CACHE_BYTES = 64 * MiB;
const READ_BYTES = MiB;

type Method = 'fs read 1 MiB' | 'fs read 1 MiB + CRC32C' | 'fs read 1 MiB, fresh buffers + CRC32C' | 'pager.prefetch' | 'pager.readRun' | 'pager.readPage';
const METHODS: Method[] = ['fs read 1 MiB', 'fs read 1 MiB + CRC32C', 'fs read 1 MiB, fresh buffers + CRC32C', 'pager.prefetch', 'pager.readRun', 'pager.readPage'];

interface Layout { pageCount: number; pageSize: number; leaves: number[]; leafRuns: [number, number][] }

/** Leaf page numbers, from the tree's branches, and their runs of consecutive pages (≤ 1 MiB). */
async function layout(engine: StorageEngine): Promise<Layout> {
  using snap = engine.snapshot();
  const info = await snap.treeInfo(TREE);
  if (!info) throw new Error(`no tree ${TREE} in the file`);
  const src = snap.nodeSource;
  const leaves: number[] = [];
  const walk = async (pageNo: number): Promise<void> => {
    const node = await src.nodeAsync(pageNo);
    if (node.isLeaf) { leaves.push(pageNo); return; }
    for (let i = 0; i < node.count; i++) {
      if (node.level === 1) leaves.push(node.child(i));
      else await walk(node.child(i));
    }
  };
  await walk(info.root);
  leaves.sort((a, b) => a - b);
  const pageSize = engine.pager.pageSize, maxRun = Math.max(1, READ_BYTES / pageSize);
  const leafRuns: [number, number][] = [];
  for (const p of leaves) {
    const last = leafRuns[leafRuns.length - 1];
    if (last && last[0] + last[1] === p && last[1] < maxRun) last[1]++;
    else leafRuns.push([p, 1]);
  }
  return { pageCount: engine.pager.pageCount, pageSize, leaves, leafRuns };
}

/** One pass of `method`; returns bytes read. */
async function pass(method: Method, file: string, pager: Pager, l: Layout): Promise<number> {
  pager.pool.clear();
  switch (method) {
    case 'fs read 1 MiB':
    case 'fs read 1 MiB + CRC32C':
    case 'fs read 1 MiB, fresh buffers + CRC32C': {
      const fh = await fs.promises.open(file, 'r');
      try {
        const fresh = method === 'fs read 1 MiB, fresh buffers + CRC32C';
        let buf = Buffer.allocUnsafe(READ_BYTES);
        let offset = 0, x = 0;
        for (;;) {
          if (fresh) buf = Buffer.from(new ArrayBuffer(READ_BYTES)); // what FileStore.read does (alignedBuffer)
          const { bytesRead } = await fh.read(buf, 0, buf.byteLength, offset);
          if (bytesRead === 0) break;
          if (method !== 'fs read 1 MiB') {
            for (let at = 0; at + l.pageSize <= bytesRead; at += l.pageSize) x ^= crc32c(buf.subarray(at + 4, at + l.pageSize));
          }
          offset += bytesRead;
        }
        if (x === 0.5) console.log(x); // keeps the checksums alive
        return offset;
      } finally {
        await fh.close();
      }
    }
    case 'pager.prefetch': {
      const per = Math.max(1, READ_BYTES / l.pageSize);
      const batch: number[] = [];
      for (let p = 1; p < l.pageCount; p += per) {
        batch.length = 0;
        for (let q = p; q < Math.min(p + per, l.pageCount); q++) batch.push(q);
        await pager.prefetch(batch);
      }
      return (l.pageCount - 1) * l.pageSize;
    }
    case 'pager.readRun': {
      for (const [start, count] of l.leafRuns) await pager.readRun(start, count, PageType.Leaf);
      return l.leaves.length * l.pageSize;
    }
    case 'pager.readPage': {
      for (const p of l.leaves) await pager.readPage(p, PageType.Leaf);
      return l.leaves.length * l.pageSize;
    }
  }
}

export interface PageReadResult {
  fileBytes: number;
  pageSize: number;
  modes: { mode: 'cold' | 'warm'; how: string; rates: Record<Method, number>; vsFs: Record<Method, number> }[];
  coldAvailable: boolean;
  coldHow: string;
}

async function main(): Promise<PageReadResult> {
  const repeats = Number(process.env.REPEATS ?? 3);
  const m = await ensureBigFile(bigFileSpec());
  const engine = await StorageEngine.open(m.file, { cacheSize: CACHE_BYTES, readOnly: true });
  try {
    const l = await layout(engine);
    const probe = dropFileCache(m.file);
    console.log(`page-read: ${(m.fileBytes / GiB).toFixed(2)} GiB, ${l.pageCount} pages of ${l.pageSize / 1024} KiB ` +
      `(${l.leaves.length} leaves in ${l.leafRuns.length} runs), cacheSize ${CACHE_BYTES / MiB} MiB, ${repeats} repeats`);
    console.log(`evicting the file from the OS page cache: ${probe.ok ? 'works' : 'NOT possible'} (${probe.how})`);
    const modes: PageReadResult['modes'] = [];
    for (const mode of probe.ok ? (['cold', 'warm'] as const) : (['warm'] as const)) {
      if (mode === 'warm') await pass('fs read 1 MiB', m.file, engine.pager, l); // load the page cache
      const samples = new Map<Method, number[]>(METHODS.map((x) => [x, []]));
      for (let r = 0; r < repeats; r++) {
        for (const method of METHODS) {
          if (mode === 'cold') dropFileCache(m.file);
          const t0 = performance.now();
          const bytes = await pass(method, m.file, engine.pager, l);
          samples.get(method)!.push(bytes / ((performance.now() - t0) / 1000));
        }
      }
      const rates = Object.fromEntries(METHODS.map((x) => [x, median(samples.get(x)!)])) as Record<Method, number>;
      const vsFs = Object.fromEntries(METHODS.map((x) => [x, ratio(rates[x], rates['fs read 1 MiB'])])) as Record<Method, number>;
      modes.push({ mode, how: mode === 'cold' ? probe.how : 'file resident in the OS page cache', rates, vsFs });
    }
    console.log();
    printTable([
      ['method', ...modes.flatMap((x) => [`${x.mode} rate`, `${x.mode} / fs`])],
      ...METHODS.map((method) => [method, ...modes.flatMap((x) => [mibps(x.rates[method]), fmtRatio(x.vsFs[method])])]),
    ]);
    if (!probe.ok) console.log('\nwarm-cache figures only: the OS page cache could not be dropped here');
    return { fileBytes: m.fileBytes, pageSize: l.pageSize, modes, coldAvailable: probe.ok, coldHow: probe.how };
  } finally {
    await engine.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) emitResult(await main());
