// `modelvault import` and `modelvault export` end to end, through a child process:
// NDJSON with --infer, into an existing collection, CSV, a --model module, --on-error abort
// and skip, no progress bar on a non-terminal, and NDJSON/CSV export round trips.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database } from '../../src/index.js';
import {
  MODEL_MODULE, PROGRESS_BAR_CHARS, ROOT, asJson, cli, expectOk, expectUserError, generateOrders, makeTempDir,
  removeDir, toNdjson, type OrderRow,
} from './helpers.js';

const N = 3000;
let dir: string;
let rows: OrderRow[];
let ndjson: string;      // rows 1..N
let extraNdjson: string; // rows N+1..N+400, into the existing collection
let extraCsv: string;    // rows N+401..N+700, CSV into the existing collection
let extraRows: OrderRow[];
let modelled: string;    // rows 1..N imported with --model; only read (copied before writing)

/** A CSV cell as csv-stringify writes it: quoted when it holds a comma, quote or line break. */
function csvCell(v: unknown): string {
  const s = v === undefined ? '' : v instanceof Date ? v.toISOString() : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

const COLUMNS = ['id', 'userId', 'category', 'amount', 'qty', 'ts', 'note'] as const;

function toCsv(data: readonly OrderRow[]): string {
  return [COLUMNS.join(','), ...data.map((r) => COLUMNS.map((c) => csvCell(r[c])).join(','))].join('\n') + '\n';
}

/** All rows of a collection, by id, read through the library (read-only, so no lock is taken). */
async function readRows(file: string, collection = 'orders'): Promise<Record<string, unknown>[]> {
  const db = await Database.open(file, { readOnly: true, create: false });
  try {
    return await (await db.collection(collection)).query().orderBy('id').toArray();
  } finally {
    await db.close();
  }
}

async function countRows(file: string): Promise<number> {
  const db = await Database.open(file, { readOnly: true, create: false });
  try {
    return await (await db.collection('orders')).count();
  } finally {
    await db.close();
  }
}

/** The rows of the model with `note` left out when absent: what reading them back gives. */
function expected(data: readonly OrderRow[]): Record<string, unknown>[] {
  return data.map((r) => ({ ...r }));
}

const good = (id: number) => ({ id, userId: 1, category: 'books', amount: 12.5, qty: 2, ts: '2025-03-01T10:00:00.000Z' });

beforeAll(() => {
  dir = makeTempDir('io');
  const all = generateOrders(N + 700);
  rows = all.slice(0, N);
  extraRows = all.slice(N);
  ndjson = path.join(dir, 'orders.ndjson');
  fs.writeFileSync(ndjson, toNdjson(rows));
  extraNdjson = path.join(dir, 'extra.ndjson');
  fs.writeFileSync(extraNdjson, toNdjson(extraRows.slice(0, 400)));
  extraCsv = path.join(dir, 'extra.csv');
  fs.writeFileSync(extraCsv, toCsv(extraRows.slice(400)));
});

beforeAll(async () => {
  modelled = path.join(dir, 'modelled.modelvault');
  const r = expectOk(await cli('import', modelled, 'orders', ndjson, '--model', MODEL_MODULE));
  expect(r.stdout).toMatch(new RegExp(`^imported ${N} rows into orders \\(0 skipped\\)`));
  expect(r.stderr).toBe('');
});

afterAll(() => removeDir(dir));

describe('import --infer, then into the existing collection', () => {
  let inferred: string;

  it('infers ints, floats, ISO timestamps and optional fields from NDJSON and imports every row', async () => {
    inferred = path.join(dir, 'inferred.modelvault');
    const r = expectOk(await cli('import', inferred, 'orders', ndjson, '--infer'));
    expect(r.stdout).toMatch(new RegExp(`^imported ${N} rows into orders \\(0 skipped\\)`));
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    // stderr is a pipe, not a terminal: no progress bar, nothing at all
    expect(r.stderr).toBe('');

    const catalog = JSON.parse(expectOk(await cli('dump-catalog', inferred)).stdout) as { name: string; primaryKey: string[]; fields: Record<string, { kind: string; optional: boolean }> }[];
    expect(catalog).toHaveLength(1);
    const { name, primaryKey, fields } = catalog[0];
    expect(name).toBe('orders');
    expect(primaryKey).toEqual(['id']);
    const kinds = Object.fromEntries(Object.entries(fields).map(([k, f]) => [k, `${f.kind}${f.optional ? '?' : ''}`]));
    expect(kinds).toEqual({ id: 'int', userId: 'int', category: 'string', amount: 'float', qty: 'int', ts: 'timestamp', note: 'string?' });

    const back = await readRows(inferred);
    expect(back).toHaveLength(N);
    expect(back[0].ts).toBeInstanceOf(Date);
    expect(back).toEqual(expected(rows));
  });

  it('imports NDJSON and then CSV into the existing collection without --model or --infer', async () => {
    const a = expectOk(await cli('import', inferred, 'orders', extraNdjson));
    expect(a.stdout).toMatch(/^imported 400 rows into orders \(0 skipped\)/);
    expect(a.stderr).toBe('');
    const b = expectOk(await cli('import', inferred, 'orders', extraCsv));
    expect(b.stdout).toMatch(/^imported 300 rows into orders \(0 skipped\)/);
    expect(b.stderr).toBe('');
    // CSV cells became ints, floats and Dates again; quoted commas, quotes, line breaks and
    // non-ASCII text in notes survived; empty cells are absent optional fields.
    const back = await readRows(inferred);
    expect(back).toHaveLength(N + 700);
    expect(back.slice(N)).toEqual(expected(extraRows));
    expect(back.slice(0, N)).toEqual(expected(rows));
  });
});

describe('import --model and --on-error', () => {
  it('--model loads a TypeScript model module: its indexes are created and the rows stored', async () => {
    const db = await Database.open(modelled, { readOnly: true, create: false });
    try {
      const [meta] = await db.collections();
      expect(meta.indexes.map((ix) => [ix.name, ix.fields])).toEqual([['byUser', ['userId']], ['byCategoryTs', ['category', 'ts']]]);
      expect(meta.fields.amount.kind).toBe('float');
      expect(meta.rowCount).toBe(N);
    } finally {
      await db.close();
    }
    expect(await readRows(modelled)).toEqual(expected(rows));
  });

  const BAD_LINE = 4;
  const cases = [
    { what: 'invalid JSON', line: '{"id": 999001, "userId": 1,', reason: /not valid JSON/ },
    { what: 'a wrong type', line: JSON.stringify({ ...good(999001), userId: 'seven' }), reason: /VALIDATION.*userId/ },
    { what: 'a duplicate key', line: JSON.stringify(good(17)), reason: /DUPLICATE_KEY/ },
  ];

  it('--on-error abort (the default): a bad line exits non-zero with one line naming it, and nothing is imported', async () => {
    const runs = await Promise.all(cases.map(async (c, i) => {
      const file = path.join(dir, `abort-${i}.modelvault`);
      fs.copyFileSync(modelled, file);
      const data = path.join(dir, `abort-${i}.ndjson`);
      // three good lines, the bad one on line 4, then more good lines
      fs.writeFileSync(data, [good(900001), good(900002), good(900003)].map((x) => JSON.stringify(x)).concat(c.line, JSON.stringify(good(900005))).join('\n') + '\n');
      const args = i === 0 ? ['import', file, 'orders', data] : ['import', file, 'orders', data, '--on-error', 'abort'];
      return { c, file, r: await cli(...args) };
    }));
    for (const { c, file, r } of runs) {
      const line = expectUserError(r, c.reason);
      expect(line, c.what).toMatch(new RegExp(`\\bline ${BAD_LINE}\\b`));
      expect(r.stdout, c.what).toBe('');
      expect(await countRows(file), c.what).toBe(N);
      const db = await Database.open(file, { readOnly: true, create: false });
      try {
        const orders = await db.collection('orders');
        expect(await orders.get(900001), c.what).toBeUndefined();
        expect(await orders.get(900005), c.what).toBeUndefined();
        expect(await orders.get(17), c.what).toEqual(rows[16]);
      } finally {
        await db.close();
      }
    }
  });

  it('--on-error skip: bad lines are reported with their number and reason, good rows are imported', async () => {
    const data = path.join(dir, 'skip.ndjson');
    const lines = [
      JSON.stringify(good(800001)),                                 // 1
      cases[0].line,                                                // 2 invalid JSON
      JSON.stringify(good(800003)),                                 // 3
      '',                                                           // 4 blank: ignored
      cases[1].line,                                                // 5 wrong type
      JSON.stringify({ ...good(800006), note: null }),              // 6 null in an optional field: absent
      cases[2].line,                                                // 7 duplicate key (id 17 exists)
      JSON.stringify({ ...good(800008), color: 'red' }),            // 8 unknown field
      JSON.stringify(good(800009)),                                 // 9
    ];
    fs.writeFileSync(data, lines.join('\n') + '\n');
    const file = path.join(dir, 'ndjson-skip.modelvault');
    fs.copyFileSync(modelled, file);
    const r = expectOk(await cli('import', file, 'orders', data, '--on-error', 'skip'));
    expect(r.stdout).toMatch(/^imported 4 rows into orders \(4 skipped\)/);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    const reported = r.stderr.split('\n').filter(Boolean);
    expect(reported).toHaveLength(4);
    expect(reported[0]).toMatch(/^line 2: skipped: VALIDATION: not valid JSON/);
    expect(reported[1]).toMatch(/^line 5: skipped: VALIDATION: .*userId/);
    expect(reported[2]).toMatch(/^line 7: skipped: DUPLICATE_KEY: /);
    expect(reported[3]).toMatch(/^line 8: skipped: VALIDATION: .*color/);
    expect(r.stderr).not.toMatch(PROGRESS_BAR_CHARS);

    const db = await Database.open(file, { readOnly: true, create: false });
    try {
      const orders = await db.collection('orders');
      expect(await orders.count()).toBe(N + 4);
      for (const id of [800001, 800003, 800006, 800009]) expect(await orders.get(id)).toEqual({ ...good(id), ts: new Date(good(id).ts) });
      expect(await orders.get(800008)).toBeUndefined();
      expect(await orders.get(17)).toEqual(rows[16]); // the duplicate did not replace it
    } finally {
      await db.close();
    }
  });

  it('--on-error skip with CSV: a malformed record and a bad cell are skipped, the rows around them kept', async () => {
    const file = path.join(dir, 'csv-skip.modelvault');
    fs.copyFileSync(modelled, file);
    const data = path.join(dir, 'skip.csv');
    fs.writeFileSync(data, [
      COLUMNS.join(','),                                      // 1 header
      '700001,1,books,1.5,1,2025-01-01T00:00:00Z,',           // 2
      '700002,1,books,1.5,lots,2025-01-01T00:00:00Z,',        // 3 qty is not a number
      '700003,1,books,1.5,1,2025-01-01T00:00:00Z',            // 4 a column short
      '700004,1,books,1.5,1,2025-01-01T00:00:00Z,"a, ""b"""', // 5
    ].join('\n') + '\n');
    const r = expectOk(await cli('import', file, 'orders', data, '--on-error', 'skip'));
    expect(r.stdout).toMatch(/^imported 2 rows into orders \(2 skipped\)/);
    const reported = r.stderr.split('\n').filter(Boolean);
    expect(reported).toHaveLength(2);
    expect(reported[0]).toMatch(/^line 3: skipped: VALIDATION: .*qty/);
    expect(reported[1]).toMatch(/^line 4: skipped: /);
    const back = (await readRows(file)).filter((x) => (x.id as number) > N);
    expect(back.map((x) => x.id)).toEqual([700001, 700004]);
    expect(back[1].note).toBe('a, "b"');
  });
});

describe('export', () => {
  let sourceRows: Record<string, unknown>[];

  beforeAll(async () => {
    sourceRows = await readRows(modelled);
    expect(sourceRows).toHaveLength(N);
  });

  it('NDJSON to stdout and CSV to --out re-import (with --infer) into new files as the same rows', async () => {
    const outCsv = path.join(dir, 'out.csv');
    const [nd, csv] = await Promise.all([
      cli('export', modelled, 'orders'),
      cli('export', modelled, 'orders', '--format', 'csv', '--out', outCsv),
    ]);
    expectOk(nd);
    expectOk(csv);
    expect(nd.stderr).toBe('');
    expect(csv.stdout).toBe('');
    // --out reports on stderr, with no progress bar since stderr is not a terminal
    expect(csv.stderr).toMatch(new RegExp(`^exported ${N} rows to .*out\\.csv in `));
    expect(csv.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(csv.stderr).not.toMatch(PROGRESS_BAR_CHARS);
    // NDJSON: one object per row, with JSON-friendly values (ISO timestamps, absent notes absent)
    const lines = nd.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(N);
    expect(lines.map((l) => JSON.parse(l)).sort((a, b) => a.id - b.id)).toEqual(asJson(sourceRows));
    const csvText = fs.readFileSync(outCsv, 'utf8');
    expect(csvText.split('\n')[0]).toBe(COLUMNS.join(','));

    const outNd = path.join(dir, 'out.ndjson');
    fs.writeFileSync(outNd, nd.stdout);
    const [fromNd, fromCsv] = [path.join(dir, 'rt-nd.modelvault'), path.join(dir, 'rt-csv.modelvault')];
    const imports = await Promise.all([
      cli('import', fromNd, 'orders', outNd, '--infer'),
      cli('import', fromCsv, 'orders', outCsv, '--infer'),
    ]);
    for (const r of imports) expect(expectOk(r).stdout).toMatch(new RegExp(`^imported ${N} rows into orders \\(0 skipped\\)`));
    expect(await readRows(fromNd)).toEqual(sourceRows);
    expect(await readRows(fromCsv)).toEqual(sourceRows);
  });

  it('NDJSON and CSV exports re-import (with --model) as exactly the same values of every type', async () => {
    const { Things } = await import('./fixtures/things-model.js');
    const source = path.join(dir, 'things.modelvault');
    const rows = [
      { id: 1, big: -(2n ** 63n), f: -0, ts: new Date(0), b: new Uint8Array([0, 255]), j: { n: 1.5, arr: [1, 'x', null] }, tags: [], o: { x: 1 }, u: '123e4567-e89b-12d3-a456-426614174000', e: 'a' as const, flag: true, s: 'héllo "q" \n, comma', note: '' },
      { id: 2, big: 2n ** 63n - 1n, f: NaN, ts: new Date(8.64e15), tags: ['a', ''], e: 'b' as const, flag: false, s: '' },
      { id: 3, big: 0n, f: Infinity, ts: new Date(-1), j: '12', tags: ['😀'], o: { x: -1, y: '' }, e: 'a' as const, flag: true, s: '😀 emoji\r\n' },
      { id: 4, big: -1n, f: -Infinity, ts: new Date(-8.64e15), j: 'true', tags: [], e: 'b' as const, flag: false, s: ',' },
    ];
    const db = await Database.open(source);
    try {
      await (await db.register(Things)).insertMany(rows);
    } finally {
      await db.close();
    }
    const read = async (file: string) => {
      const d = await Database.open(file, { readOnly: true });
      try {
        return await (await d.register(Things)).query().orderBy('id').toArray();
      } finally {
        await d.close();
      }
    };
    const want = await read(source);
    for (const format of ['ndjson', 'csv']) {
      const out = path.join(dir, `things.${format}`), target = path.join(dir, `things-${format}.modelvault`);
      expectOk(await cli('export', source, 'things', '--format', format, '--out', out));
      expectOk(await cli('import', target, 'things', out, '--model', path.join(ROOT, 'test/cli/fixtures/things-model.ts')));
      const got = await read(target);
      for (let i = 0; i < want.length; i++) expect(got[i], `${format} row ${want[i].id}`).toStrictEqual(want[i]);
      expect(got).toHaveLength(want.length);
    }
  });

  it('--out never writes over a database: not the one exported, not another', async () => {
    const copy = path.join(dir, 'victim.modelvault');
    fs.copyFileSync(modelled, copy);
    const before = fs.readFileSync(copy);
    for (const target of [copy, modelled]) {
      const line = expectUserError(await cli('export', copy, 'orders', '--out', target), /refusing to write over .*: it is a ModelVault database/);
      expect(line).toContain(target);
    }
    expect(fs.readFileSync(copy).equals(before)).toBe(true);
    expect(await readRows(copy)).toEqual(sourceRows);
  });

  it('--where, --order, --limit and --select shape the export; --out and stdout get the same bytes', async () => {
    const shape = ['--where', "category = 'garden' AND qty >= 4", '--order', 'amount:desc', '--limit', '5', '--select', 'id,amount,qty,note'];
    const outNd = path.join(dir, 'shaped.ndjson');
    const [csv, nd, ndFile] = await Promise.all([
      cli('export', modelled, 'orders', ...shape, '--format', 'csv'),
      cli('export', modelled, 'orders', ...shape),
      cli('export', modelled, 'orders', ...shape, '--format', 'ndjson', '--out', outNd),
    ]);
    const want = rows.filter((x) => x.category === 'garden' && x.qty >= 4).sort((a, b) => b.amount - a.amount).slice(0, 5);
    expect(want).toHaveLength(5);
    expect(expectOk(csv).stdout).toBe(['id,amount,qty,note', ...want.map((x) => [x.id, x.amount, x.qty, x.note].map(csvCell).join(','))].join('\n') + '\n');
    expect(expectOk(nd).stdout).toBe(want.map((x) => JSON.stringify({ id: x.id, amount: x.amount, qty: x.qty, note: x.note })).join('\n') + '\n');
    expectOk(ndFile);
    expect(ndFile.stdout).toBe('');
    expect(fs.readFileSync(outNd, 'utf8')).toBe(nd.stdout);
  });
});
