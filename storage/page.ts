// Page framing: every page starts with a 32-byte header carrying its CRC32C, type, its own
// page number (so a page copied to the wrong place is detected) and the generation that wrote it.
import { checksum } from './checksum.js';
import { corruptAt } from './errors.js';

export const PAGE_HEADER_BYTES = 32;

export const enum PageType {
  Branch = 1,
  Leaf = 2,
  FreeList = 3,
  Overflow = 4,
  Spill = 5,
}

const KNOWN_TYPES = new Set([1, 2, 3, 4, 5]);

export interface PageInfo {
  readonly type: PageType;
  readonly pageNo: number;
  readonly generation: number;
  readonly bodyLength: number;
}

/** Fills in the header of `page` (whose body is already written) and its checksum. */
export function sealPage(page: Uint8Array, type: PageType, pageNo: number, generation: number, bodyLength: number): void {
  if (PAGE_HEADER_BYTES + bodyLength > page.byteLength) {
    throw new Error(`internal: page body of ${bodyLength} bytes overflows a ${page.byteLength}-byte page`);
  }
  const view = new DataView(page.buffer, page.byteOffset, PAGE_HEADER_BYTES);
  view.setUint8(4, type);
  view.setUint8(5, 0);
  view.setUint16(6, 0, true);
  view.setUint32(8, pageNo, true);
  view.setUint32(12, bodyLength, true);
  view.setUint32(16, generation >>> 0, true);
  view.setUint32(20, Math.floor(generation / 2 ** 32), true);
  view.setUint32(24, 0, true);
  view.setUint32(28, 0, true);
  view.setUint32(0, checksum(page.subarray(4, PAGE_HEADER_BYTES + bodyLength)), true);
}

/**
 * Checks a page read from `offset`: checksum, type, self-reference, and that the body length
 * fits the page, so nothing downstream can be led into a huge allocation by a bad length.
 */
export function verifyPage(page: Uint8Array, pageNo: number, offset: number, expect?: PageType): PageInfo {
  const view = new DataView(page.buffer, page.byteOffset, PAGE_HEADER_BYTES);
  const bodyLength = view.getUint32(12, true);
  if (PAGE_HEADER_BYTES + bodyLength > page.byteLength) {
    throw corruptAt(offset, `page ${pageNo} claims a body of ${bodyLength} bytes`, { pageNo });
  }
  const stored = view.getUint32(0, true);
  if (checksum(page.subarray(4, PAGE_HEADER_BYTES + bodyLength)) !== stored) {
    throw corruptAt(offset, `page ${pageNo} fails its checksum`, { pageNo });
  }
  const type = view.getUint8(4);
  if (!KNOWN_TYPES.has(type)) throw corruptAt(offset, `page ${pageNo} has unknown type ${type}`, { pageNo });
  if (expect !== undefined && type !== expect) {
    throw corruptAt(offset, `page ${pageNo} has type ${type}, expected ${expect}`, { pageNo });
  }
  const storedNo = view.getUint32(8, true);
  if (storedNo !== pageNo) {
    throw corruptAt(offset, `page ${pageNo} holds the content of page ${storedNo}`, { pageNo });
  }
  const generation = view.getUint32(16, true) + view.getUint32(20, true) * 2 ** 32;
  return { type: type as PageType, pageNo, generation, bodyLength };
}

export function pageBody(page: Uint8Array, info: PageInfo): Uint8Array {
  return page.subarray(PAGE_HEADER_BYTES, PAGE_HEADER_BYTES + info.bodyLength);
}
