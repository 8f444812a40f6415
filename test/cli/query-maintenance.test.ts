// `modelvault query`, `inspect`, `dump-catalog`, `verify`, `compact`, `backup` and the
// user errors, end to end through a child process, over a file built with the library.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database } from '../../src/index.js';
import { Orders } from './fixtures/orders-model.js';
import {
  PAGE_SIZE, asJson, cli, expectOk, expectUserError, flipBytes, generateOrders, makeTempDir, removeDir,
  type OrderRow,
} from './helpers.js';

const N = 12_000;
let dir: string;
let rows: OrderRow[];
let base: string; // N orders, never written after beforeAll

async function readRows(file: string): Promise<Record<string, unknown>[]> {
  const db = await Database.open(file, { readOnly: true, create: false });
  try {
    return await (await db.collection('orders')).query().orderBy('id').toArray();
  } finally {
    await db.close();
  }
}

beforeAll(async () => {
  dir = makeTempDir('query');
  rows = generateOrders(N, 11);
  base = path.join(dir, 'base.modelvault');
  const db = await Database.open(base);
  try {
    const orders = await db.register(Orders);
    await orders.insertMany(rows);
  } finally {
    await db.close();
  }
});

afterAll(() => removeDir(dir));

describe('query', () => {
  it('--where --order --limit --select --json equals the same query computed in plain JS', async () => {
    const r = expectOk(await cli('query', base, 'orders', '--where', 'amount > 900', '--order', 'amount:desc', '--limit', '10', '--select', 'id,amount', '--json'));
    expect(r.stderr).toBe('');
    const want = rows.filter((x) => x.amount > 900).sort((a, b) => b.amount - a.amount).slice(0, 10).map((x) => ({ id: x.id, amount: x.amount }));
    expect(want).toHaveLength(10);
    expect(JSON.parse(r.stdout)).toEqual(want);
  });

  it('--ndjson prints one JSON object per row, in the order asked for', async () => {
    const r = expectOk(await cli('query', base, 'orders', '--where', "category = 'toys' AND qty >= 2", '--order', 'ts:desc,id', '--ndjson'));
    const want = rows.filter((x) => x.category === 'toys' && x.qty >= 2).sort((a, b) => b.ts.getTime() - a.ts.getTime() || a.id - b.id);
    expect(want.length).toBeGreaterThan(10);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(want.length);
    expect(lines.map((l) => JSON.parse(l))).toEqual(asJson(want));
  });

  it('prints a table by default: a header line, a rule, the rows and a row count (--offset skips rows)', async () => {
    const r = expectOk(await cli('query', base, 'orders', '--where', 'id <= 4', '--order', 'id:desc', '--offset', '1'));
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(6);
    expect(lines[0].trim().split(/\s+/)).toEqual(['id', 'userId', 'category', 'amount', 'qty', 'ts']);
    expect(lines[1]).toMatch(/^-+( +-+){5}$/);
    for (const [i, x] of [rows[2], rows[1], rows[0]].entries()) {
      expect(lines[2 + i].trim().split(/\s+/)).toEqual([x.id, x.userId, x.category, x.amount, x.qty, x.ts.toISOString()].map(String));
    }
    expect(lines[5]).toBe('(3 rows)');
  });

  it('--sql runs a GROUP BY with COUNT(*) and ORDER BY', async () => {
    const r = expectOk(await cli('query', base, '--sql', 'SELECT category, COUNT(*) AS n FROM orders GROUP BY category ORDER BY n DESC', '--json'));
    const counts = new Map<string, number>();
    for (const x of rows) counts.set(x.category, (counts.get(x.category) ?? 0) + 1);
    const got = JSON.parse(r.stdout) as { category: string; n: number }[];
    expect(got).toHaveLength(counts.size);
    expect(new Map(got.map((g) => [g.category, g.n]))).toEqual(counts);
    for (let i = 1; i < got.length; i++) expect(got[i - 1].n).toBeGreaterThanOrEqual(got[i].n);
  });

  it('a bad --where (syntax, unknown field, wrong type) exits 1 with one line on stderr and no stack', async () => {
    const runs = await Promise.all([
      cli('query', base, 'orders', '--where', 'amount >> 900'),
      cli('query', base, 'orders', '--where', 'colour = 1', '--json'),
      cli('query', base, 'orders', '--where', "amount > 'lots'"),
    ]);
    for (const r of runs) {
      expect(r.code).toBe(1);
      expectUserError(r, /^modelvault: VALIDATION: /);
      expect(r.stdout).toBe('');
    }
    expect(runs[1].stderr).toMatch(/colour/);
    expect(runs[2].stderr).toMatch(/amount/);
  });
});

