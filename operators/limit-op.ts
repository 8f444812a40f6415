// Skips `offset` rows, then passes through at most `limit`. Streaming: reserves no memory.
// Returning early closes the input, which stops every operator below.
import { sliceBatch, type Batch } from './batch.js';
import { run, throwIfAborted, type ExecContext, type Operator } from './operator.js';

export class LimitOp implements Operator {
  readonly name = 'Limit';
  constructor(readonly input: Operator, readonly limit: number, readonly offset = 0) {}
  children(): readonly Operator[] { return [this.input]; }
  describe(): string { return `offset ${this.offset}, limit ${Number.isFinite(this.limit) ? this.limit : 'none'}`; }

  async *execute(ctx: ExecContext): AsyncGenerator<Batch> {
    if (this.limit === 0) return; // never opens the input
    let skip = this.offset, left = this.limit;
    for await (const batch of run(this.input, ctx)) {
      throwIfAborted(ctx.signal);
      const from = Math.min(skip, batch.length);
      skip -= from;
      const out = sliceBatch(batch, from, Math.min(batch.length, from + left));
      left -= out.length;
      if (out.length > 0) yield out;
      if (left <= 0) return;
    }
  }
}
