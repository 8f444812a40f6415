// Child process of concurrency.test.ts.
//
//   probe FILE TIMEOUT_MS   open FILE for writing (waiting up to TIMEOUT_MS for the lock), print
//                           "opened" or "error CODE", close, exit
//   hold FILE               open FILE for writing, print "ready", keep it open until stdin closes
//   reader FILE             until stdin closes: open FILE read-only, sum every balance through a
//                           query, print "read TOTAL ROWS GENERATION", close; on a library error
//                           print "error CODE message"
//   slow-reader FILE        the same over the many-page ledger_big collection, consuming slowly
import { Database, ModelVaultError, count, sum } from '../../src/index.js';

const MAX_LIFETIME_MS = 120_000;
const out = (line: string) => process.stdout.write(`${line}\n`);

async function main(): Promise<void> {
  setTimeout(() => process.exit(3), MAX_LIFETIME_MS).unref();
  const [mode, file, arg] = process.argv.slice(2);
  let stdinOpen = true;
  process.stdin.on('data', () => undefined);
  process.stdin.on('end', () => { stdinOpen = false; });
  process.stdin.on('close', () => { stdinOpen = false; });
  const stdinClosed = new Promise<void>((resolve) => process.stdin.on('close', resolve));

  switch (mode) {
    case 'probe': {
      try {
        const db = await Database.open(file, { lockTimeoutMs: Number(arg) });
        out('opened');
        await db.close();
      } catch (err) {
        out(err instanceof ModelVaultError ? `error ${err.code}` : `crash ${String(err)}`);
      }
      break;
    }
    case 'hold': {
      const db = await Database.open(file);
      out('ready');
      await stdinClosed;
      await db.close();
      break;
    }
    case 'reader': {
      while (stdinOpen) {
        try {
          const db = await Database.open(file, { readOnly: true });
          try {
            const accounts = await db.collection('accounts');
            const [agg] = await accounts.query().aggregate({ total: sum('balance'), n: count() }).toArray();
            out(`read ${agg.total} ${agg.n} ${db.stats().generation}`);
          } finally {
            await db.close();
          }
        } catch (err) {
          if (!(err instanceof ModelVaultError)) throw err;
          out(`error ${err.code} ${err.message.replace(/\n/g, ' ')}`);
        }
      }
      break;
    }
    case 'slow-reader': {
      // Like reader, but over the big table, consuming slowly (a snapshot held across many turns).
      while (stdinOpen) {
        try {
          const db = await Database.open(file, { readOnly: true, cacheSize: 0 });
          try {
            let total = 0, n = 0;
            for await (const r of (await db.collection('ledger_big')).query().select('balance')) {
              total += r.balance as number;
              if (++n % 100 === 0) await new Promise((resolve) => setImmediate(resolve));
            }
            out(`read ${total} ${n} ${db.stats().generation}`);
          } finally {
            await db.close();
          }
        } catch (err) {
          if (!(err instanceof ModelVaultError)) throw err;
          out(`error ${err.code} ${err.message.replace(/\n/g, ' ')}`);
        }
      }
      break;
    }
    default:
      throw new Error(`unknown mode ${mode}`);
  }
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`concurrency-child failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(2);
});