describe('inspect and dump-catalog', () => {
  it('inspect shows the format version, page size, both superblocks, collections, row counts and indexes', async () => {
    const [text, json] = await Promise.all([cli('inspect', base), cli('inspect', base, '--json')]);
    const info = JSON.parse(expectOk(json).stdout) as {
      header: { formatVersion: number; pageSize: number };
      superblocks: { slot: number; valid: boolean; superblock: { generation: number } | null }[];
      stats: { generation: number; pageCount: number };
      collections: { name: string; rowCount: number; indexes: { name: string }[] }[];
    };
    expect(info.header.pageSize).toBe(PAGE_SIZE);
    expect(info.header.formatVersion).toBeGreaterThanOrEqual(1);
    expect(info.superblocks.map((s) => s.slot)).toEqual([0, 1]);
    const generations = info.superblocks.map((s) => s.superblock!.generation);
    expect(new Set(generations).size).toBe(2);
    expect(Math.max(...generations)).toBe(info.stats.generation);
    expect(info.collections.map((c) => [c.name, c.rowCount, c.indexes.map((ix) => ix.name)])).toEqual([['orders', N, ['byUser', 'byCategoryTs']]]);

    const out = expectOk(text).stdout;
    expect(out).toMatch(new RegExp(`^format version +${info.header.formatVersion}$`, 'm'));
    expect(out).toMatch(/^page size +65536 bytes$/m);
    for (const [slot, g] of generations.entries()) expect(out).toMatch(new RegExp(`^superblock ${slot} +generation ${g}, \\d+ pages, valid$`, 'm'));
    expect(out).toMatch(/^collections +1$/m);
    expect(out).toMatch(new RegExp(`^  orders  schema v1, ${N} rows, key \\(id\\), 7 fields$`, 'm'));
    expect(out).toMatch(/^ {4}index byUser \(userId\)$/m);
    expect(out).toMatch(/^ {4}index byCategoryTs \(category, ts\)$/m);
  });

  it('dump-catalog prints the catalog as JSON: fields with their types, key and indexes', async () => {
    const r = expectOk(await cli('dump-catalog', base));
    const catalog = JSON.parse(r.stdout) as { name: string; primaryKey: string[]; fields: Record<string, { kind: string; optional: boolean }>; indexes: { name: string; fields: string[]; unique: boolean }[] }[];
    expect(catalog).toHaveLength(1);
    expect(catalog[0].name).toBe('orders');
    expect(catalog[0].primaryKey).toEqual(['id']);
    expect(Object.entries(catalog[0].fields).map(([k, f]) => [k, f.kind, f.optional])).toEqual([
      ['id', 'int', false], ['userId', 'int', false], ['category', 'string', false], ['amount', 'float', false],
      ['qty', 'int', false], ['ts', 'timestamp', false], ['note', 'string', true],
    ]);
    expect(catalog[0].indexes.map(({ name, fields, unique }) => ({ name, fields, unique }))).toEqual([
      { name: 'byUser', fields: ['userId'], unique: false },
      { name: 'byCategoryTs', fields: ['category', 'ts'], unique: false },
    ]);
  });
});

