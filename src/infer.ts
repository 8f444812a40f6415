// `import --infer`: a model guessed from the first rows of a file. Numbers that are all
// integers become t.int(), ISO-8601 strings t.timestamp(), objects and arrays t.json();
// a field missing or empty in some sampled row is optional.
import fs from 'node:fs';
import readline from 'node:readline';
import { parse as parseCsv } from 'csv-parse';
import { ModelVaultError } from '../storage/errors.js';
import { model, type Model } from './model.js';
import { t, type AnyField } from './types.js';
import type { RowFormat } from './io.js';

const SAMPLE_ROWS = 1000;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

type Kind = 'int' | 'float' | 'bool' | 'timestamp' | 'string' | 'json';

function kindOf(v: unknown, csv: boolean): Kind | null {
  if (v === null || v === undefined || v === '') return null;
  if (csv && typeof v === 'string') {
    if (/^-?\d+$/.test(v) && Number.isSafeInteger(Number(v))) return 'int';
    if (v.trim() !== '' && !Number.isNaN(Number(v))) return 'float';
    if (v === 'true' || v === 'false') return 'bool';
  }
  if (typeof v === 'number') return Number.isSafeInteger(v) ? 'int' : 'float';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'string') return ISO_DATE.test(v) && !Number.isNaN(Date.parse(v)) ? 'timestamp' : 'string';
  return 'json';
}

function widen(a: Kind | undefined, b: Kind): Kind {
  if (!a || a === b) return b;
  if ((a === 'int' && b === 'float') || (a === 'float' && b === 'int')) return 'float';
  if ((a === 'timestamp' && b === 'string') || (a === 'string' && b === 'timestamp')) return 'string';
  return 'json';
}

async function sample(path: string, format: RowFormat): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = [];
  const stream = fs.createReadStream(path);
  try {
    if (format === 'csv') {
      for await (const rec of stream.pipe(parseCsv({ columns: true, skip_empty_lines: true, to_line: SAMPLE_ROWS + 1 }))) rows.push(rec as Record<string, unknown>);
    } else {
      for await (const line of readline.createInterface({ input: stream, crlfDelay: Infinity })) {
        if (line.trim() === '') continue;
        try { rows.push(JSON.parse(line)); } catch { /* bad lines are reported by the import itself */ }
        if (rows.length >= SAMPLE_ROWS) break;
      }
    }
  } finally {
    stream.destroy();
  }
  return rows;
}

export async function inferModel(name: string, path: string, format: RowFormat, key: string): Promise<Model> {
  const rows = await sample(path, format);
  if (rows.length === 0) throw new ModelVaultError('VALIDATION', `${path} has no rows to infer a model from`, { path: '--infer' });
  const kinds = new Map<string, Kind>();
  const seen = new Map<string, number>();
  for (const row of rows) {
    if (row === null || typeof row !== 'object' || Array.isArray(row)) continue;
    for (const [k, v] of Object.entries(row)) {
      const kind = kindOf(v, format === 'csv');
      if (kind === null) continue;
      kinds.set(k, widen(kinds.get(k), kind));
      seen.set(k, (seen.get(k) ?? 0) + 1);
    }
  }
  if (!kinds.has(key)) throw new ModelVaultError('VALIDATION', `no field ${key} to use as primary key; pass --key FIELD`, { path: '--key' });
  const shape: Record<string, AnyField> = {};
  for (const [k, kind] of kinds) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) || k === '__proto__' || k === 'constructor') throw new ModelVaultError('VALIDATION', `field name ${JSON.stringify(k)} cannot be a model field`, { path: k });
    const base: AnyField = kind === 'int' ? t.int() : kind === 'float' ? t.float() : kind === 'bool' ? t.bool() : kind === 'timestamp' ? t.timestamp() : kind === 'string' ? t.string() : t.json();
    shape[k] = k !== key && (seen.get(k) ?? 0) < rows.length ? base.optional() : base;
  }
  if (kinds.get(key) === 'json' || kinds.get(key) === 'bool') throw new ModelVaultError('VALIDATION', `field ${key} cannot be a primary key`, { path: '--key' });
  return model(name, shape, { primaryKey: key });
}
