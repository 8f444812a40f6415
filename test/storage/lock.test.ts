// One writer per file: a second writable open gets LOCKED (at once, or after waiting
// lockTimeoutMs), readers open regardless, and a lock left by a dead process is taken over.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Database } from '../../src/database.js';
import { StorageEngine } from '../../storage/engine.js';
import { deadPid, describeContent, expectCode, expectVerifyOk, openEngine, tempFile, u32Key } from '../helpers/storage.js';

const lockOf = (file: string) => `${file}.lock`;
const readLock = (file: string) => JSON.parse(fs.readFileSync(lockOf(file), 'utf8')) as { pid: number; host: string };

async function putRow(engine: StorageEngine, n: number): Promise<void> {
  await engine.write(async (tx) => { await (await tx.tree('rows', 1)).put(u32Key(n), [Buffer.from(`row ${n}`)]); });
}

/** The pid of a process that has exited. */
/** Resolves once `promise` has settled or `ms` have passed; says which. */
const settledWithin = (promise: Promise<unknown>, ms: number) =>
  Promise.race([promise.then(() => true, () => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

describe('the write lock', () => {
  it('a second writable open of the same file gets LOCKED at once, naming the holder', async () => {
    const first = await openEngine('file');
    const file = first.path!;
    await putRow(first, 1);
    expect(readLock(file)).toEqual({ pid: process.pid, host: os.hostname() });

    const err = await expectCode(StorageEngine.open(file), 'LOCKED');
    expect(err.details).toMatchObject({ path: file, pid: process.pid });
    await expectCode(Database.open(file), 'LOCKED');
    await expectCode(StorageEngine.open(file, { lockTimeoutMs: 30 }), 'LOCKED'); // waited, still held
    // The failed opens changed nothing: the holder keeps its lock and goes on writing.
    expect(readLock(file).pid).toBe(process.pid);
    await putRow(first, 2);
    await first.close();
    expect(fs.existsSync(lockOf(file))).toBe(false);

    const again = await StorageEngine.open(file);
    try {
      expect((await describeContent(again)).rows.entries).toHaveLength(2);
    } finally {
      await again.close();
    }
  });

  it('with lockTimeoutMs an open waits and succeeds once the holder closes', async () => {
    const first = await openEngine('file');
    const file = first.path!;
    await putRow(first, 1);
    const waiting = StorageEngine.open(file, { lockTimeoutMs: 60_000 });
    expect(await settledWithin(waiting, 200)).toBe(false); // still waiting while the lock is held
    await putRow(first, 2);
    await first.close();
    const second = await waiting;
    try {
      expect(readLock(file).pid).toBe(process.pid);
      expect((await describeContent(second)).rows.entries).toHaveLength(2);
      await putRow(second, 3);
      await expectVerifyOk(second);
    } finally {
      await second.close();
    }
    expect(fs.existsSync(lockOf(file))).toBe(false);
  });

  it('read-only opens are allowed while a writer holds the lock, and do not release it', async () => {
    const writer = await openEngine('file');
    const file = writer.path!;
    await putRow(writer, 1);
    await putRow(writer, 2);
    const reader = await StorageEngine.open(file, { readOnly: true });
    try {
      expect((await describeContent(reader)).rows.entries).toHaveLength(2);
      await expectVerifyOk(reader);
    } finally {
      await reader.close();
    }
    const db = await Database.open(file, { readOnly: true });
    await db.close();
    expect(readLock(file).pid).toBe(process.pid);
    await expectCode(StorageEngine.open(file), 'LOCKED');
    await putRow(writer, 3);
  });

  it('a lock left by a dead process is recovered', async () => {
    const file = tempFile();
    const created = await StorageEngine.open(file);
    await putRow(created, 1);
    await created.close();
    fs.writeFileSync(lockOf(file), JSON.stringify({ pid: await deadPid(), host: os.hostname() }));
    // Records of processes killed while creating or taking over the lock.
    const dead = await deadPid();
    for (const f of [`${lockOf(file)}.${dead}.tmp`, `${lockOf(file)}.${dead}.stale`]) fs.writeFileSync(f, '{}');

    const engine = await StorageEngine.open(file);
    try {
      expect(readLock(file)).toEqual({ pid: process.pid, host: os.hostname() });
      expect((await describeContent(engine)).rows.entries).toHaveLength(1);
      await putRow(engine, 2);
      await expectCode(StorageEngine.open(file), 'LOCKED'); // and it is a working lock
    } finally {
      await engine.close();
    }
    // Neither the lock nor any dead owner's record (set aside in a takeover, or half made) is left behind.
    expect(fs.readdirSync(path.dirname(file))).toEqual([path.basename(file)]);
  });

  it('a lock held by a live process, or by a process on another host, is respected', async () => {
    const file = tempFile();
    await (await StorageEngine.open(file)).close();
    fs.writeFileSync(lockOf(file), JSON.stringify({ pid: process.ppid, host: os.hostname() }));
    expect((await expectCode(StorageEngine.open(file), 'LOCKED')).details.pid).toBe(process.ppid);
    fs.writeFileSync(lockOf(file), JSON.stringify({ pid: await deadPid(), host: `not-${os.hostname()}` }));
    await expectCode(StorageEngine.open(file), 'LOCKED'); // its pid cannot be checked from here
    expect(fs.existsSync(lockOf(file))).toBe(true); // neither was taken over
    await (await StorageEngine.open(file, { readOnly: true })).close();
  });
});
