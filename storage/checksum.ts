// CRC32C of page and superblock bytes. @node-rs/crc32 is a prebuilt native binding
// (~6 GB/s here, 5x pure JS); pages are verified once, when they enter the buffer pool.
import { createRequire } from 'node:module';

// Loaded through require: the package is CommonJS, and importing CommonJS from an ES module
// makes Node instantiate its WebAssembly export lexer, about 6 MiB of RSS for the process's life.
const { crc32c } = createRequire(import.meta.url)('@node-rs/crc32') as typeof import('@node-rs/crc32');

export function checksum(bytes: Uint8Array): number {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return crc32c(buf) >>> 0;
}
