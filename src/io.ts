// Streaming import and export of NDJSON and CSV: rows flow through in constant memory in both
// directions. Used by `db.import` / `db.export` and the command line.
import fs from 'node:fs';
import readline from 'node:readline';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { parse as parseCsv } from 'csv-parse';
import { stringify as stringifyCsv } from 'csv-stringify';
import { ModelVaultError } from '../storage/errors.js';
import type { Collection } from './collection.js';
import type { Model } from './model.js';
import type { Query } from './query.js';
import type { FieldSpec } from './types.js';

export type RowFormat = 'ndjson' | 'csv';

export interface ImportOptions {
  readonly format?: RowFormat;
  /** 'abort' (default): the first bad line aborts and nothing is imported; 'skip': bad lines are reported and left out. */
  readonly onError?: 'abort' | 'skip';
  /** Called for each skipped line. */
  readonly onSkip?: (line: number, reason: string) => void;
  /** Called now and then with rows done and bytes read (for progress bars). */
  readonly onProgress?: (rows: number, bytesRead: number) => void;
}

export interface ImportSummary {
  readonly imported: number;
  readonly skipped: number;
  readonly lines: number;
}

export function formatOf(path: string, explicit?: string): RowFormat {
  const f = explicit ?? (path.toLowerCase().endsWith('.csv') ? 'csv' : 'ndjson');
  if (f !== 'csv' && f !== 'ndjson') throw new ModelVaultError('VALIDATION', `unknown format ${f}; use ndjson or csv`, { path: 'format' });
  return f;
}

/**
 * A CSV cell (always text) as a value of the field's type. An empty cell is an absent value; an
 * empty string is written quoted (`""`), and csv-parse hands that on as QUOTED_EMPTY.
 */
export function fromCsvCell(spec: FieldSpec | undefined, text: string): unknown {
  if (text === QUOTED_EMPTY) return '';
  if (text === '') return undefined;
  switch (spec?.kind) {
    case 'int': case 'float': {
      const n = Number(text);
      return Number.isNaN(n) && text.trim() !== 'NaN' ? text : n;
    }
    case 'bigint': try { return BigInt(text); } catch { return text; }
    // 'true'/'false' as exported; 1/0 as csv-stringify writes booleans by default
    case 'bool': return text === 'true' || text === '1' ? true : text === 'false' || text === '0' ? false : text;
    case 'timestamp': return new Date(text);
    case 'bytes': return new Uint8Array(Buffer.from(text, 'base64'));
    case 'list': case 'object': case 'json':
      try { return reviveJson(spec, JSON.parse(text)); } catch { return text; }
    default: return text;
  }
}

/** What csv-parse gives for a quoted empty cell (`""`): an empty string, not an absent value. */
const QUOTED_EMPTY = '\u0000quoted empty\u0000';

/** The numbers JSON has no literal for, as toJsonValue writes them. */
const SPECIAL_NUMBERS: Readonly<Record<string, number>> = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity, '-0': -0 };

/**
 * JSON (NDJSON lines, CSV json cells) back to field types: ISO strings to Dates, digit strings
 * to bigints, base64 to bytes, and "NaN", "Infinity", "-Infinity", "-0" to numbers.
 */
export function reviveJson(spec: FieldSpec | undefined, v: unknown): unknown {
  if (!spec || v === null || v === undefined) return v;
  switch (spec.kind) {
    case 'int': case 'float': return typeof v === 'string' && Object.prototype.hasOwnProperty.call(SPECIAL_NUMBERS, v) ? SPECIAL_NUMBERS[v] : v;
    case 'timestamp': return typeof v === 'string' || typeof v === 'number' ? new Date(v) : v;
    case 'bigint': return typeof v === 'string' || typeof v === 'number' ? (() => { try { return BigInt(v); } catch { return v; } })() : v;
    case 'bytes': return typeof v === 'string' ? new Uint8Array(Buffer.from(v, 'base64')) : v;
    case 'list': return Array.isArray(v) ? v.map((x) => reviveJson(spec.element, x)) : v;
    case 'object': {
      if (typeof v !== 'object' || Array.isArray(v)) return v;
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = reviveJson(spec.shape![k], x);
      return out;
    }
    default: return v;
  }
}

/** An NDJSON object as a row: JSON null in an optional field means absent, as in most exports. */
function reviveRow(model: Model, raw: unknown): unknown {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    const spec = model.fields[k];
    if (v === null && spec?.optional && spec.kind !== 'json') continue;
    out[k] = reviveJson(spec, v);
  }
  return out;
}

interface SourceLine { line: number; row?: unknown; error?: string }

async function* ndjsonLines(path: string, progress: { bytes: number }): AsyncGenerator<SourceLine> {
  const stream = fs.createReadStream(path);
  stream.on('data', (chunk) => { progress.bytes += chunk.length; });
  const rl = readline.createInterface({ input: stream, crlfDelay: Infinity });
  let line = 0;
  try {
    for await (const text of rl) {
      line++;
      if (text.trim() === '') continue;
      try {
        yield { line, row: JSON.parse(text) };
      } catch (err) {
        yield { line, error: `not valid JSON (${(err as Error).message})` };
      }
    }
  } finally {
    rl.close();
    stream.destroy();
  }
}

