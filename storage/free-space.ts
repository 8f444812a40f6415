// A set of free page numbers kept as sorted, non-adjacent [start, length] ranges, so a large
// free area costs one entry and contiguous runs (overflow values, spill extents) are cheap to find.

export type PageRange = readonly [start: number, length: number];

export class FreeSpace {
  private starts: number[] = [];
  private lengths: number[] = [];
  private total = 0;

  get pageCount(): number { return this.total; }
  get rangeCount(): number { return this.starts.length; }

  ranges(): PageRange[] {
    return this.starts.map((s, i) => [s, this.lengths[i]] as const);
  }

  has(pageNo: number): boolean {
    const i = this.indexAtOrBefore(pageNo);
    return i >= 0 && pageNo < this.starts[i] + this.lengths[i];
  }

  /** Adds [start, start+length); the pages must not be free already. */
  add(start: number, length = 1): void {
    if (length <= 0) return;
    const i = this.indexAtOrBefore(start);
    if (i >= 0 && start < this.starts[i] + this.lengths[i]) {
      throw new Error(`internal: page ${start} freed twice`);
    }
    const next = i + 1;
    if (next < this.starts.length && start + length > this.starts[next]) {
      throw new Error(`internal: page ${this.starts[next]} freed twice`);
    }
    const joinsPrev = i >= 0 && this.starts[i] + this.lengths[i] === start;
    const joinsNext = next < this.starts.length && start + length === this.starts[next];
    if (joinsPrev && joinsNext) {
      this.lengths[i] += length + this.lengths[next];
      this.starts.splice(next, 1);
      this.lengths.splice(next, 1);
    } else if (joinsPrev) {
      this.lengths[i] += length;
    } else if (joinsNext) {
      this.starts[next] = start;
      this.lengths[next] += length;
    } else {
      this.starts.splice(next, 0, start);
      this.lengths.splice(next, 0, length);
    }
    this.total += length;
  }

  addAll(other: Iterable<PageRange>): void {
    for (const [s, n] of other) this.add(s, n);
  }

  /** Removes one page, which must be free. */
  remove(pageNo: number): void {
    const i = this.indexAtOrBefore(pageNo);
    if (i < 0 || pageNo >= this.starts[i] + this.lengths[i]) throw new Error(`internal: page ${pageNo} is not in the set`);
    const start = this.starts[i], end = start + this.lengths[i];
    this.total--;
    if (end - start === 1) {
      this.starts.splice(i, 1);
      this.lengths.splice(i, 1);
    } else if (pageNo === start) {
      this.starts[i]++;
      this.lengths[i]--;
    } else if (pageNo === end - 1) {
      this.lengths[i]--;
    } else {
      this.lengths[i] = pageNo - start;
      this.starts.splice(i + 1, 0, pageNo + 1);
      this.lengths.splice(i + 1, 0, end - pageNo - 1);
    }
  }

  /** Takes the lowest free page, or -1. Low pages first keeps the file compact. */
  takeOne(): number {
    if (this.starts.length === 0) return -1;
    const page = this.starts[0];
    this.starts[0]++;
    this.total--;
    if (--this.lengths[0] === 0) {
      this.starts.shift();
      this.lengths.shift();
    }
    return page;
  }

  /** Takes `length` contiguous pages (first fit), or -1 when no range is long enough. */
  takeRun(length: number): number {
    for (let i = 0; i < this.starts.length; i++) {
      if (this.lengths[i] < length) continue;
      const page = this.starts[i];
      this.starts[i] += length;
      this.lengths[i] -= length;
      this.total -= length;
      if (this.lengths[i] === 0) {
        this.starts.splice(i, 1);
        this.lengths.splice(i, 1);
      }
      return page;
    }
    return -1;
  }

  /** Takes the highest free page, or -1 (used for the free list's own pages, away from data). */
  takeLast(): number {
    const last = this.starts.length - 1;
    if (last < 0) return -1;
    this.total--;
    const page = this.starts[last] + --this.lengths[last];
    if (this.lengths[last] === 0) {
      this.starts.pop();
      this.lengths.pop();
    }
    return page;
  }

  /** Removes and returns the free range that ends exactly at `end`, if any (tail trimming). */
  takeRangeEndingAt(end: number): PageRange | null {
    const last = this.starts.length - 1;
    if (last < 0 || this.starts[last] + this.lengths[last] !== end) return null;
    const range = [this.starts[last], this.lengths[last]] as const;
    this.starts.pop();
    this.lengths.pop();
    this.total -= range[1];
    return range;
  }

  clone(): FreeSpace {
    const c = new FreeSpace();
    c.starts = this.starts.slice();
    c.lengths = this.lengths.slice();
    c.total = this.total;
    return c;
  }

  private indexAtOrBefore(pageNo: number): number {
    let lo = 0, hi = this.starts.length - 1, found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid] <= pageNo) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return found;
  }
}
