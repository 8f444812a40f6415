// Raw facts about a file, read without opening it as a database (for `modelvault inspect`):
// the header and both superblock slots, valid or not.
import fs from 'node:fs/promises';
import { ModelVaultError, ioError } from './errors.js';
import { SUPERBLOCK_BYTES, SUPERBLOCK_OFFSETS, decodeHeader, decodeSuperblock, type FileHeader, type Superblock } from './superblock.js';

export interface FileSummary {
  readonly fileBytes: number;
  readonly header: FileHeader;
  readonly superblocks: readonly { slot: number; valid: boolean; superblock: Superblock | null }[];
}

export async function readFileSummary(path: string): Promise<FileSummary> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(path, 'r');
  } catch (err) {
    throw ioError(`opening ${path}`, err);
  }
  try {
    const { size } = await handle.stat();
    const head = Buffer.alloc(SUPERBLOCK_OFFSETS[1] + SUPERBLOCK_BYTES);
    await handle.read(head, 0, head.byteLength, 0);
    if (size === 0) throw new ModelVaultError('NOT_A_DATABASE', `${path} is empty`);
    const header = decodeHeader(head);
    const superblocks = SUPERBLOCK_OFFSETS.map((at, slot) => {
      const sb = decodeSuperblock(head.subarray(at, at + SUPERBLOCK_BYTES));
      return { slot, valid: sb !== null && sb.pageCount * header.pageSize <= size, superblock: sb };
    });
    return { fileBytes: size, header, superblocks };
  } finally {
    await handle.close();
  }
}
