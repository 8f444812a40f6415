// Whole-image operations: snapshotBytes(), a file's own bytes, backup() and compact() all
// give images that open (as files or in memory) with the same content; read-only opens
// never write; what is not a database, or is of another format version, is refused.
import fs from 'node:fs';
import path from 'node:path';
import { toBufferKey } from 'ordered-binary';
import { describe, expect, it } from 'vitest';
import { Database } from '../../src/database.js';
import { checksum } from '../../storage/checksum.js';
import { StorageEngine } from '../../storage/engine.js';
import { FORMAT_VERSION, HEADER_BYTES } from '../../storage/superblock.js';
import {
  MODES, deadPid, describeContent, expectCode, expectVerifyOk, openEngine, seededBytes, tempDir, tempFile, u32Key,
} from '../helpers/storage.js';

const PAGE_SIZE = 16384;
const aKey = (i: number) => toBufferKey(['a', i]);

/** Two trees, metadata, an overflow value, and a second commit that leaves free pages. */
async function fill(engine: StorageEngine): Promise<void> {
  await engine.write(async (tx) => {
    const a = await tx.tree('a', 2);
    for (let i = 0; i < 600; i++) await a.put(aKey(i), [seededBytes(i, 150), i % 5 === 0 ? null : u32Key(i)]);
    await a.put(toBufferKey('big'), [seededBytes(7, 100_000), Buffer.alloc(0)]);
    const b = await tx.tree('b', 1);
    for (let i = 0; i < 100; i++) await b.put(u32Key(i), [Buffer.alloc(0)]);
    await tx.setMeta('a', Buffer.from('meta of a'));
    await tx.setMeta('only-meta', Buffer.from('no tree here'));
  });
  await engine.write(async (tx) => {
    const a = await tx.tree('a', 2);
    for (let i = 0; i < 600; i += 3) await a.delete(aKey(i));
    for (let i = 1; i < 100; i += 3) await a.put(aKey(i), [seededBytes(i + 1000, 300), null]);
  });
}

/** A closed database file made by `fill`, and its content. */
async function filledFile(): Promise<{ file: string; content: Awaited<ReturnType<typeof describeContent>> }> {
  const file = tempFile();
  const engine = await StorageEngine.open(file, { pageSize: PAGE_SIZE });
  await fill(engine);
  const content = await describeContent(engine);
  await engine.close();
  return { file, content };
}

/** Opens `file` with Database.open and StorageEngine.open: it holds `content`, verifies, and takes a commit. */
async function expectFileHolds(file: string, content: unknown): Promise<void> {
  const db = await Database.open(file);
  try {
    expect(await describeContent(db.engine)).toEqual(content);
    expect((await db.verify()).ok).toBe(true);
  } finally {
    await db.close();
  }
  const engine = await StorageEngine.open(file);
  try {
    expect(await describeContent(engine)).toEqual(content);
    await expectVerifyOk(engine);
    // Writable too: its free list is usable.
    await engine.write(async (tx) => { await (await tx.tree('b', 1)).put(u32Key(1000), [null]); });
    await expectVerifyOk(engine);
  } finally {
    await engine.close();
  }
}

