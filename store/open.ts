// Opening a store file: checks before SQLite touches it, the error mapping for better-sqlite3,
// the one-writer lock, and the clean-up of what a crash left half-written.
import type Database from 'better-sqlite3';
import * as fs from 'node:fs';
import { SnapshotError } from '../core/errors';
import { STORE_PAGE_SIZE } from './schema';

const openWriters = new Set<string>();

// ---- what a store path may name, checked before SQLite opens it: SQLite would block forever
// on a FIFO, throw raw errors on a directory or /proc file, and leave -journal/-wal files next
// to anything it is pointed at ----

const SQLITE_HEADER = 'SQLite format 3\0';

// statfs(2) magic numbers of file systems whose files are not storage.
const PSEUDO_FS: Record<number, string> = {
  0x9fa0: 'procfs',
  0x62656572: 'sysfs',
  0x64626720: 'debugfs',
  0x74726163: 'tracefs',
  0x63677270: 'cgroup2',
  0x27e0eb: 'cgroup',
  0x73636673: 'securityfs',
  0xcafe4a11: 'bpffs',
  0x62656570: 'configfs',
  0x1cd1: 'devpts',
  0x6e736673: 'nsfs',
  0x50495045: 'pipefs',
};

function kind(st: fs.Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

function notAStore(file: string, why: string): SnapshotError {
  return new SnapshotError('NOT_A_STORE', `${file} is ${why}, not a uffd-snapshot store`, {
    hint: 'Pass the path of a store file created by Store.open(), or a new path to create one.',
  });
}

function ioError(file: string, err: unknown, doing: string): SnapshotError {
  const e = err as NodeJS.ErrnoException;
  const hint =
    e.code === 'EACCES' || e.code === 'EPERM' ? 'Check the permissions of the file and its directory.'
    : e.code === 'ENOTDIR' ? 'A component of the path is not a directory.'
    : e.code === 'EIO' ? 'The disk (or the file system) failed: check it.'
    : undefined;
  return new SnapshotError('IO', `cannot ${doing} ${file}: ${e.message}`, { hint, cause: err });
}

/**
 * Checks that `file` is a regular file that may be a store, or (when `create`) that it does not
 * exist yet, in which case it is created with mode 0600. Returns true when it was created.
 * Rejects directories, FIFOs, devices, sockets, files of pseudo file systems (/proc, /sys),
 * non-empty files without the SQLite header, and, unless `create`, empty files.
 */
export function checkStoreFile(file: string, opts: { readonly: boolean; create: boolean }): boolean {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code !== 'ENOENT') throw ioError(file, err, 'open');
    if (opts.readonly || !opts.create) {
      throw new SnapshotError('NOT_FOUND', `no store at ${file}`, { hint: 'Check the path.' });
    }
    try {
      fs.closeSync(fs.openSync(file, 'wx', 0o600));  // SQLite gives -wal and -shm the same mode
      return true;
    } catch (err2) {
      const e2 = err2 as NodeJS.ErrnoException;
      if (e2.code !== 'EEXIST') {
        throw new SnapshotError('IO', `cannot create ${file}: ${e2.message}`, { hint: 'Check that the directory exists and is writable.', cause: err2 });
      }
      return checkStoreFile(file, { ...opts, create: false });  // raced with another creator
    }
  }
  if (!st.isFile()) throw notAStore(file, kind(st));
  let fsType = 0;
  try {
    fsType = Number(fs.statfsSync(file).type);
  } catch {
    // statfs is only a guard against pseudo files: the header read below still runs
  }
  if (PSEUDO_FS[fsType]) throw notAStore(file, `a ${PSEUDO_FS[fsType]} file`);
  if (st.size === 0) {
    if (opts.create && !opts.readonly) return false;  // a new empty file becomes a store
    throw notAStore(file, 'an empty file');
  }
  if (interruptedCreation(file, st.size)) {
    if (opts.create && !opts.readonly) {
      // Nothing was stored (no byte of it is set): creating the store again, as its creator
      // would have, loses nothing.
      try {
        fs.truncateSync(file, 0);
      } catch (err) {
        throw ioError(file, err, 'truncate');
      }
      return false;
    }
    throw notAStore(file, 'a store whose creation was cut short (its first page never reached the disk, nothing was stored)');
  }
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch (err) {
    throw ioError(file, err, 'open');
  }
  try {
    const again = fs.fstatSync(fd);
    if (!again.isFile()) throw notAStore(file, kind(again));  // replaced since the stat
    const b = Buffer.alloc(16);
    let n: number;
    try {
      n = fs.readSync(fd, b, 0, 16, 0);
    } catch (err) {
      throw ioError(file, err, 'read');
    }
    if (n < 16 || b.toString('latin1') !== SQLITE_HEADER) throw notAStore(file, 'a file without the SQLite header');
  } finally {
    fs.closeSync(fd);
  }
  return false;
}