describe('verify', () => {
  it('exits 0 on a sound file and 1 with a byte offset on one with a damaged data page', async () => {
    const damaged = path.join(dir, 'damaged.modelvault');
    fs.copyFileSync(base, damaged);
    expect(fs.statSync(damaged).size).toBeGreaterThan(8 * PAGE_SIZE);
    flipBytes(damaged, 3 * PAGE_SIZE + 1000);
    const [sound, bad] = await Promise.all([cli('verify', base), cli('verify', damaged)]);
    expect(expectOk(sound).stdout).toMatch(/: OK\b/);
    expect(sound.stdout).not.toMatch(/at byte/);

    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('');
    expect(bad.stdout).toMatch(/DAMAGED/);
    const offsets = [...bad.stdout.matchAll(/at byte (-?\d+)/g)].map((m) => Number(m[1]));
    expect(offsets.length).toBeGreaterThan(0);
    // the report points into the page that was damaged
    expect(offsets.some((o) => o >= 3 * PAGE_SIZE && o < 4 * PAGE_SIZE), bad.stdout).toBe(true);
  });

  it('exits 1 naming byte 0 on a file that is not a ModelVault file', async () => {
    const junk = path.join(dir, 'junk-verify.bin');
    fs.writeFileSync(junk, Buffer.from(Array.from({ length: 3 * PAGE_SIZE }, (_, i) => (i * 131 + 7) & 0xff)));
    const r = await cli('verify', junk);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/DAMAGED/);
    expect(r.stdout).toMatch(/at byte 0\b/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('compact and backup', () => {
  it('compact shrinks the file after most rows were deleted, and keeps the rest', async () => {
    const file = path.join(dir, 'compact.modelvault');
    fs.copyFileSync(base, file);
    const db = await Database.open(file);
    try {
      const orders = await db.collection('orders');
      await db.transaction(async (tx) => {
        const o = tx.collection(orders.model);
        for (const x of rows) if (x.id % 10 !== 0) expect(await o.delete(x.id)).toBe(true);
      });
      expect(await orders.count()).toBe(N / 10);
    } finally {
      await db.close();
    }
    const before = fs.statSync(file).size;
    const r = expectOk(await cli('compact', file));
    expect(r.stdout).toMatch(/^compacted .* → /);
    const after = fs.statSync(file).size;
    expect(after).toBeLessThan(before / 2);
    expect(await readRows(file)).toEqual(rows.filter((x) => x.id % 10 === 0));
    const check = await Database.open(file, { readOnly: true, create: false });
    try {
      expect((await check.verify()).ok).toBe(true);
    } finally {
      await check.close();
    }
  });

  it('backup --to DEST writes a file that opens with the same rows, while a writer holds the source open', async () => {
    const source = path.join(dir, 'backup-source.modelvault');
    fs.copyFileSync(base, source);
    const dest = path.join(dir, 'backup-dest.modelvault');
    const writer = await Database.open(source);
    let want: Record<string, unknown>[];
    try {
      // a committed change the copy must contain
      const orders = await writer.collection('orders');
      expect(await orders.update(5, { qty: 99 })).toBe(true);
      want = await orders.query().orderBy('id').toArray();
      const r = expectOk(await cli('backup', source, '--to', dest));
      expect(r.stdout).toMatch(/^backed up .* to .*backup-dest\.modelvault/);
    } finally {
      await writer.close();
    }
    expect(fs.existsSync(dest)).toBe(true);
    const back = await readRows(dest);
    expect(back).toHaveLength(N);
    expect(back[4].qty).toBe(99);
    expect(back).toEqual(want);
  });
});

describe('user errors: a non-zero exit, one line on stderr, no stack trace', () => {
  it('a missing file, a file that is not a ModelVault file, an unknown collection, a missing data file, no model', async () => {
    const missing = path.join(dir, 'no-such.modelvault');
    const junk = path.join(dir, 'junk.bin');
    fs.writeFileSync(junk, Buffer.from(Array.from({ length: 2 * PAGE_SIZE }, (_, i) => (i * 197 + 13) & 0xff)));
    const data = path.join(dir, 'one.ndjson');
    fs.writeFileSync(data, '{"id":1}\n');
    const cases: [string[], RegExp][] = [
      [['inspect', missing], /^modelvault: IO: .*no-such\.modelvault/],
      [['query', missing, 'orders'], /^modelvault: IO: .*no-such\.modelvault/],
      [['inspect', junk], /^modelvault: NOT_A_DATABASE: /],
      [['query', junk, 'orders', '--json'], /^modelvault: NOT_A_DATABASE: /],
      [['query', base, 'customers'], /^modelvault: UNKNOWN_COLLECTION: .*customers/],
      [['export', base, 'customers'], /^modelvault: UNKNOWN_COLLECTION: .*customers/],
      [['import', base, 'orders', path.join(dir, 'no-such.ndjson')], /^modelvault: IO: .*no-such\.ndjson/],
      [['import', path.join(dir, 'fresh.modelvault'), 'events', data], /^modelvault: VALIDATION: .*--model.*--infer/],
    ];
    const before = fs.readFileSync(junk);
    const runs = await Promise.all(cases.map(([args]) => cli(...args)));
    for (const [i, r] of runs.entries()) {
      const [args, pattern] = cases[i];
      expect(r.code, args.join(' ')).toBe(1);
      expectUserError(r, pattern);
      expect(r.stdout, args.join(' ')).toBe('');
    }
    expect(fs.existsSync(missing)).toBe(false);
    expect(fs.readFileSync(junk).equals(before)).toBe(true);
  });

  it('a file open for writing by another process: import gives LOCKED and changes nothing', async () => {
    const file = path.join(dir, 'locked.modelvault');
    fs.copyFileSync(base, file);
    const data = path.join(dir, 'more.ndjson');
    fs.writeFileSync(data, `${JSON.stringify({ id: N + 1, userId: 1, category: 'books', amount: 1.5, qty: 1, ts: '2025-01-01T00:00:00.000Z' })}\n`);
    const holder = await Database.open(file);
    try {
      const r = await cli('import', file, 'orders', data);
      expect(r.code).toBe(1);
      expectUserError(r, /^modelvault: LOCKED: /);
      expect(r.stdout).toBe('');
      expect(await (await holder.collection('orders')).count()).toBe(N);
    } finally {
      await holder.close();
    }
    const db = await Database.open(file, { readOnly: true, create: false });
    try {
      expect(await (await db.collection('orders')).get(N + 1)).toBeUndefined();
    } finally {
      await db.close();
    }
  });
});