describe.each(MODES)('committed images (%s)', (mode) => {
  it('snapshotBytes() is a file that StorageEngine.open, Database.open and openSnapshotBytes read with the same content', async () => {
    const engine = await openEngine(mode, { pageSize: PAGE_SIZE, maxDirtyBytes: 4 * PAGE_SIZE });
    await fill(engine);
    const content = await describeContent(engine);
    const imageBytes = engine.stats().pageCount * PAGE_SIZE;

    // Taken while a writer has modified (and written out) pages: only the committed state is in it.
    let started!: () => void, finish!: () => void;
    const writerStarted = new Promise<void>((r) => { started = r; });
    const gate = new Promise<void>((r) => { finish = r; });
    const writing = engine.write(async (tx) => {
      const a = await tx.tree('a', 2);
      for (let i = 0; i < 200; i++) await a.put(aKey(i), [seededBytes(i, 2000), null]);
      await a.put(toBufferKey('uncommitted'), [null, null]);
      await tx.maybeFlush();
      started();
      await gate;
    });
    await writerStarted;
    const image = await engine.snapshotBytes();
    finish();
    await writing;
    expect((await describeContent(engine)).a).not.toEqual(content.a);
    expect(image.byteLength).toBe(imageBytes);

    const file = tempFile('image.modelvault');
    fs.writeFileSync(file, image);
    await expectFileHolds(file, content);

    const db = await Database.openSnapshotBytes(image);
    try {
      expect(await describeContent(db.engine)).toEqual(content);
      expect((await db.verify()).ok).toBe(true);
    } finally {
      await db.close();
    }
    const memory = await StorageEngine.openMemory({}, image);
    try {
      expect(await describeContent(memory)).toEqual(content);
      expect(memory.stats().pageSize).toBe(PAGE_SIZE); // the image's own page size, not the default
    } finally {
      await memory.close();
    }
  });

  it('backup() writes a consistent copy that opens with the same content', async () => {
    const db = mode === 'memory'
      ? await Database.openInMemory({ pageSize: PAGE_SIZE })
      : await Database.open(tempFile(), { pageSize: PAGE_SIZE });
    try {
      await fill(db.engine);
      const content = await describeContent(db.engine);
      const dir = tempDir();
      const dest = path.join(dir, 'backup.modelvault');
      const { bytes } = await db.backup(dest);
      expect(bytes).toBe(db.stats().pageCount * PAGE_SIZE);
      expect(fs.statSync(dest).size).toBe(bytes);
      expect(fs.readdirSync(dir)).toEqual(['backup.modelvault']); // no temporary file left behind
      // The original goes on; the copy does not follow it.
      await db.engine.write(async (tx) => { await (await tx.tree('b', 1)).delete(u32Key(5)); });
      await expectFileHolds(dest, content);
      await expectCode(db.backup(''), 'VALIDATION');
    } finally {
      await db.close();
    }
  });

  it('backup() replaces an earlier backup, but never the database itself, an open database or a foreign file', async () => {
    const file = tempFile();
    const db = mode === 'memory' ? await Database.openInMemory({ pageSize: PAGE_SIZE }) : await Database.open(file, { pageSize: PAGE_SIZE });
    const dir = tempDir();
    const other = path.join(dir, 'open-elsewhere.modelvault');
    const elsewhere = await Database.open(other, { pageSize: PAGE_SIZE });
    try {
      await fill(db.engine);
      const content = await describeContent(db.engine);
      const dest = path.join(dir, 'nightly.modelvault');
      await db.backup(dest);
      await db.engine.write(async (tx) => { await (await tx.tree('b', 1)).delete(u32Key(5)); });
      await db.backup(dest); // the earlier backup is replaced by the new state
      await expectFileHolds(dest, await describeContent(db.engine));
      expect(content).not.toEqual(await describeContent(db.engine));

      const foreign = path.join(dir, 'notes.txt');
      fs.writeFileSync(foreign, 'precious');
      expect((await expectCode(db.backup(foreign), 'VALIDATION')).message).toMatch(/not a ModelVault file/);
      expect(fs.readFileSync(foreign, 'utf8')).toBe('precious');
      await expectCode(db.backup(dir), 'VALIDATION');
      const otherBytes = fs.readFileSync(other);
      await expectCode(db.backup(other), 'LOCKED'); // another Database (here, this process's) writes it
      expect(fs.readFileSync(other).equals(otherBytes)).toBe(true);
      if (mode === 'file') {
        const before = await describeContent(db.engine);
        expect((await expectCode(db.backup(file), 'VALIDATION')).message).toMatch(/this database itself/);
        const link = path.join(dir, 'link.modelvault');
        fs.symlinkSync(file, link);
        await expectCode(db.backup(link), 'VALIDATION');
        // The file is still the one the open handle writes: a commit after these lands in it.
        await db.engine.write(async (tx) => { await (await tx.tree('b', 1)).delete(u32Key(6)); });
        const after = await describeContent(db.engine);
        expect(after).not.toEqual(before);
        await db.close();
        await expectFileHolds(file, after);
      }
      expect(fs.readdirSync(dir).filter((f) => f.includes('.partial-'))).toEqual([]);
    } finally {
      await db.close();
      await elsewhere.close();
    }
  });

  it('compact() shrinks the image after most rows are deleted and keeps the content', async () => {
    const engine = await openEngine(mode, { pageSize: PAGE_SIZE });
    await fill(engine);
    await engine.write(async (tx) => {
      const c = await tx.tree('c', 1);
      for (let i = 0; i < 3000; i++) await c.put(u32Key(i), [seededBytes(i, i % 100 === 0 ? 30_000 : 1000)]);
    });
    await engine.write(async (tx) => {
      const c = await tx.tree('c', 1);
      for (let i = 0; i < 3000; i++) if (i % 10 !== 0) await c.delete(u32Key(i));
    });
    const content = await describeContent(engine);
    const bytesBefore = engine.stats().pageCount * PAGE_SIZE;

    {
      using _pinned = engine.snapshot();
      await expectCode(engine.compact(), 'LOCKED'); // a reader still uses the current pages
    }
    const result = await engine.compact();
    expect(result.bytesBefore).toBe(bytesBefore);
    expect(result.bytesAfter).toBe(engine.stats().pageCount * PAGE_SIZE);
    expect(result.bytesAfter).toBeLessThan(bytesBefore / 3);
    if (engine.path) {
      expect(fs.statSync(engine.path).size).toBe(result.bytesAfter);
      expect(fs.readdirSync(path.dirname(engine.path)).sort()).toEqual([path.basename(engine.path), `${path.basename(engine.path)}.lock`]);
    }
    expect(await describeContent(engine)).toEqual(content);
    const report = await expectVerifyOk(engine);
    expect(report.freePages).toBe(0);

    // Still the same writable database; reopened, it holds the same.
    await engine.write(async (tx) => { await (await tx.tree('c', 1)).put(u32Key(1), [Buffer.from('after')]); });
    const after = await describeContent(engine);
    if (engine.path) {
      await engine.close();
      await expectFileHolds(engine.path, after);
    }
  });
});

