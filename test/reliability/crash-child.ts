// Child process of crash-matrix.test.ts. Started ahead of its round (it loads while the
// parent checks the previous kill), it waits for "go SCENARIO FILE" on stdin, opens FILE,
// prints "ready", then runs the scenario, printing "start <op> ..." before and "ack <op> ..."
// after each operation has returned (so is durable). The parent SIGKILLs it at a random moment.
//
//   compact     insert one document, compact, repeat
//   backup      insert one document, back up to FILE.backup-K, repeat
//   spill       ORDER BY over every document under a small memory limit (spills), repeat
//   insertMany  one insertMany of a generated stream of STREAM_ROWS events, then exit
//   index       register the model with a new non-unique index (built over every row), then exit
//   migrate     migrate to a model with a new backfilled field and an index over it, then exit
import { Database } from '../../src/index.js';
import { DocsV2, Events, MIGRATED_TAG, PAGE_SIZE, SINGLE_ID_BASE, SPILL_MEMORY_LIMIT, STREAM_ROWS, doc, docsWithIndex, eventStream } from './crash-models.js';

const MAX_LIFETIME_MS = 120_000; // never outlive a parent that died without killing us

const out = (line: string) => process.stdout.write(`${line}\n`); // a pipe: written before the next operation starts

function waitForGo(): Promise<[string, string]> {
  return new Promise((resolve) => {
    let buffered = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk: string) => {
      buffered += chunk;
      const m = /^go (\S+) (.+)\n/.exec(buffered);
      if (m) {
        process.stdin.pause();
        resolve([m[1], m[2]]);
      }
    });
    process.stdin.on('end', () => process.exit(0));
  });
}

async function main(): Promise<void> {
  setTimeout(() => process.exit(3), MAX_LIFETIME_MS).unref();
  const [scenario, file] = await waitForGo();
  out('opening');
  const db = await Database.open(file, { recovery: 'truncate', pageSize: PAGE_SIZE, cacheSize: 4 << 20, memoryLimit: SPILL_MEMORY_LIMIT });
  out('ready');
  const ms = (t0: number) => Math.round(performance.now() - t0);
  switch (scenario) {
    case 'compact': {
      const docs = await db.collection('docs');
      for (let i = 0; ; i++) {
        await docs.insert(doc(SINGLE_ID_BASE + i));
        out(`ack insert ${i}`);
        out(`start compact ${i}`);
        const t0 = performance.now();
        await db.compact();
        out(`ack compact ${i} ${ms(t0)}`);
      }
    }
    case 'backup': {
      const docs = await db.collection('docs');
      for (let k = 0; ; k++) {
        await docs.insert(doc(SINGLE_ID_BASE + k));
        out(`ack insert ${k}`);
        out(`start backup ${k}`);
        const t0 = performance.now();
        await db.backup(`${file}.backup-${k}`);
        out(`ack backup ${k} ${ms(t0)}`);
      }
    }
    case 'spill': {
      const docs = await db.collection('docs');
      const expected = await docs.count();
      for (let k = 0; ; k++) {
        out(`start query ${k}`);
        const t0 = performance.now();
        let n = 0, last = '';
        for await (const row of docs.query().orderBy('text').select('id', 'text')) {
          if ((row.text as string) < last) throw new Error('rows out of order');
          last = row.text as string;
          n++;
        }
        if (n !== expected) throw new Error(`query returned ${n} of ${expected} rows`);
        out(`ack query ${k} ${ms(t0)} ${db.stats().spill.runsWritten}`);
      }
    }
    case 'insertMany': {
      const events = await db.register(Events);
      out('start insertMany');
      const t0 = performance.now();
      const n = await events.insertMany(eventStream(STREAM_ROWS));
      out(`ack insertMany ${n} ${ms(t0)}`);
      break;
    }
    case 'index': {
      out('start index');
      const t0 = performance.now();
      await db.register(docsWithIndex('byN'));
      out(`ack index ${ms(t0)}`);
      break;
    }
    case 'migrate': {
      out('start migrate');
      const t0 = performance.now();
      const { rows } = await db.migrate(DocsV2, { backfill: { tag: MIGRATED_TAG } });
      out(`ack migrate ${ms(t0)} ${rows}`);
      break;
    }
    default:
      throw new Error(`unknown scenario ${scenario}`);
  }
  await db.close();
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`crash-child failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(2);
});