async function* csvLines(path: string, model: Model, progress: { bytes: number }): AsyncGenerator<SourceLine> {
  const stream = fs.createReadStream(path);
  stream.on('data', (chunk) => { progress.bytes += chunk.length; });
  // A malformed record (wrong number of columns, bad quoting) is reported as its own bad line,
  // in line order, and parsing goes on: with onError 'skip' the rows around it are kept.
  const malformed: SourceLine[] = [];
  const parser = stream.pipe(parseCsv({
    columns: true, relax_column_count: false, skip_empty_lines: true, info: true, max_record_size: 64 * 2 ** 20,
    cast: (value, context) => (!context.header && value === '' && context.quoting ? QUOTED_EMPTY : value),
    skip_records_with_error: true,
    on_skip: (err) => { malformed.push({ line: (err as { lines?: number } | undefined)?.lines ?? -1, error: err?.message ?? 'malformed CSV record' }); return undefined; },
  }));
  try {
    for await (const rec of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number } }>) {
      while (malformed.length > 0 && malformed[0].line < rec.info.lines) yield malformed.shift()!;
      const row: Record<string, unknown> = {};
      for (const [k, text] of Object.entries(rec.record)) {
        const v = fromCsvCell(model.fields[k], text);
        if (v !== undefined) row[k] = v;
      }
      yield { line: rec.info.lines, row };
    }
    yield* malformed.splice(0);
  } catch (err) {
    if ((err as { code?: string }).code?.startsWith('CSV_')) {
      const e = err as { lines?: number; message: string };
      yield { line: e.lines ?? -1, error: e.message };
      return;
    }
    throw err;
  } finally {
    stream.destroy();
  }
}

/**
 * Streams an NDJSON or CSV file into a collection in one transaction (bounded memory:
 * pages are written out as they fill). With onError 'abort' any bad line rolls everything back.
 */
export async function importFile(db: { transaction<T>(fn: (tx: { collection<M extends Model>(m: M): Collection<M> }) => Promise<T>): Promise<T> }, model: Model, path: string, opts: ImportOptions = {}): Promise<ImportSummary> {
  if (!fs.existsSync(path)) throw new ModelVaultError('IO', `no such file: ${path}`, { path, syscall: 'ENOENT' });
  const format = formatOf(path, opts.format);
  const progress = { bytes: 0 };
  const skip = opts.onError === 'skip';
  return db.transaction(async (tx) => {
    const coll = tx.collection(model);
    let imported = 0, skipped = 0, lines = 0;
    const source = format === 'csv' ? csvLines(path, model, progress) : ndjsonLines(path, progress);
    for await (const item of source) {
      lines = Math.max(lines, item.line);
      try {
        if (item.error) throw new ModelVaultError('VALIDATION', item.error, { path: '' });
        await coll.insert(format === 'ndjson' ? reviveRow(model, item.row) as never : item.row as never);
        imported++;
      } catch (err) {
        if (!(err instanceof ModelVaultError) || (err.code !== 'VALIDATION' && err.code !== 'DUPLICATE_KEY')) throw err;
        const reason = `${err.code}: ${err.message}`;
        if (!skip) throw new ModelVaultError(err.code, `line ${item.line}: ${err.message}`, { ...err.details, line: item.line }, { cause: err });
        skipped++;
        opts.onSkip?.(item.line, reason);
      }
      if ((imported + skipped) % 1000 === 0) opts.onProgress?.(imported + skipped, progress.bytes);
    }
    opts.onProgress?.(imported + skipped, progress.bytes);
    return { imported, skipped, lines };
  });
}

/**
 * A value as JSON-friendly data: Dates as ISO strings, bigints as strings, bytes as base64, and
 * NaN, ±Infinity and -0 (which JSON.stringify would write as null, null and 0) as strings.
 */
export function toJsonValue(v: unknown): unknown {
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (Object.is(v, -0)) return '-0';
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  if (Array.isArray(v)) return v.map(toJsonValue);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toJsonValue(x)]));
  return v;
}

async function write(out: Writable, chunk: string): Promise<void> {
  if (!out.write(chunk)) await once(out, 'drain');
}

/** Streams query results as NDJSON or CSV into `out`, honouring backpressure; returns the row count. */
export async function exportRows(
  query: Query<Record<string, unknown>>, format: RowFormat, out: Writable, columns: readonly string[],
  opts: { onProgress?: (rows: number) => void; jsonColumns?: ReadonlySet<string> } = {},
): Promise<number> {
  const { onProgress, jsonColumns } = opts;
  let n = 0;
  if (format === 'ndjson') {
    for await (const rows of query.batches()) {
      let text = '';
      for (const r of rows) text += `${JSON.stringify(toJsonValue(r))}\n`;
      await write(out, text);
      n += rows.length;
      onProgress?.(n);
    }
    return n;
  }
  // Booleans as true/false (csv-stringify's default is 1 and an empty cell, which reads back as
  // absent), and an empty string quoted, so that it is not an absent value either.
  const csv = stringifyCsv({
    header: true, columns: [...columns],
    cast: { boolean: (b) => (b ? 'true' : 'false'), string: (text) => (text === '' ? { value: '', quoted_empty: true } : text) },
  });
  const done = new Promise<void>((resolve, reject) => { csv.on('end', resolve); csv.on('error', reject); });
  csv.pipe(out, { end: false });
  for await (const rows of query.batches()) {
    for (const r of rows) {
      const rec: Record<string, unknown> = {};
      for (const c of columns) {
        const v = toJsonValue(r[c]);
        // A json field's cell is always JSON, so that the string "12" does not come back as 12.
        rec[c] = v !== undefined && (jsonColumns?.has(c) || (v !== null && typeof v === 'object')) ? JSON.stringify(v) : v;
      }
      if (!csv.write(rec)) await once(csv, 'drain');
    }
    n += rows.length;
    onProgress?.(n);
  }
  csv.end();
  await done;
  return n;
}