describe('what killed compactions and backups leave behind', () => {
  it("a writable open removes a killed compaction's temporary file; a read-only open leaves it", async () => {
    const { file, content } = await filledFile();
    // What compact() was writing when it was killed, and names that only look alike.
    const leftovers = [`${file}.compact-${await deadPid()}`, `${file}.compact-${process.pid}`];
    const others = [`${file}.compact-notes`, `${file}.compact-12.txt`, `${file}x.compact-12`];
    for (const f of [...leftovers, ...others]) fs.writeFileSync(f, 'half a database');

    const ro = await StorageEngine.open(file, { readOnly: true });
    await ro.close();
    for (const f of leftovers) expect(fs.existsSync(f), f).toBe(true);

    const rw = await StorageEngine.open(file);
    try {
      for (const f of leftovers) expect(fs.existsSync(f), f).toBe(false);
      for (const f of others) expect(fs.existsSync(f), f).toBe(true);
      expect(await describeContent(rw)).toEqual(content);
    } finally {
      await rw.close();
    }
  });

  it("a backup removes a killed backup's temporary file of the same destination, not a running process's", async () => {
    const engine = await openEngine('file', { pageSize: PAGE_SIZE });
    await fill(engine);
    const dir = tempDir();
    const dest = path.join(dir, 'copy.modelvault');
    const dead = `${dest}.partial-${await deadPid()}`, running = `${dest}.partial-${process.ppid}`, otherDest = path.join(dir, `other.modelvault.partial-${await deadPid()}`);
    for (const f of [dead, running, otherDest]) fs.writeFileSync(f, 'half a copy');
    await engine.backup(dest);
    expect(fs.readdirSync(dir).sort()).toEqual([path.basename(dest), path.basename(otherDest), path.basename(running)].sort());
    await expectFileHolds(dest, await describeContent(engine));
  });
});

describe('images from files and read-only opens', () => {
  it("a file's bytes open in memory (openMemory, Database.openSnapshotBytes); changes there do not touch the file", async () => {
    const { file, content } = await filledFile();
    const bytes = fs.readFileSync(file);

    const memory = await StorageEngine.openMemory({}, bytes);
    try {
      expect(memory.recoveryInfo).toBeNull();
      expect(await describeContent(memory)).toEqual(content);
      await expectVerifyOk(memory);
      await memory.write(async (tx) => { await tx.dropTree('a'); });
      expect(Object.keys(await describeContent(memory))).toEqual(['b', 'only-meta']);
    } finally {
      await memory.close();
    }
    expect(fs.readFileSync(file).equals(bytes)).toBe(true);

    const db = await Database.openSnapshotBytes(new Uint8Array(bytes));
    try {
      expect(await describeContent(db.engine)).toEqual(content);
      expect((await db.verify()).ok).toBe(true);
    } finally {
      await db.close();
    }
  });

  it('a read-only open reads everything, never writes its file, and refuses writes with READ_ONLY', async () => {
    const { file, content } = await filledFile();
    const bytes = fs.readFileSync(file);

    const ro = await StorageEngine.open(file, { readOnly: true });
    try {
      expect(ro.readOnly).toBe(true);
      expect(fs.existsSync(`${file}.lock`)).toBe(false); // readers take no lock
      expect(await describeContent(ro)).toEqual(content);
      await expectVerifyOk(ro);
      await expectCode(ro.write(async () => undefined), 'READ_ONLY');
      await expectCode(ro.compact(), 'READ_ONLY');
      // Its spill runs go to a scratch file of the temp directory, not into the database file.
      const spill = ro.spill.createRun('ro');
      await spill.append(Buffer.from('x'));
      const run = await spill.finish();
      const back: string[] = [];
      for await (const r of run.records()) back.push(r.toString());
      expect(back).toEqual(['x']);
      expect(ro.stats().spill.pagesInUse).toBeGreaterThan(0);
      run.drop();
      expect(ro.stats().spill.pagesInUse).toBe(0);
      const copy = path.join(tempDir(), 'copy.modelvault');
      await ro.backup(copy); // reading the image is fine
      await expectFileHolds(copy, content);
    } finally {
      await ro.close();
    }
    const db = await Database.open(file, { readOnly: true });
    try {
      await expectCode(db.compact(), 'READ_ONLY');
      await expectCode(db.engine.write(async () => undefined), 'READ_ONLY');
    } finally {
      await db.close();
    }
    expect(fs.readFileSync(file).equals(bytes)).toBe(true);
    await expectCode(StorageEngine.open(path.join(tempDir(), 'missing.modelvault'), { readOnly: true }), 'IO');
  });
});

