// File header and the two superblocks. The header is written once at creation; commits
// alternate between the two superblock slots, and open takes the valid one with the
// highest generation (see FORMAT.md for the byte tables).
import fs from 'node:fs';
import { checksum } from './checksum.js';
import { ModelVaultError } from './errors.js';

export const MAGIC = 'MODELVLT';

/** Whether the file at `path` starts with the ModelVault magic (false when absent or unreadable). */
export function hasModelVaultMagic(path: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch {
    return false;
  }
  try {
    const head = Buffer.alloc(MAGIC.length);
    return fs.readSync(fd, head, 0, head.length, 0) === head.length && head.toString('latin1') === MAGIC;
  } catch {
    return false;
  } finally {
    fs.closeSync(fd);
  }
}
/** 2: leaf columns may be dictionary-encoded (kind 2); version-1 files are refused, not upgraded. */
export const FORMAT_VERSION = 2;
export const HEADER_BYTES = 64;
export const SUPERBLOCK_OFFSETS = [4096, 8192] as const;
export const SUPERBLOCK_BYTES = 64;
export const MIN_PAGE_SIZE = 16384;
export const MAX_PAGE_SIZE = 1 << 20;
export const DEFAULT_PAGE_SIZE = 65536;
const SUPERBLOCK_MAGIC = 0x4253564d; // "MVSB"

export interface FileHeader {
  readonly formatVersion: number;
  readonly pageSize: number;
}

export interface Superblock {
  readonly generation: number;
  /** Pages in the committed image, page 0 (header + superblocks) included. */
  readonly pageCount: number;
  /** Root page of the catalog tree, 0 when empty. */
  readonly catalogRoot: number;
  /** First page of the free-list chain, 0 when none. */
  readonly freeListRoot: number;
  readonly freePageCount: number;
  readonly committedAtMs: number;
}

export function encodeHeader(h: FileHeader): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES);
  const view = new DataView(out.buffer);
  out.set(Buffer.from(MAGIC, 'latin1'), 0);
  view.setUint32(8, h.formatVersion, true);
  view.setUint32(12, h.pageSize, true);
  view.setUint32(60, checksum(out.subarray(0, 60)), true);
  return out;
}

export function decodeHeader(bytes: Uint8Array): FileHeader {
  if (bytes.byteLength < HEADER_BYTES || Buffer.from(bytes.subarray(0, 8)).toString('latin1') !== MAGIC) {
    throw new ModelVaultError('NOT_A_DATABASE', 'not a ModelVault file (bad magic)', { offset: 0 });
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  if (checksum(bytes.subarray(0, 60)) !== view.getUint32(60, true)) {
    throw new ModelVaultError('CORRUPT', 'file header fails its checksum', { offset: 0 });
  }
  const formatVersion = view.getUint32(8, true);
  if (formatVersion !== FORMAT_VERSION) {
    throw new ModelVaultError('UNSUPPORTED_VERSION', `format version ${formatVersion} is not supported (this build reads ${FORMAT_VERSION})`, { formatVersion });
  }
  const pageSize = view.getUint32(12, true);
  if (pageSize < MIN_PAGE_SIZE || pageSize > MAX_PAGE_SIZE || (pageSize & (pageSize - 1)) !== 0) {
    throw new ModelVaultError('CORRUPT', `file header names an invalid page size ${pageSize}`, { offset: 12 });
  }
  return { formatVersion, pageSize };
}

const setU64 = (view: DataView, at: number, n: number) => {
  view.setUint32(at, n >>> 0, true);
  view.setUint32(at + 4, Math.floor(n / 2 ** 32), true);
};
const getU64 = (view: DataView, at: number) => view.getUint32(at, true) + view.getUint32(at + 4, true) * 2 ** 32;

export function encodeSuperblock(sb: Superblock): Uint8Array {
  const out = new Uint8Array(SUPERBLOCK_BYTES);
  const view = new DataView(out.buffer);
  view.setUint32(0, SUPERBLOCK_MAGIC, true);
  view.setUint32(4, FORMAT_VERSION, true);
  setU64(view, 8, sb.generation);
  setU64(view, 16, sb.pageCount);
  view.setUint32(24, sb.catalogRoot, true);
  view.setUint32(28, sb.freeListRoot, true);
  setU64(view, 32, sb.freePageCount);
  view.setFloat64(40, sb.committedAtMs, true);
  view.setUint32(60, checksum(out.subarray(0, 60)), true);
  return out;
}

/** A superblock slot, or null when it is blank, torn or fails its checksum. */
export function decodeSuperblock(bytes: Uint8Array): Superblock | null {
  if (bytes.byteLength < SUPERBLOCK_BYTES) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, SUPERBLOCK_BYTES);
  if (view.getUint32(0, true) !== SUPERBLOCK_MAGIC) return null;
  if (checksum(bytes.subarray(0, 60)) !== view.getUint32(60, true)) return null;
  const sb: Superblock = {
    generation: getU64(view, 8),
    pageCount: getU64(view, 16),
    catalogRoot: view.getUint32(24, true),
    freeListRoot: view.getUint32(28, true),
    freePageCount: getU64(view, 32),
    committedAtMs: view.getFloat64(40, true),
  };
  if (!Number.isSafeInteger(sb.generation) || !Number.isSafeInteger(sb.freePageCount)) return null; // counters stay below 2^53 (FORMAT.md)
  if (sb.pageCount < 1 || sb.pageCount >= 2 ** 32) return null;
  if (sb.catalogRoot >= sb.pageCount || sb.freeListRoot >= sb.pageCount) return null;
  return sb;
}
