// The large benchmark file: SIZE_GB (default 2) GiB of rows of the harness schema, bulk-loaded
// in key order in one transaction (maybeFlush between puts), built once and cached in
// bench/out/ next to a manifest. `ensureBigFile()` builds it in a child process when missing;
// `tsx bench/big-file.ts --build` is that child.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { StorageEngine } from '../storage/engine.js';
import { COLUMNS, GiB, MiB, emitResult, encodeRow, makeRow, peakRssKiB, runChild, si, stringPool } from './harness.js';

export const TREE = 'rows';
export const STRING_SEED = 42;
export const OUT_DIR = fileURLToPath(new URL('./out/', import.meta.url));

export interface BigFileManifest {
  file: string;
  sizeGb: number;
  pageSize: number;
  rows: number;
  fileBytes: number;
  buildMs: number;
  buildRowsPerSec: number;
  buildPeakRssKiB: number;
}

export interface BigFileSpec { sizeGb: number; pageSize: number }

export function bigFileSpec(env: NodeJS.ProcessEnv = process.env): BigFileSpec {
  const sizeGb = Number(env.SIZE_GB ?? 2);
  const pageSize = Number(env.PAGE_SIZE ?? 65536);
  if (!(sizeGb > 0)) throw new Error(`SIZE_GB must be a positive number, not ${env.SIZE_GB}`);
  return { sizeGb, pageSize };
}

export function bigFilePaths(spec: BigFileSpec): { file: string; manifest: string } {
  const base = path.join(OUT_DIR, `rows-${spec.sizeGb}g-p${spec.pageSize / 1024}k`);
  return { file: `${base}.modelvault`, manifest: `${base}.json` };
}

/** The cached manifest when its file is complete, else null. */
export function cachedBigFile(spec: BigFileSpec): BigFileManifest | null {
  const { file, manifest } = bigFilePaths(spec);
  try {
    const m = JSON.parse(fs.readFileSync(manifest, 'utf8')) as BigFileManifest;
    return fs.statSync(file).size === m.fileBytes ? m : null;
  } catch {
    return null;
  }
}

/** Returns the cached file, building it first (in its own process) when missing. */
export async function ensureBigFile(spec: BigFileSpec = bigFileSpec()): Promise<BigFileManifest> {
  const cached = cachedBigFile(spec);
  if (cached) return cached;
  console.log(`building ${bigFilePaths(spec).file} (${spec.sizeGb} GiB, ${spec.pageSize / 1024} KiB pages); cached for later runs`);
  return runChild<BigFileManifest>(new URL(import.meta.url), ['--build'], {
    SIZE_GB: String(spec.sizeGb), PAGE_SIZE: String(spec.pageSize),
  });
}

async function build(spec: BigFileSpec): Promise<BigFileManifest> {
  const { file, manifest } = bigFilePaths(spec);
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const temp = `${file}.building`;
  for (const f of [temp, `${temp}.lock`, file, manifest]) fs.rmSync(f, { force: true });
  const target = spec.sizeGb * GiB;
  const strings = stringPool(STRING_SEED);
  const started = performance.now();
  let rows = 0;
  const engine = await StorageEngine.open(temp, { cacheSize: 64 * MiB, pageSize: spec.pageSize });
  try {
    await engine.write(async (tx) => {
      const w = await tx.tree(TREE, COLUMNS);
      let nextReport = started + 5000;
      for (;;) {
        const id = rows++;
        const { key, cells } = encodeRow(makeRow(id, strings));
        await w.put(key, cells);
        await tx.maybeFlush();
        if ((id & 4095) === 4095) {
          const bytes = engine.pager.store.size();
          if (bytes >= target) break;
          const now = performance.now();
          if (now >= nextReport) {
            nextReport = now + 5000;
            console.log(`  ${si(rows)} rows, ${(bytes / GiB).toFixed(2)} GiB, ${si(rows / ((now - started) / 1000))} rows/s, peak RSS ${(peakRssKiB() / 1024).toFixed(0)} MiB`);
          }
        }
      }
    });
  } finally {
    await engine.close();
  }
  const buildMs = performance.now() - started;
  fs.renameSync(temp, file);
  const m: BigFileManifest = {
    file, sizeGb: spec.sizeGb, pageSize: spec.pageSize, rows, fileBytes: fs.statSync(file).size,
    buildMs, buildRowsPerSec: rows / (buildMs / 1000), buildPeakRssKiB: peakRssKiB(),
  };
  fs.writeFileSync(manifest, JSON.stringify(m, null, 2));
  console.log(`built ${si(rows)} rows, ${(m.fileBytes / GiB).toFixed(2)} GiB in ${(buildMs / 1000).toFixed(1)} s ` +
    `(${si(m.buildRowsPerSec)} rows/s), builder peak RSS ${(m.buildPeakRssKiB / 1024).toFixed(0)} MiB`);
  return m;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href && process.argv[2] === '--build') {
  emitResult(await build(bigFileSpec()));
}
