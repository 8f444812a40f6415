// One writing process per file. Node has no flock(), so the lock is a sidecar file created
// with O_EXCL that holds the owner's pid; a lock whose pid is no longer alive was left by a
// killed process and is taken over. (proper-lockfile detects staleness only by mtime after
// seconds; a pid check recovers at once, which the crash tests rely on.) The same pid check
// clears away what killed processes left beside a file (removeLeftovers).
import fs from 'node:fs';
import os from 'node:os';
import nodePath from 'node:path';
import { ModelVaultError, ioError } from './errors.js';

export class FileLock {
  private constructor(readonly path: string, private released = false) {}

  static async acquire(dbPath: string, timeoutMs = 0): Promise<FileLock> {
    const path = `${dbPath}.lock`;
    const deadline = Date.now() + Math.max(0, timeoutMs);
    for (;;) {
      if (tryCreate(path)) {
        // Records of processes killed while creating or taking over the lock.
        removeLeftovers(path, '.', ['.tmp', '.stale'], (pid) => pid !== process.pid && !isProcessAlive(pid));
        return new FileLock(path);
      }
      const holder = readHolder(path);
      if (holder && !isAlive(holder)) {
        // Take over a dead owner's lock atomically: rename it aside, so of two processes
        // recovering at once only one removes it.
        const aside = `${path}.${process.pid}.stale`;
        try {
          fs.renameSync(path, aside);
          fs.rmSync(aside, { force: true });
        } catch { /* someone else took it over first */ }
        continue;
      }
      if (Date.now() >= deadline) {
        const by = holder?.pid === process.pid ? 'already in this process (close that Database first, or share it)'
          : `by another process${holder ? ` (pid ${holder.pid})` : ''}`;
        throw new ModelVaultError('LOCKED', `${dbPath} is open for writing ${by}`, { path: dbPath, pid: holder?.pid });
      }
      await new Promise((r) => setTimeout(r, Math.min(25, Math.max(1, deadline - Date.now()))));
    }
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    const holder = readHolder(this.path);
    if (holder?.pid === process.pid) fs.rmSync(this.path, { force: true });
  }
}

interface Holder { pid: number; host: string }

/**
 * Removes the files beside `target` named `<target><marker><pid><suffix>` (one of `suffixes`)
 * whose pid `removable` accepts: what killed processes left behind. Best effort: a file that
 * cannot be listed or removed stays.
 */
export function removeLeftovers(target: string, marker: string, suffixes: readonly string[], removable: (pid: number) => boolean): void {
  const dir = nodePath.dirname(target), prefix = nodePath.basename(target) + marker;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const rest = name.slice(prefix.length), digits = /^\d{1,10}/.exec(rest)?.[0];
    if (digits === undefined || !suffixes.includes(rest.slice(digits.length)) || !removable(Number(digits))) continue;
    try { fs.rmSync(nodePath.join(dir, name), { force: true }); } catch { /* stays */ }
  }
}

/** Writes the holder record aside, then link()s it into place: the lock appears atomically, already filled in. */
function tryCreate(path: string): boolean {
  const temp = `${path}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(temp, JSON.stringify({ pid: process.pid, host: os.hostname() }));
    fs.linkSync(temp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw ioError(`creating lock ${path}`, err);
  } finally {
    fs.rmSync(temp, { force: true });
  }
}

/** The pid holding `dbPath`'s write lock, if a live process holds it. */
export function liveLockHolder(dbPath: string): number | null {
  const lockPath = `${dbPath}.lock`;
  if (!fs.existsSync(lockPath)) return null;
  const holder = readHolder(lockPath);
  return holder && isAlive(holder) ? holder.pid : null;
}

function readHolder(path: string): Holder | null {
  try {
    const text = fs.readFileSync(path, 'utf8');
    const parsed = JSON.parse(text) as Partial<Holder>;
    if (typeof parsed.pid === 'number' && Number.isInteger(parsed.pid)) return { pid: parsed.pid, host: String(parsed.host ?? '') };
    return { pid: -1, host: '' };
  } catch {
    return { pid: -1, host: '' };
  }
}

function isAlive(holder: Holder): boolean {
  if (holder.pid <= 0) return false;
  if (holder.host && holder.host !== os.hostname()) return true; // cannot tell across hosts: assume alive
  return isProcessAlive(holder.pid);
}

/** Whether process `pid` of this host is running (EPERM: it is, under another user). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