describe('what is not a database', () => {
  const garbage = {
    text: Buffer.from('hello, this is not a database'),
    random: seededBytes(42, 64 * 1024),
    zeros: Buffer.alloc(64 * 1024),
    header: Buffer.concat([Buffer.from('MODELVL'), Buffer.alloc(PAGE_SIZE)]), // one byte short of the magic
  };

  it('empty or garbage images give NOT_A_DATABASE', async () => {
    await expectCode(Database.openSnapshotBytes(new Uint8Array(0)), 'NOT_A_DATABASE');
    for (const bytes of Object.values(garbage)) {
      await expectCode(StorageEngine.openMemory({}, bytes), 'NOT_A_DATABASE');
      await expectCode(Database.openSnapshotBytes(bytes), 'NOT_A_DATABASE');
    }
  });

  it('empty or garbage files give NOT_A_DATABASE, are left as they were and keep no lock', async () => {
    const empty = tempFile('empty.modelvault');
    fs.writeFileSync(empty, '');
    await expectCode(StorageEngine.open(empty, { readOnly: true }), 'NOT_A_DATABASE');
    await expectCode(Database.open(empty, { readOnly: true }), 'NOT_A_DATABASE');
    for (const [name, bytes] of Object.entries(garbage)) {
      const file = tempFile(`${name}.bin`);
      fs.writeFileSync(file, bytes);
      await expectCode(StorageEngine.open(file), 'NOT_A_DATABASE');
      await expectCode(Database.open(file), 'NOT_A_DATABASE');
      await expectCode(StorageEngine.open(file, { readOnly: true }), 'NOT_A_DATABASE');
      expect(fs.readFileSync(file).equals(bytes)).toBe(true);
      expect(fs.existsSync(`${file}.lock`)).toBe(false);
    }
  });

  it('another format version gives UNSUPPORTED_VERSION (a bad header checksum, CORRUPT)', async () => {
    const engine = await openEngine('memory', { pageSize: PAGE_SIZE });
    await fill(engine);
    const image = Buffer.from(await engine.snapshotBytes());
    const view = new DataView(image.buffer, image.byteOffset, HEADER_BYTES);
    expect(view.getUint32(8, true)).toBe(FORMAT_VERSION); // the layout this test patches
    expect(view.getUint32(60, true)).toBe(checksum(image.subarray(0, 60)));

    const future = Buffer.from(image);
    const fv = new DataView(future.buffer, future.byteOffset, HEADER_BYTES);
    fv.setUint32(8, FORMAT_VERSION + 1, true);
    const unsealed = Buffer.from(future);
    fv.setUint32(60, checksum(future.subarray(0, 60)), true);

    const err = await expectCode(StorageEngine.openMemory({}, future), 'UNSUPPORTED_VERSION');
    expect(err.details.formatVersion).toBe(FORMAT_VERSION + 1);
    await expectCode(Database.openSnapshotBytes(future), 'UNSUPPORTED_VERSION');
    const file = tempFile();
    fs.writeFileSync(file, future);
    await expectCode(StorageEngine.open(file), 'UNSUPPORTED_VERSION');
    await expectCode(StorageEngine.open(file, { readOnly: true }), 'UNSUPPORTED_VERSION');
    await expectCode(Database.open(file), 'UNSUPPORTED_VERSION');
    expect(fs.readFileSync(file).equals(future)).toBe(true);
    expect(fs.existsSync(`${file}.lock`)).toBe(false);

    await expectCode(StorageEngine.openMemory({}, unsealed), 'CORRUPT');
  });
});
