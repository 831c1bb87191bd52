// Locks on a remote, as restic keeps them: a push holds a shared lock, gc and delete an
// exclusive one, so gc never deletes a chunk a push in flight found present and did not upload.
// A lock is an object `locks/<kind>-<random>`: each side writes its own, then lists the others
// (S3 lists what was written before: one of two racing sides sees the other, or both do and
// both give up). A holder rewrites its lock while it works; a lock not rewritten for
// `lockStaleMs` belongs to a process that died and is ignored. Ages are read on the server's
// clock (the last-modified time of the lock just written), never compared with ours.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { SnapshotError } from '../core/errors';
import type { Remote } from './remote';

export type LockKind = 'push' | 'exclusive';

export class RemoteLock {
  private refreshedAt: number;
  private readonly timer: NodeJS.Timeout;
  private refreshError: unknown;
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly remote: Remote,
    private readonly key: string,
    private readonly body: Buffer,
    private readonly staleMs: number,
  ) {
    this.refreshedAt = performance.now();
    this.timer = setInterval(() => (this.refreshing ??= this.refresh().finally(() => (this.refreshing = undefined))), staleMs / 6);
    this.timer.unref();
  }

  private async refresh(): Promise<void> {
    const started = performance.now();
    try {
      await this.remote.put(this.key, this.body);
      this.refreshedAt = started;
    } catch (err) {
      this.refreshError = err;  // reported by assertHeld when it matters
    }
  }

  /**
   * Before a step that relies on the lock (a manifest naming chunks found present): a lock not
   * rewritten for half the stale time may already look dead to a gc elsewhere.
   */
  assertHeld(what: string): void {
    if (performance.now() - this.refreshedAt <= this.staleMs / 2) return;
    throw new SnapshotError('REMOTE_LOCKED', `${this.remote.url}: ${what}: this process's lock was not renewed for ${Math.round((performance.now() - this.refreshedAt) / 1000)} s`, {
      hint: 'The process stalled or lost the server; a gc elsewhere may have taken chunks it relies on. Run it again.',
      ...(this.refreshError ? { cause: this.refreshError } : {}),
    });
  }

  /** Never throws: what the lock guarded is done; a lock left behind goes stale. */
  async release(): Promise<void> {
    clearInterval(this.timer);
    await this.refreshing;  // or it would write the lock again after the delete
    try {
      await this.remote.deleteKeys([this.key], 'remove lock');
    } catch (err) {
      process.emitWarning(`uffd-snapshot: ${this.key} was not removed (${(err as Error).message}); it is ignored once stale`);
    }
  }
}

/** Runs `fn` holding a lock of `kind`; REMOTE_LOCKED (and nothing done) when a conflicting one is held. */
export async function withLock<T>(remote: Remote, kind: LockKind, what: string, staleMs: number, fn: (lock: RemoteLock) => Promise<T>): Promise<T> {
  const name = `${kind}-${randomBytes(12).toString('hex')}`;
  const body = remote.sealer.sealNote(Buffer.from(JSON.stringify({ kind, host: hostname(), pid: process.pid, what })));
  const key = `${remote.prefix}locks/${name}`;
  await remote.put(key, body);
  const lock = new RemoteLock(remote, key, body, staleMs);
  try {
    const stale = await checkOthers(remote, name, kind, what, staleMs);
    // An exclusive holder is the only one working: locks left by dead processes can go.
    if (kind === 'exclusive' && stale.length > 0) await remote.deleteKeys(stale.map((n) => `${remote.prefix}locks/${n}`), 'remove stale locks');
    return await fn(lock);
  } finally {
    await lock.release();
  }
}

async function checkOthers(remote: Remote, mine: string, kind: LockKind, what: string, staleMs: number): Promise<string[]> {
  const locks = await remote.listKeys('locks/');
  const now = locks.find((l) => l.name === mine)?.modified;
  if (now === undefined) throw new SnapshotError('REMOTE_ERROR', `${remote.url}: ${what}: the lock just written is not listed`);
  const stale: string[] = [];
  for (const l of locks) {
    if (l.name === mine) continue;
    if (now - l.modified > staleMs) {
      stale.push(l.name);
      continue;
    }
    if (kind === 'push' && l.name.startsWith('push-')) continue;  // pushes share
    const holder = await describe(remote, l.name);
    throw new SnapshotError('REMOTE_LOCKED', `${remote.url}: cannot ${what}: ${holder} is running`, {
      hint:
        kind === 'push'
          ? 'A gc or delete holds the remote; push again when it has finished.'
          : `Run it again when that has finished. A lock left by a process that died is ignored after ${Math.round(staleMs / 60000)} min.`,
    });
  }
  return stale;
}

async function describe(remote: Remote, name: string): Promise<string> {
  try {
    const body = await remote.getObject(`${remote.prefix}locks/${name}`);
    const l = body ? (JSON.parse(remote.sealer.openNote(body, `lock ${name}`).toString('utf8')) as { host?: string; pid?: number; what?: string }) : {};
    return `a ${l.what ?? name.split('-')[0]} (process ${l.pid ?? '?'} on ${l.host ?? '?'}, lock locks/${name})`;
  } catch {
    return `another process (lock locks/${name})`;
  }
}