/**
 * A power loss while SQLite first wrote page 1 of a new store, before its first fsync, can leave
 * that page torn without its first sector: a file of at most one page, every byte zero, and no
 * WAL yet (the WAL only appears after that fsync). Such a file holds no information.
 */
function interruptedCreation(file: string, size: number): boolean {
  if (size > STORE_PAGE_SIZE) return false;
  try {
    if (fs.statSync(`${file}-wal`).size > 0) return false;
  } catch {
    // no WAL
  }
  try {
    const bytes = fs.readFileSync(file);
    return bytes.length === size && bytes.every((b) => b === 0);
  } catch {
    return false;
  }
}

/** True when the file starts with the SQLite header (a damaged database rather than a foreign file). */
function hasSqliteHeader(file: string): boolean {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const b = Buffer.alloc(16);
      return fs.readSync(fd, b, 0, 16, 0) === 16 && b.toString('latin1') === 'SQLite format 3\0';
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

/**
 * Refuses a database file shorter than its own header says, before SQLite (or we) write to it.
 * Only when no WAL is pending: a crash mid-checkpoint may leave the file short, and the WAL
 * replay fixes that.
 */
export function checkTruncation(file: string): void {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return;  // missing or unreadable: the open reports it
  }
  try {
    const h = Buffer.alloc(100);
    let n: number;
    try {
      n = fs.readSync(fd, h, 0, 100, 0);
    } catch (err) {
      throw new SnapshotError('IO', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
    }
    if (n < 16 || h.toString('latin1', 0, 16) !== 'SQLite format 3\0') return;
    const size = fs.fstatSync(fd).size;
    if (n < 100) {
      throw new SnapshotError('STORE_CORRUPT', `${file} is truncated: ${size} bytes, shorter than a SQLite header`, { hint: 'Restore the file from a backup.' });
    }
    let walBytes = 0;
    try {
      walBytes = fs.statSync(`${file}-wal`).size;
    } catch {
      // no WAL
    }
    const raw = h.readUInt16BE(16);
    const pageSize = raw === 1 ? 65536 : raw;
    const pages = h.readUInt32BE(28);
    const valid = h.readUInt32BE(24) === h.readUInt32BE(92) && pages > 0;
    // One page is the window in which a new store is being created (SQLite's first write of page
    // 1 may be torn by a power loss): nothing is stored yet, and SQLite reads the missing tail as
    // zeros, so the open goes on and creates the store.
    if (walBytes === 0 && valid && pages > 1 && size < pages * pageSize) {
      throw new SnapshotError('STORE_CORRUPT', `${file} is truncated: ${size} bytes, but its header records ${pages} pages of ${pageSize} bytes`, {
        hint: 'Restore the file from a backup; the missing tail cannot be recovered.',
      });
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Maps a better-sqlite3 error (its `code` is the extended SQLite result code) to a SnapshotError. */
export function sqliteError(err: unknown, file: string): SnapshotError {
  if (err instanceof SnapshotError) return err;
  const e = err as { code?: string; message?: string };
  const msg = `${file}: ${e.message ?? String(err)}`;
  const code = e.code ?? '';
  if (code === 'SQLITE_FULL') {
    return new SnapshotError('IO', `${file}: the store is full (SQLITE_FULL): ${e.message}`, {
      hint: 'Free disk space (or raise maxBytes), then take a new snapshot; everything committed before is intact.',
      cause: err,
    });
  }
  if (code.startsWith('SQLITE_IOERR_SHORT_READ')) {
    return new SnapshotError('STORE_CORRUPT', `${file} is truncated: ${e.message}`, {
      hint: 'Restore the file from a backup; `usnap verify` lists what is still readable.',
      cause: err,
    });
  }
  if (code.startsWith('SQLITE_IOERR')) {
    return new SnapshotError('IO', `${file}: I/O error (${code}): ${e.message}`, { hint: 'Check the disk and free space.', cause: err });
  }
  switch (code) {
    case 'SQLITE_NOTADB':
      if (file !== ':memory:' && hasSqliteHeader(file)) {
        return new SnapshotError('STORE_CORRUPT', `${file} is a damaged or truncated SQLite database: ${e.message}`, {
          hint: 'Restore the file from a backup.',
          cause: err,
        });
      }
      return new SnapshotError('NOT_A_STORE', `${file} is not a uffd-snapshot store (not a SQLite database)`, {
        hint: 'Pass the path of a store created by Store.open(), or a new path to create one.',
        cause: err,
      });
    case 'SQLITE_CORRUPT':
    case 'SQLITE_CORRUPT_INDEX':
    case 'SQLITE_CORRUPT_SEQUENCE':
    case 'SQLITE_CORRUPT_VTAB':
      return new SnapshotError('STORE_CORRUPT', `${file} is damaged or truncated: ${e.message}`, {
        hint: 'Restore the file from a backup; `usnap verify` lists what is still readable.',
        cause: err,
      });
    case 'SQLITE_BUSY':
    case 'SQLITE_BUSY_SNAPSHOT':
    case 'SQLITE_BUSY_RECOVERY':
    case 'SQLITE_LOCKED':
      return new SnapshotError('STORE_LOCKED', msg, { hint: 'Another connection holds the store; retry when it is done.', cause: err });
    case 'SQLITE_READONLY':
    case 'SQLITE_READONLY_DIRECTORY':
    case 'SQLITE_READONLY_CANTINIT':
      return new SnapshotError('STORE_READONLY', msg, { hint: 'Open the store without { readonly: true }, and check file permissions.', cause: err });
    case 'SQLITE_CANTOPEN':
    case 'SQLITE_PERM':
      return new SnapshotError('IO', `cannot open ${file}: ${e.message}`, { hint: 'Check that the directory exists and is writable.', cause: err });
    default:
      return new SnapshotError('IO', msg, { cause: err });
  }
}

/**
 * Takes the store's writer lock for this process (`key`: the file's real path) or throws
 * STORE_LOCKED; `token` names this opening in the lock row.
 */
export function takeWriterLock(db: Database.Database, file: string, key: string, token: string): void {
  if (openWriters.has(key)) {
    throw new SnapshotError('STORE_LOCKED', `${file} is already open for writing in this process`, {
      hint: 'Share one Store object, or open the second one with { readonly: true }.',
    });
  }
  db.transaction(() => {
    const row = db.prepare('SELECT pid, token FROM writer WHERE id = 1').get() as { pid: number; token: string } | undefined;
    if (row && row.pid !== process.pid && processAlive(row.pid)) {
      throw new SnapshotError('STORE_LOCKED', `${file} is open for writing by process ${row.pid}`, {
        hint: `Close the store in process ${row.pid} first, or open it with { readonly: true }.`,
      });
    }
    db.prepare('INSERT OR REPLACE INTO writer (id, pid, token, since) VALUES (1, ?, ?, ?)').run(process.pid, token, Date.now());
  }).immediate();
  openWriters.add(key);
}

export function releaseWriterLock(db: Database.Database, key: string | undefined, token: string): void {
  if (!key || !openWriters.has(key)) return;
  openWriters.delete(key);
  try {
    db.prepare('DELETE FROM writer WHERE id = 1 AND token = ?').run(token);
  } catch {
    // The lock row names our pid; a dead pid is taken over on the next open.
  }
}

/** Drops what a crash left half-written: incomplete snapshots and the blobs only they used. */
export function recover(db: Database.Database): void {
  const stale = db.prepare('SELECT count(*) AS n FROM snapshots WHERE complete = 0').get() as { n: number };
  if (stale.n === 0) return;
  db.transaction(() => {
    db.exec(`
      DELETE FROM chunks WHERE snapshot_id IN (SELECT id FROM snapshots WHERE complete = 0);
      DELETE FROM snapshots WHERE complete = 0;
      DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM chunks WHERE chunks.blob_id = blobs.id);
    `);
  }).immediate();
}

/** max_page_count for a byte limit, in the store's SQLite pages. */
export function syncDirectory(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export function maxPages(db: Database.Database, maxBytes: number): number {
  return Math.max(1, Math.floor(maxBytes / (db.pragma('page_size', { simple: true }) as number)));
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

