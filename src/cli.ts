#!/usr/bin/env node
// The `modelvault` command line. Arguments by commander, CSV by csv-parse/csv-stringify,
// progress bars by cli-progress (only when stderr is a terminal). User errors print one line
// and exit 1; only internal errors print a stack.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import { ModelVaultError } from '../storage/errors.js';
import { readFileSummary } from '../storage/inspect.js';
import { hasModelVaultMagic } from '../storage/superblock.js';
import { Database } from './database.js';
import { exportRows, formatOf, importFile } from './io.js';
import { Model, isModelLike, asModel } from './model.js';
import { inferModel } from './infer.js';
import type { Query } from './query.js';
import { compileSql } from './sql.js';

const out = (s: string) => process.stdout.write(`${s}\n`);

/** `--out` would truncate it: a database (the one being read, or any other) is never an output file. */
function refuseDatabaseAsOutput(out: string): void {
  if (hasModelVaultMagic(out)) throw new ModelVaultError('VALIDATION', `refusing to write over ${out}: it is a ModelVault database`, { path: 'out' });
}

async function withDb<T>(file: string, opts: { readOnly: boolean; memoryLimit?: number }, fn: (db: Database) => Promise<T>): Promise<T> {
  if (!fs.existsSync(file)) throw new ModelVaultError('IO', `no such file: ${file}`, { path: file });
  const db = await Database.open(file, { readOnly: opts.readOnly, create: false, memoryLimit: opts.memoryLimit });
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

function bar(label: string, total: number, unit: string): cliProgress.SingleBar | null {
  if (!process.stderr.isTTY) return null;
  const b = new cliProgress.SingleBar({
    stream: process.stderr,
    format: `${label} {bar} {percentage}% | {done} ${unit} | {rows} rows | {rate} rows/s | ETA {eta_formatted}`,
    hideCursor: true,
  }, cliProgress.Presets.shades_classic);
  b.start(total, 0, { rows: 0, rate: 0, done: '0' });
  return b;
}

function formatBytes(n: number): string {
  return n < 2 ** 20 ? `${(n / 1024).toFixed(1)} KiB` : n < 2 ** 30 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${(n / 2 ** 30).toFixed(2)} GiB`;
}

function cell(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'bigint') return `${v}`;
  if (v instanceof Uint8Array) return `<${v.byteLength} bytes>`;
  if (typeof v === 'object') return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `${x}` : x));
  return String(v);
}

function printTable(rows: Record<string, unknown>[]): void {
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  if (columns.length === 0) { out('(no rows)'); return; }
  const text = rows.map((r) => columns.map((c) => { const s = cell(r[c]); return s.length > 60 ? `${s.slice(0, 57)}...` : s; }));
  const widths = columns.map((c, i) => Math.max(c.length, ...text.map((t) => t[i].length)));
  out(columns.map((c, i) => c.padEnd(widths[i])).join('  '));
  out(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const t of text) out(t.map((s, i) => s.padEnd(widths[i])).join('  '));
  out(`(${rows.length} row${rows.length === 1 ? '' : 's'})`);
}

/** `--where 'amount > 900 AND category = ''books'''` through the SQL parser, literals allowed. */
async function buildQuery(db: Database, collection: string, o: { where?: string; order?: string; limit?: string; offset?: string; select?: string }): Promise<Query<Record<string, unknown>>> {
  await db.collection(collection);
  let q = compileSql(`SELECT * FROM ${collection}${o.where ? ` WHERE ${o.where}` : ''}`, [], (name) => db.modelForSql(name), db.host, { literals: true });
  for (const part of (o.order ?? '').split(',').filter(Boolean)) {
    const [field, dir = 'asc'] = part.split(':');
    q = q.orderBy(field.trim(), dir.trim().toLowerCase() as 'asc' | 'desc');
  }
  if (o.offset) q = q.offset(Number(o.offset));
  if (o.limit) q = q.limit(Number(o.limit));
  if (o.select) q = q.select(...o.select.split(',').map((s) => s.trim()).filter(Boolean));
  return q;
}

async function printRows(q: Query<Record<string, unknown>>, mode: 'table' | 'json' | 'ndjson'): Promise<void> {
  const { toJsonValue } = await import('./io.js');
  if (mode === 'ndjson') {
    for await (const rows of q.batches()) for (const r of rows) out(JSON.stringify(toJsonValue(r)));
  } else if (mode === 'json') {
    out(JSON.stringify(toJsonValue(await q.toArray()), null, 2));
  } else {
    const rows: Record<string, unknown>[] = [];
    const cap = 1000;
    for await (const r of q.limit(Math.min(cap + 1, q.state.limit))) rows.push(r);
    printTable(rows.slice(0, cap));
    if (rows.length > cap) out(`(showing the first ${cap}; use --limit, --json or --ndjson for more)`);
  }
}

async function loadModel(file: string, collection: string): Promise<Model> {
  const mod = await import(pathToFileURL(path.resolve(file)).href) as Record<string, unknown>;
  const candidates = Object.values(mod).filter(isModelLike);
  const found = candidates.find((m) => m.name === collection) ?? (candidates.length === 1 ? candidates[0] : undefined);
  if (!found) throw new ModelVaultError('VALIDATION', `${file} exports no model named ${collection}`, { path: '--model' });
  return asModel(found);
}

export function buildProgram(): Command {
  const program = new Command('modelvault')
    .description('Inspect, verify, query, import and export ModelVault files')
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  program.command('inspect').argument('<file>').description('header, superblocks, collections, row counts, indexes, sizes, free space')
    .option('--json', 'machine-readable output')
    .action(async (file: string, o: { json?: boolean }) => {
      const summary = await readFileSummary(file);
      const info = await withDb(file, { readOnly: true }, async (db) => ({ stats: db.stats(), collections: await db.collections(), recovery: db.recoveryInfo }));
      if (o.json) { out(JSON.stringify({ ...summary, ...info }, (_k, v) => (typeof v === 'bigint' ? `${v}` : v), 2)); return; }
      out(`file            ${file} (${formatBytes(summary.fileBytes)})`);
      out(`format version  ${summary.header.formatVersion}`);
      out(`page size       ${summary.header.pageSize} bytes`);
      for (const s of summary.superblocks) {
        out(`superblock ${s.slot}    ${s.superblock ? `generation ${s.superblock.generation}, ${s.superblock.pageCount} pages, ${s.valid ? 'valid' : 'does not fit the file'}` : 'invalid or blank'}`);
      }
      out(`in use          generation ${info.stats.generation}, ${info.stats.pageCount} pages, ${info.stats.freePages} free (${formatBytes(info.stats.freePages * info.stats.pageSize)})`);
      if (info.recovery) out(`recovery        ${info.recovery.reason}`);
      out(`collections     ${info.collections.length}`);
      for (const c of info.collections) {
        out(`  ${c.name}  schema v${c.version}, ${c.rowCount} rows, key (${c.primaryKey.join(', ')}), ${Object.keys(c.fields).length} fields`);
        for (const ix of c.indexes) out(`    index ${ix.name} (${ix.fields.join(', ')})${ix.unique ? ' unique' : ''}`);
      }
    });

  program.command('verify').argument('<file>').description('read every page, check every checksum and tree invariant; exit 1 when damaged')
    .action(async (file: string) => {
      let report;
      try {
        report = await withDb(file, { readOnly: true }, (db) => db.verify());
      } catch (err) {
        if (err instanceof ModelVaultError && (err.code === 'CORRUPT' || err.code === 'NOT_A_DATABASE' || err.code === 'UNSUPPORTED_VERSION')) {
          out(`${file}: DAMAGED`);
          out(`  at byte ${err.details.offset ?? '?'}: ${err.message}`);
          process.exitCode = 1;
          return;
        }
        throw err;
      }
      out(`${file}: ${report.ok ? 'OK' : 'DAMAGED'} — generation ${report.generation}, ${report.pageCount} pages of ${report.pageSize} bytes, ${report.trees} trees, ${report.entries} entries, ${report.freePages} free pages`);
      for (const p of report.problems) out(`  at byte ${p.offset}: ${p.message}`);
      if (!report.ok) process.exitCode = 1;
    });

  program.command('query').argument('<file>').argument('[collection]')
    .description('query a collection (--where/--order/--limit/--select) or run --sql')
    .option('--where <expr>', "condition, e.g. 'amount > 900 AND category = ''books'''")
    .option('--order <keys>', 'sort keys, e.g. amount:desc,id')
    .option('--limit <n>').option('--offset <n>')
    .option('--select <fields>', 'comma-separated fields')
    .option('--sql <text>', 'a SELECT statement (literals allowed here)')
    .option('--memory-limit <mib>', 'operator memory before spilling, in MiB')
    .addOption(new Option('--json', 'a JSON array').conflicts('ndjson'))
    .option('--ndjson', 'one JSON object per line')
    .action(async (file: string, collection: string | undefined, o: { where?: string; order?: string; limit?: string; offset?: string; select?: string; sql?: string; memoryLimit?: string; json?: boolean; ndjson?: boolean }) => {
      const memoryLimit = o.memoryLimit ? Number(o.memoryLimit) * 2 ** 20 : undefined;
      await withDb(file, { readOnly: true, memoryLimit }, async (db) => {
        let q: Query<Record<string, unknown>>;
        if (o.sql) {
          for (const c of await db.collections()) await db.collection(c.name);
          q = compileSql(o.sql, [], (name) => db.modelForSql(name), db.host, { literals: true });
        } else {
          if (!collection) throw new ModelVaultError('VALIDATION', 'query needs a collection or --sql', { path: 'collection' });
          q = await buildQuery(db, collection, o);
        }
        const mode = o.json ? 'json' : o.ndjson ? 'ndjson' : 'table';
        await printRows(q, mode);
      });
    });

  program.command('import').argument('<file>').argument('<collection>').argument('<data>', 'an .ndjson or .csv file')
    .description('stream NDJSON or CSV rows into a collection, in one transaction')
    .option('--model <module>', 'a JS module exporting the model')
    .option('--infer', 'infer a model from the first rows (new collections)')
    .option('--key <field>', 'primary key for --infer (default: id)')
    .addOption(new Option('--format <format>').choices(['ndjson', 'csv']))
    .addOption(new Option('--on-error <mode>', 'abort: nothing is imported; skip: report bad lines and go on').choices(['abort', 'skip']).default('abort'))
    .action(async (file: string, collection: string, data: string, o: { model?: string; infer?: boolean; key?: string; format?: 'ndjson' | 'csv'; onError: 'abort' | 'skip' }) => {
      if (!fs.existsSync(data)) throw new ModelVaultError('IO', `no such file: ${data}`, { path: data });
      const created = !fs.existsSync(file);
      if (created && !o.model && !o.infer) {
        throw new ModelVaultError('VALIDATION', `${file} does not exist: pass --model module.js or --infer to create collection ${collection}`, { path: '--model' });
      }
      const db = await Database.open(file, { create: true });
      let imported = false;
      try {
        let model: Model;
        const existing = (await db.collections()).some((c) => c.name === collection);
        if (o.model) model = await loadModel(o.model, collection);
        else if (existing) model = (await db.collection(collection)).model;
        else if (o.infer) model = await inferModel(collection, data, formatOf(data, o.format), o.key ?? 'id');
        else throw new ModelVaultError('VALIDATION', `collection ${collection} does not exist: pass --model module.js or --infer`, { path: '--model' });
        await db.register(model);
        const size = fs.statSync(data).size;
        const progress = bar('import', size, 'MB');
        const t0 = performance.now();
        let skippedLines = 0;
        const summary = await importFile(db, model, data, {
          format: o.format,
          onError: o.onError,
          onSkip: (line, reason) => { skippedLines++; process.stderr.write(`${progress ? '\n' : ''}line ${line}: skipped: ${reason}\n`); },
          onProgress: (rows, bytes) => progress?.update(bytes, { rows, rate: Math.round(rows / ((performance.now() - t0) / 1000 || 1)), done: (bytes / 2 ** 20).toFixed(1) }),
        });
        progress?.update(size);
        progress?.stop();
        const secs = (performance.now() - t0) / 1000;
        out(`imported ${summary.imported} rows into ${collection} (${skippedLines} skipped) in ${secs.toFixed(1)} s, ${Math.round(summary.imported / (secs || 1))} rows/s`);
        imported = true;
      } finally {
        await db.close();
        // A file this command created must not stay behind, empty, when the import failed.
        if (created && !imported) fs.rmSync(file, { force: true });
      }
    });

  program.command('export').argument('<file>').argument('<collection>')
    .description('stream a collection (or part of it) as NDJSON or CSV')
    .option('--where <expr>').option('--order <keys>').option('--limit <n>').option('--select <fields>')
    .addOption(new Option('--format <format>').choices(['ndjson', 'csv']).default('ndjson'))
    .option('--out <path>', 'output file (default: standard output)')
    .action(async (file: string, collection: string, o: { where?: string; order?: string; limit?: string; select?: string; format: 'ndjson' | 'csv'; out?: string }) => {
      await withDb(file, { readOnly: true }, async (db) => {
        const q = await buildQuery(db, collection, o);
        const coll = await db.collection(collection);
        const columns = o.select ? o.select.split(',').map((s) => s.trim()) : Object.keys(coll.model.fields);
        const total = o.where || o.limit ? 0 : await coll.count();
        const progress = o.out ? bar('export', total, 'rows') : null;
        const t0 = performance.now();
        if (o.out) refuseDatabaseAsOutput(o.out);
        const stream = o.out ? fs.createWriteStream(o.out) : process.stdout;
        const n = await exportRows(q, o.format, stream, columns, {
          onProgress: (rows) => progress?.update(rows, { rows, rate: Math.round(rows / ((performance.now() - t0) / 1000 || 1)), done: String(rows) }),
          jsonColumns: new Set(columns.filter((c) => coll.model.fields[c]?.kind === 'json')),
        });
        progress?.stop();
        if (o.out) {
          await new Promise<void>((resolve, reject) => (stream as fs.WriteStream).end((err?: Error | null) => (err ? reject(err) : resolve())));
          process.stderr.write(`exported ${n} rows to ${o.out} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
        }
      });
    });

  program.command('compact').argument('<file>').description('rewrite without free space; the file shrinks')
    .action(async (file: string) => {
      await withDb(file, { readOnly: false }, async (db) => {
        const r = await db.compact();
        out(`compacted ${file}: ${formatBytes(r.bytesBefore)} → ${formatBytes(r.bytesAfter)}`);
      });
    });

  program.command('backup').argument('<file>').requiredOption('--to <dest>', 'destination file')
    .description('a consistent copy of the committed state')
    .action(async (file: string, o: { to: string }) => {
      await withDb(file, { readOnly: true }, async (db) => {
        const r = await db.backup(o.to);
        out(`backed up ${file} to ${o.to} (${formatBytes(r.bytes)})`);
      });
    });

  program.command('dump-catalog').argument('<file>').description('the schema catalog as JSON')
    .action(async (file: string) => {
      await withDb(file, { readOnly: true }, async (db) => {
        out(JSON.stringify(await db.collections(), (_k, v) => (typeof v === 'bigint' ? `${v}` : v instanceof RegExp ? v.source : v), 2));
      });
    });
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof ModelVaultError) {
      process.stderr.write(`modelvault: ${err.code}: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`modelvault: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    return 70;
  }
}

const invokedDirectly = process.argv[1] && /cli\.(ts|js)$/.test(process.argv[1]);
if (invokedDirectly) {
  // A reader that went away (`modelvault query ... | head`) is not an error: stop quietly
  // instead of crashing on an unhandled EPIPE with a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
    throw err;
  });
  main(process.argv).then((code) => { process.exitCode = code; });
}
