// Filter for predicates that could not be pushed into a scan (joined paths, aggregates' input).
import { gatherBatch, type Batch } from './batch.js';
import { compilePredicate, exprToString, selectRows, type Expr } from './expr.js';
import { run, throwIfAborted, type ExecContext, type Operator } from './operator.js';

export class FilterOp implements Operator {
  readonly name = 'Filter';
  private readonly predicate;
  constructor(readonly input: Operator, readonly filter: Expr) {
    this.predicate = compilePredicate(filter);
  }
  children(): readonly Operator[] { return [this.input]; }
  describe(): string { return exprToString(this.filter); }

  async *execute(ctx: ExecContext): AsyncGenerator<Batch> {
    const selection = { buf: new Uint32Array(1024) };
    for await (const batch of run(this.input, ctx)) {
      throwIfAborted(ctx.signal);
      const count = selectRows(batch, this.predicate(batch), selection);
      if (count === batch.length) yield batch;
      else if (count > 0) yield gatherBatch(batch, selection.buf, count);
    }
  }
}
