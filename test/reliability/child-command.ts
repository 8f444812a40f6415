// How the reliability tests start TypeScript child processes. Loading the sources through tsx
// costs about a second of CPU per process, which adds up over dozens of SIGKILLed children on a
// busy machine; so the child's entry is bundled once with esbuild (a dependency of tsx) into a
// temporary directory whose node_modules links to the repository's, and started with plain
// Node. Should bundling fail, the child runs through tsx as usual.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Arguments for `spawn(process.execPath, args)` that run the TypeScript file `entry`. */
export async function childCommand(entry: string, tmpDir: string): Promise<string[]> {
  try {
    const { build } = await import('esbuild');
    const dir = path.join(tmpDir, 'bundle');
    fs.mkdirSync(dir, { recursive: true });
    if (!fs.existsSync(path.join(dir, 'node_modules'))) fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
    const outfile = path.join(dir, `${path.basename(entry, '.ts')}.mjs`);
    await build({
      entryPoints: [entry], outfile, bundle: true, platform: 'node', format: 'esm', target: 'node20',
      packages: 'external', sourcemap: 'inline', logLevel: 'silent',
    });
    return ['--enable-source-maps', outfile];
  } catch {
    return ['--import', 'tsx', entry];
  }
}
