// IxJS's AsyncIterableX, loaded so that it costs no WebAssembly. ix's ES modules import tslib,
// a CommonJS package, and an ES import of CommonJS makes Node 20 start its WebAssembly
// export lexer (about 4 MiB of RSS for the life of the process) unless require already loaded
// that package. So tslib is required first, resolved from ix's own file as its import would be.
import { createRequire } from 'node:module';
import type { AsyncIterableX as AsyncIterableXClass } from 'ix/asynciterable/asynciterablex';

const IX_MODULE = 'ix/asynciterable/asynciterablex';
try {
  createRequire(import.meta.resolve(IX_MODULE))('tslib');
} catch {
  // Only the memory saving is lost: the import below loads tslib either way.
}

export const AsyncIterableX: typeof AsyncIterableXClass = (await import(IX_MODULE)).AsyncIterableX;
export type AsyncIterableX<T> = AsyncIterableXClass<T>;
