// The page store: snapshots of regions as 64 KiB chunks, LZ4-compressed, checksummed and
// deduplicated, in one SQLite file (or in memory). Writes happen off the main thread for file
// stores; a snapshot becomes visible only when every one of its chunks is committed.
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { SnapshotError, invalidArgument } from '../core/errors';
import { CHUNK_SIZE, native, packageRoot, type NativeRollbackSources } from '../core/native';
import type { ReaderJob, ReaderMessage } from './reader-worker';
import { BlobReader, buildPlan } from './restore-plan';
import { CODEC, initSchema } from './schema';
import { chunkTag, snapshotTag } from './tags';
import { StoreWriter, batchIsEmpty, type SnapshotMeta, type WriteResult } from './writer';
import type { WriterMessage } from './writer-worker';

export interface StoreOptions {
  /** Open for reading only: no writer lock, no snapshots. */
  readonly?: boolean;
  /** Bytes of chunks per write transaction (default 8 MiB). */
  batchBytes?: number;
  /** Bytes of WAL the writer lets build up before it checkpoints while busy (default 256 MiB; it also checkpoints whenever idle). */
  checkpointBytes?: number;
  /** Largest the store file may grow, in bytes; past it `persisted` rejects with IO (SQLITE_FULL). Default: unlimited. */
  maxBytes?: number;
}

const OPTION_KEYS = ['readonly', 'batchBytes', 'checkpointBytes', 'maxBytes'];

export interface SnapshotInfo {
  id: number;
  region: string;
  parent: number | null;
  label: string | null;
  createdAt: Date;
  complete: boolean;
  /** Pages whose contents this snapshot records (its chunks times 16). */
  pages: number;
  chunks: number;
  /** Bytes of memory those chunks hold. */
  rawBytes: number;
  /** Bytes after compression, before dedup. */
  storedBytes: number;
  /** Bytes this snapshot added to the store after dedup. */
  uniqueBytes: number;
  regionSize: number;
  /** Saved against nothing: the snapshot stands alone. */
  full: boolean;
}

export interface VerifyProblem {
  code: 'STORE_CORRUPT';
  snapshot?: number;
  chunk?: number;
  blob?: number;
  message: string;
}

export interface VerifyResult {
  ok: boolean;
  snapshots: number;
  chunks: number;
  problems: VerifyProblem[];
}

export interface GcResult {
  deletedSnapshots: number[];
  freedBlobs: number;
  freedBytes: number;
}

interface SnapshotRow {
  id: number;
  region: string;
  parent_id: number | null;
  label: string | null;
  created_at: number;
  complete: number;
  chunks: number;
  raw_bytes: number;
  stored_bytes: number;
  unique_bytes: number;
  region_size: number;
  full: number;
}

/** A snapshot taken in this process whose chunks the sink still holds. */
interface Inflight {
  meta: SnapshotMeta;
  regionName: string;
  chunks: Uint32Array;
  resolve: (info: SnapshotInfo) => void;
  reject: (err: SnapshotError) => void;
}

/** A persisted snapshot's own chunk rows, checked against their tags, sorted by chunk. */
interface ChunkRows {
  chunks: Uint32Array;
  blob: Float64Array;  // 0: a zero chunk
  hash: BigInt64Array;  // the checksum the chunk's blob must have
}

const CORRUPT_HINT = 'Run `usnap verify` on the store to see what is damaged.';

/** What a region needs from the store while open. */
export interface RegionLink {
  readonly name: string;
  /** The snapshot the region's memory last matched (its next snapshot's parent). */
  readonly head: number | null;
}

const openWriters = new Set<string>();

function rowToInfo(r: SnapshotRow): SnapshotInfo {
  return {
    id: r.id,
    region: r.region,
    parent: r.parent_id,
    label: r.label,
    createdAt: new Date(r.created_at),
    complete: r.complete === 1,
    pages: r.chunks * (CHUNK_SIZE / 4096),
    chunks: r.chunks,
    rawBytes: r.raw_bytes,
    storedBytes: r.stored_bytes,
    uniqueBytes: r.unique_bytes,
    regionSize: r.region_size,
    full: r.full === 1,
  };
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
function checkTruncation(file: string): void {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return;  // missing or unreadable: the open reports it
  }
  try {
    const h = Buffer.alloc(100);
    const n = fs.readSync(fd, h, 0, 100, 0);
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
    if (walBytes === 0 && valid && size < pages * pageSize) {
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

export class Store {
  readonly path: string;
  readonly readonly: boolean;
  /** @internal */ readonly sink: number;
  private readonly db: Database.Database;
  private readonly memory: boolean;
  private readonly token = randomBytes(8).toString('hex');
  private readonly lockKey: string | undefined;
  private closed = false;
  private nextId = 1;
  private readonly inflight = new Map<number, Inflight>();
  private chunkRowOf: Database.Statement | undefined;
  private readonly regions = new Map<string, RegionLink>();
  private readonly rowCache = new Map<number, ChunkRows>();
  private fatal: SnapshotError | undefined;
  // Writer: a worker for files, the main thread for ':memory:'.
  private worker: Worker | undefined;
  private port: MessagePort | undefined;
  private workerDone: Int32Array | undefined;
  private mainWriter: StoreWriter | undefined;
  private pumping = false;
  private readonly batchBytes: number;
  private readonly checkpointBytes: number;
  private readonly maxBytes: number | undefined;
  // Lazy restores: a reader worker for files; in-memory stores stage blobs in native memory.
  private reader: Worker | undefined;
  private readerPort: MessagePort | undefined;
  private readonly fills = new Map<number, { what: string; resolve: () => void; reject: (e: SnapshotError) => void }>();

  private constructor(file: string, opts: StoreOptions) {
    this.path = file;
    this.memory = file === ':memory:';
    this.readonly = !!opts.readonly && !this.memory;
    this.batchBytes = opts.batchBytes ?? 8 << 20;
    this.checkpointBytes = opts.checkpointBytes ?? 256 << 20;
    this.maxBytes = opts.maxBytes;
    if (!this.memory) {
      if (this.readonly && !fs.existsSync(file)) {
        throw new SnapshotError('NOT_FOUND', `no store at ${file}`, { hint: 'Check the path.' });
      }
      if (!this.readonly && !fs.existsSync(file)) {
        try {
          fs.closeSync(fs.openSync(file, 'wx', 0o600));  // SQLite gives -wal and -shm the same mode
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          if (e.code !== 'EEXIST') {
            throw new SnapshotError('IO', `cannot create ${file}: ${e.message}`, { hint: 'Check that the directory exists and is writable.', cause: err });
          }
        }
      }
    }
    if (!this.memory) checkTruncation(file);
    try {
      this.db = new Database(file, { readonly: this.readonly, fileMustExist: this.readonly });
    } catch (err) {
      throw sqliteError(err, file);
    }
    try {
      initSchema(this.db, file, this.readonly);
      if (this.maxBytes !== undefined) this.db.pragma(`max_page_count = ${maxPages(this.db, this.maxBytes)}`);
      if (!this.readonly && !this.memory) {
        this.lockKey = fs.realpathSync(file);
        this.takeWriterLock();
      }
      if (!this.readonly) this.recover();
      this.nextId = ((this.db.prepare('SELECT max(id) AS m FROM snapshots').get() as { m: number | null }).m ?? 0) + 1;
    } catch (err) {
      this.releaseWriterLock();
      this.db.close();
      throw sqliteError(err, file);
    }
    this.sink = native().sink_open();
    // Started now rather than in the first snapshot()'s pause; idle, it keeps nothing alive.
    if (!this.readonly && !this.memory) {
      this.startWorker();
      this.worker!.unref();
    }
  }

  /** Opens (creating if needed) a store file, or ':memory:' for a store that lives in RAM. */
  static open(file: string, opts: StoreOptions = {}): Store {
    if (typeof file !== 'string' || file.length === 0) throw invalidArgument('path', 'a non-empty string', file);
    if (opts === null || typeof opts !== 'object') throw invalidArgument('options', 'an object', opts);
    for (const k of Object.keys(opts)) {
      if (!OPTION_KEYS.includes(k)) {
        const hint = k.toLowerCase() === 'readonly' ? ' (did you mean "readonly"?)' : '';
        throw new SnapshotError('INVALID_ARGUMENT', `Unknown option "${k}" for Store.open${hint}`);
      }
    }
    for (const k of ['batchBytes', 'checkpointBytes', 'maxBytes'] as const) {
      const v = opts[k];
      if (v !== undefined && (!Number.isSafeInteger(v) || v <= 0)) throw invalidArgument(k, 'a positive integer (bytes)', v);
    }
    return new Store(file === ':memory:' ? file : path.resolve(file), opts);
  }

  private takeWriterLock(): void {
    const key = this.lockKey!;
    if (openWriters.has(key)) {
      throw new SnapshotError('STORE_LOCKED', `${this.path} is already open for writing in this process`, {
        hint: 'Share one Store object, or open the second one with { readonly: true }.',
      });
    }
    this.db.transaction(() => {
      const row = this.db.prepare('SELECT pid, token FROM writer WHERE id = 1').get() as { pid: number; token: string } | undefined;
      if (row && row.pid !== process.pid && processAlive(row.pid)) {
        throw new SnapshotError('STORE_LOCKED', `${this.path} is open for writing by process ${row.pid}`, {
          hint: `Close the store in process ${row.pid} first, or open it with { readonly: true }.`,
        });
      }
      this.db.prepare('INSERT OR REPLACE INTO writer (id, pid, token, since) VALUES (1, ?, ?, ?)').run(process.pid, this.token, Date.now());
    }).immediate();
    openWriters.add(key);
  }

  private releaseWriterLock(): void {
    if (!this.lockKey || !openWriters.has(this.lockKey)) return;
    openWriters.delete(this.lockKey);
    try {
      this.db.prepare('DELETE FROM writer WHERE id = 1 AND token = ?').run(this.token);
    } catch {
      // The lock row names our pid; a dead pid is taken over on the next open.
    }
  }

  /** Drops what a crash left half-written: incomplete snapshots and the blobs only they used. */
  private recover(): void {
    const stale = this.db.prepare('SELECT count(*) AS n FROM snapshots WHERE complete = 0').get() as { n: number };
    if (stale.n === 0) return;
    this.db.transaction(() => {
      this.db.exec(`
        DELETE FROM chunks WHERE snapshot_id IN (SELECT id FROM snapshots WHERE complete = 0);
        DELETE FROM snapshots WHERE complete = 0;
        DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM chunks WHERE chunks.blob_id = blobs.id);
      `);
    }).immediate();
  }

  private assertOpen(): void {
    if (this.closed) throw new SnapshotError('CLOSED', `store ${this.path} is closed`);
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.readonly) {
      throw new SnapshotError('STORE_READONLY', `store ${this.path} was opened read-only`, { hint: 'Open it without { readonly: true } to change it.' });
    }
  }

  // ---- queries ----

  private selectSnapshots(where: string): Database.Statement {
    return this.db.prepare(
      `SELECT s.id, r.name AS region, s.parent_id, s.label, s.created_at, s.complete, s.chunks, s.raw_bytes,
              s.stored_bytes, s.unique_bytes, s.region_size, s.full
       FROM snapshots s JOIN regions r ON r.id = s.region_id ${where} ORDER BY s.id`,
    );
  }

  /** Snapshots in id order: committed ones, plus this process's in-flight ones with { all: true }. */
  list(opts: { region?: string; all?: boolean } = {}): SnapshotInfo[] {
    this.assertOpen();
    try {
      const rows = (opts.region === undefined
        ? this.selectSnapshots(opts.all ? '' : 'WHERE s.complete = 1').all()
        : this.selectSnapshots(`WHERE r.name = ? ${opts.all ? '' : 'AND s.complete = 1'}`).all(opts.region)) as SnapshotRow[];
      return rows.map(rowToInfo);
    } catch (err) {
      throw sqliteError(err, this.path);
    }
  }

  /** One snapshot; NOT_FOUND when it does not exist or is not yet complete. */
  info(id: number): SnapshotInfo {
    this.assertOpen();
    checkId(id);
    const row = this.selectSnapshots('WHERE s.id = ?').get(id) as SnapshotRow | undefined;
    if (!row || !row.complete) {
      if (this.inflight.has(id)) {
        throw new SnapshotError('NOT_PERSISTED', `snapshot ${id} is not persisted yet`, { hint: 'Await snapshot.persisted first.' });
      }
      throw new SnapshotError('NOT_FOUND', `no snapshot ${id} in ${this.path}`, { hint: 'List the snapshots with store.list() or `usnap list`.' });
    }
    return rowToInfo(row);
  }

  /** Region names and sizes recorded in the store. */
  regionsInfo(): { name: string; size: number; snapshots: number }[] {
    this.assertOpen();
    return this.db
      .prepare(
        `SELECT r.name, r.size, (SELECT count(*) FROM snapshots s WHERE s.region_id = r.id AND s.complete = 1) AS snapshots
         FROM regions r ORDER BY r.name`,
      )
      .all() as { name: string; size: number; snapshots: number }[];
  }

  /**
   * Deletes a snapshot. Its chunks move to its children (unless they store their own), so
   * every later snapshot stays restorable.
   */
  delete(id: number): void {
    this.assertWritable();
    checkId(id);
    if (this.inflight.has(id)) {
      throw new SnapshotError('NOT_PERSISTED', `snapshot ${id} is still being saved`, { hint: 'Await snapshot.persisted before deleting it.' });
    }
    for (const f of this.inflight.values()) {
      if (f.meta.parent === id) {
        throw new SnapshotError('NOT_PERSISTED', `snapshot ${f.meta.id}, a child of ${id}, is still being saved`, {
          hint: `Await the persisted promise of snapshot ${f.meta.id} first.`,
        });
      }
    }
    for (const r of this.regions.values()) {
      if (r.head === id) {
        throw new SnapshotError('SNAPSHOT_IN_USE', `snapshot ${id} is what open region "${r.name}" last snapshotted or restored`, {
          hint: 'Take another snapshot of the region, or close it, before deleting this one.',
        });
      }
    }
    this.info(id);
    try {
      this.db.transaction(() => this.deleteInTransaction(id)).immediate();
    } catch (err) {
      throw sqliteError(err, this.path);
    }
  }

  private deleteInTransaction(id: number): number[] {
    const snap = this.db.prepare('SELECT parent_id FROM snapshots WHERE id = ?').get(id) as { parent_id: number | null };
    const children = (this.db.prepare('SELECT id FROM snapshots WHERE parent_id = ?').all(id) as { id: number }[]).map((r) => r.id);
    const rowsOfDeleted = this.db.prepare('SELECT chunk, blob_id, hash FROM chunks WHERE snapshot_id = ?').safeIntegers(true).all(id) as
      { chunk: bigint; blob_id: bigint | null; hash: bigint | null }[];
    const insert = this.db.prepare('INSERT OR IGNORE INTO chunks (snapshot_id, chunk, blob_id, hash, tag) VALUES (?, ?, ?, ?, ?)');
    const merge = {
      run: (child: number) => {
        for (const r of rowsOfDeleted) insert.run(child, r.chunk, r.blob_id, r.hash, chunkTag(child, r.chunk, r.hash));
      },
    };
    // The children now store those chunks themselves: their counts say so (verify checks them).
    const recount = this.db.prepare(
      `UPDATE snapshots SET chunks = t.n, raw_bytes = t.n * ${CHUNK_SIZE}, stored_bytes = t.stored
       FROM (SELECT count(*) AS n, coalesce(sum(b.size), 0) AS stored FROM chunks c LEFT JOIN blobs b ON b.id = c.blob_id WHERE c.snapshot_id = ?) AS t
       WHERE snapshots.id = ?`,
    );
    for (const child of children) {
      merge.run(child);
      recount.run(child, child);
      this.rowCache.delete(child);
    }
    // A child of a full snapshot becomes full itself: absent chunks now mean zero there too.
    const retag = this.db.prepare('UPDATE snapshots SET parent_id = ?, full = ?, tag = ? WHERE id = ?');
    for (const c of this.db.prepare('SELECT id, region_id, region_size, full FROM snapshots WHERE parent_id = ?').all(id) as { id: number; region_id: number; region_size: number; full: number }[]) {
      const full = snap.parent_id === null ? 1 : c.full;
      retag.run(snap.parent_id, full, snapshotTag(c.id, c.region_id, snap.parent_id, c.region_size, full), c.id);
    }
    const blobs = (this.db.prepare('SELECT DISTINCT blob_id FROM chunks WHERE snapshot_id = ? AND blob_id IS NOT NULL').all(id) as { blob_id: number }[]).map((r) => r.blob_id);
    this.db.prepare('DELETE FROM chunks WHERE snapshot_id = ?').run(id);
    this.db.prepare('DELETE FROM snapshots WHERE id = ?').run(id);
    const dropBlob = this.db.prepare('DELETE FROM blobs WHERE id = ? AND NOT EXISTS (SELECT 1 FROM chunks WHERE blob_id = ?)');
    for (const b of blobs) dropBlob.run(b, b);
    this.rowCache.delete(id);
    return children;
  }

  /**
   * Removes unreferenced data and, with `keep`, all but the newest `keep` complete snapshots
   * of each region (snapshots open regions stand on are kept).
   */
  gc(opts: { keep?: number } = {}): GcResult {
    this.assertWritable();
    if (opts.keep !== undefined && (!Number.isInteger(opts.keep) || opts.keep < 0)) throw invalidArgument('keep', 'a non-negative integer', opts.keep);
    const before = this.db.prepare('SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM blobs').get() as { n: number; bytes: number };
    const deleted: number[] = [];
    const inUse = new Set<number>();
    for (const r of this.regions.values()) if (r.head !== null) inUse.add(r.head);
    for (const f of this.inflight.values()) {
      inUse.add(f.meta.id);
      if (f.meta.parent !== null) inUse.add(f.meta.parent);
    }
    try {
      this.db.transaction(() => {
        if (opts.keep !== undefined) {
          const regions = this.db.prepare('SELECT id FROM regions').all() as { id: number }[];
          for (const { id: regionId } of regions) {
            const ids = (this.db.prepare('SELECT id FROM snapshots WHERE region_id = ? AND complete = 1 ORDER BY id DESC').all(regionId) as { id: number }[]).map((r) => r.id);
            for (const id of ids.slice(opts.keep).reverse()) {
              if (inUse.has(id)) continue;
              this.deleteInTransaction(id);
              deleted.push(id);
            }
          }
        }
        this.db.exec('DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM chunks WHERE chunks.blob_id = blobs.id)');
      }).immediate();
      this.db.pragma('incremental_vacuum');
      if (!this.memory) this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch (err) {
      throw sqliteError(err, this.path);
    }
    const after = this.db.prepare('SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM blobs').get() as { n: number; bytes: number };
    return { deletedSnapshots: deleted, freedBlobs: before.n - after.n, freedBytes: before.bytes - after.bytes };
  }

  /**
   * Checks checksums, lengths and chain completeness of one snapshot (and what it stands on)
   * or of the whole store. Never throws for damage it finds: it reports it.
   */
  verify(id?: number, opts: { onProgress?: (chunksChecked: number, chunksTotal: number) => void } = {}): VerifyResult {
    this.assertOpen();
    const problems: VerifyProblem[] = [];
    let snapshots: SnapshotRow[];
    try {
      if (id === undefined) {
        for (const r of this.db.pragma('quick_check') as { quick_check: string }[]) {
          if (r.quick_check !== 'ok') problems.push({ code: 'STORE_CORRUPT', message: `SQLite: ${r.quick_check}` });
        }
        snapshots = this.selectSnapshots('WHERE s.complete = 1').all() as SnapshotRow[];
        // Rows nothing can reach: chunks of a snapshot that does not exist, snapshots of a
        // region that does not exist (a committed transaction never leaves either).
        for (const r of this.db.prepare(
          'SELECT snapshot_id, count(*) AS n FROM chunks WHERE snapshot_id NOT IN (SELECT id FROM snapshots) GROUP BY snapshot_id',
        ).all() as { snapshot_id: number; n: number }[]) {
          problems.push({ code: 'STORE_CORRUPT', snapshot: r.snapshot_id, message: `${r.n} chunk rows belong to snapshot ${r.snapshot_id}, which does not exist` });
        }
        for (const r of this.db.prepare('SELECT id, region_id FROM snapshots WHERE region_id NOT IN (SELECT id FROM regions)').all() as { id: number; region_id: number }[]) {
          problems.push({ code: 'STORE_CORRUPT', snapshot: r.id, message: `snapshot ${r.id} belongs to region ${r.region_id}, which does not exist` });
        }
      } else {
        checkId(id);
        snapshots = [];
        for (const a of this.ancestors(id)) {
          const row = this.selectSnapshots('WHERE s.id = ?').get(a) as SnapshotRow | undefined;
          if (row) snapshots.push(row);
        }
        if (!snapshots.length) throw new SnapshotError('NOT_FOUND', `no snapshot ${id} in ${this.path}`);
      }
      const byId = new Map(snapshots.map((s) => [s.id, s]));
      const parentOf = this.db.prepare('SELECT id, complete FROM snapshots WHERE id = ?');
      const chunkRows = this.db.prepare(
        `SELECT c.chunk, c.blob_id, c.hash AS row_hash, c.tag, b.id AS found, b.hash, b.codec, b.raw_len, b.size, b.data
         FROM chunks c LEFT JOIN blobs b ON b.id = c.blob_id WHERE c.snapshot_id = ?`,
      ).safeIntegers(true);
      const snapTagOf = this.db.prepare('SELECT region_id, parent_id, region_size, full, tag FROM snapshots WHERE id = ?').safeIntegers(true);
      const checked = new Map<bigint, string | null>();
      let chunkCount = 0;
      const total = snapshots.reduce((n, s) => n + s.chunks, 0);
      let done = 0;
      for (const s of snapshots) {
        if (!s.complete) problems.push({ code: 'STORE_CORRUPT', snapshot: s.id, message: `snapshot ${s.id} is incomplete` });
        const st = snapTagOf.get(s.id) as { region_id: bigint; parent_id: bigint | null; region_size: bigint; full: bigint; tag: bigint | null };
        if (st.tag !== snapshotTag(s.id, st.region_id, st.parent_id, st.region_size, st.full)) {
          problems.push({ code: 'STORE_CORRUPT', snapshot: s.id, message: `snapshot ${s.id}: its region, parent or size was altered (the row's tag does not match)` });
        }
        if (s.parent_id !== null && !byId.has(s.parent_id)) {
          const p = parentOf.get(s.parent_id) as { complete: number } | undefined;
          if (!p) {
            problems.push({ code: 'STORE_CORRUPT', snapshot: s.id, message: `snapshot ${s.id} stands on snapshot ${s.parent_id}, which is missing` });
          } else if (!p.complete && s.complete) {
            problems.push({ code: 'STORE_CORRUPT', snapshot: s.id, message: `snapshot ${s.id} stands on snapshot ${s.parent_id}, which is incomplete` });
          }
        }
        const maxChunk = Math.ceil(s.region_size / CHUNK_SIZE);
        let n = 0;
        for (const row of chunkRows.iterate(s.id) as Iterable<{
          chunk: bigint; blob_id: bigint | null; row_hash: bigint | null; tag: bigint | null; found: bigint | null; hash: bigint; codec: bigint; raw_len: bigint; size: bigint; data: Buffer;
        }>) {
          n++;
          if (opts.onProgress && ++done % 64 === 0) opts.onProgress(Math.min(done, total), total);
          const chunk = Number(row.chunk);
          if (chunk < 0 || chunk >= maxChunk) {
            problems.push({ code: 'STORE_CORRUPT', snapshot: s.id, chunk, message: `snapshot ${s.id} has chunk ${chunk} beyond its ${s.region_size}-byte region` });
          }
          if (typeof row.chunk !== 'bigint' || row.tag !== chunkTag(s.id, row.chunk, row.row_hash) || (row.blob_id === null) !== (row.row_hash === null)) {
            problems.push({ code: 'STORE_CORRUPT', snapshot: s.id, chunk, message: `snapshot ${s.id} chunk ${chunk}: the row was altered (its tag does not match)` });
            continue;
          }
          if (row.blob_id === null) continue;
          if (row.found !== null && row.hash !== row.row_hash) {
            problems.push({ code: 'STORE_CORRUPT', snapshot: s.id, chunk, blob: Number(row.blob_id), message: `snapshot ${s.id} chunk ${chunk}: points at blob ${row.blob_id}, which holds other contents (checksum mismatch)` });
            continue;
          }
          if (row.found === null) {
            problems.push({ code: 'STORE_CORRUPT', snapshot: s.id, chunk, blob: Number(row.blob_id), message: `snapshot ${s.id} chunk ${chunk}: blob ${row.blob_id} is missing` });
            continue;
          }
          let error = checked.get(row.blob_id);
          if (error === undefined) {
            error = checkBlob(Number(row.codec), Number(row.raw_len), row.hash, row.data, Number(row.size));
            checked.set(row.blob_id, error);
          }
          if (error) {
            problems.push({ code: 'STORE_CORRUPT', snapshot: s.id, chunk, blob: Number(row.blob_id), message: `snapshot ${s.id} chunk ${chunk} (blob ${row.blob_id}): ${error}` });
          }
        }
        chunkCount += n;
        opts.onProgress?.(Math.min(done, total), total);
        if (n !== s.chunks) {
          problems.push({ code: 'STORE_CORRUPT', snapshot: s.id, message: `snapshot ${s.id} records ${s.chunks} chunks but stores ${n}` });
        }
      }
      return { ok: problems.length === 0, snapshots: snapshots.length, chunks: chunkCount, problems };
    } catch (err) {
      if (err instanceof SnapshotError && err.code === 'NOT_FOUND') throw err;
      const e = sqliteError(err, this.path);
      problems.push({ code: 'STORE_CORRUPT', message: e.message });
      return { ok: false, snapshots: 0, chunks: 0, problems };
    }
  }

  /** Waits until every snapshot taken so far is durable, then closes. Closes the store's regions first. */
  close(): void {
    if (this.closed) return;
    for (const r of [...this.regions.values()]) (r as unknown as { close(): void }).close();
    this.finishWriter();
    if (this.reader) {
      this.readerPort!.close();
      void this.reader.terminate();
      this.reader = undefined;
    }
    this.closed = true;
    native().sink_close(this.sink);
    if (!this.readonly) {
      try {
        if (!this.memory) this.db.pragma('wal_checkpoint(TRUNCATE)');
      } catch {
        // A checkpoint is an optimization; the WAL is replayed on the next open.
      }
    }
    this.releaseWriterLock();
    this.db.close();
  }

  // ---- used by Region ----

  /** @internal Registers an open region; returns its key in the store (0 in a read-only store). */
  _attachRegion(link: RegionLink, size: number): number {
    this.assertOpen();
    if (this.regions.has(link.name)) {
      throw new SnapshotError('REGION_IN_USE', `a region named "${link.name}" is already open on this store`, {
        hint: 'Close it first, or give the new region another name.',
      });
    }
    let row = this.db.prepare('SELECT id FROM regions WHERE name = ?').get(link.name) as { id: number } | undefined;
    if (this.readonly) {
      // Restores work; snapshots are refused when they ask for an id.
      this.regions.set(link.name, link);
      return row?.id ?? 0;
    }
    try {
      if (!row) {
        const id = this.db.prepare('INSERT INTO regions (name, size, created_at) VALUES (?, ?, ?)').run(link.name, size, Date.now()).lastInsertRowid;
        row = { id: Number(id) };
      } else {
        this.db.prepare('UPDATE regions SET size = ? WHERE id = ?').run(size, row.id);
      }
    } catch (err) {
      throw sqliteError(err, this.path);
    }
    this.regions.set(link.name, link);
    return row.id;
  }

  /** @internal */
  _detachRegion(name: string): void {
    this.regions.delete(name);
  }

  /** @internal The id the next snapshot gets. */
  _allocateId(): number {
    this.assertWritable();
    if (this.fatal) throw this.fatal;
    return this.nextId++;
  }

  /** @internal Tracks a snapshot whose chunks are on their way to the store. */
  _track(meta: SnapshotMeta, regionName: string, chunks: Uint32Array): Promise<SnapshotInfo> {
    const p = new Promise<SnapshotInfo>((resolve, reject) => {
      this.inflight.set(meta.id, { meta, regionName, chunks, resolve, reject });
    });
    p.catch(() => {});  // failures surface where `persisted` is awaited, not as unhandled rejections
    this.pumpWriter();
    return p;
  }

  /** @internal Snapshot ids from `id` back to the root of its history. */
  ancestors(id: number): number[] {
    const chain: number[] = [];
    const rowOf = this.db.prepare('SELECT region_id, parent_id, region_size, full, tag FROM snapshots WHERE id = ?').safeIntegers(true);
    let cur: number | null = id;
    while (cur !== null) {
      if (chain.length > 1_000_000) throw new SnapshotError('STORE_CORRUPT', `snapshot history of ${id} loops`, { hint: CORRUPT_HINT });
      chain.push(cur);
      const f = this.inflight.get(cur);
      if (f) {
        cur = f.meta.parent;
        continue;
      }
      const row = rowOf.get(cur) as { region_id: bigint; parent_id: bigint | null; region_size: bigint; full: bigint; tag: bigint | null } | undefined;
      if (!row) break;
      if (row.tag !== snapshotTag(cur, row.region_id, row.parent_id, row.region_size, row.full)) {
        throw new SnapshotError('STORE_CORRUPT', `snapshot ${cur}: its region, parent or size was altered (the row's tag does not match)`, { hint: CORRUPT_HINT });
      }
      cur = row.parent_id === null ? null : Number(row.parent_id);
    }
    return chain;
  }

  /** @internal Region name and size a snapshot was taken of; NOT_FOUND if unknown. */
  _snapshotRegion(id: number): { name: string; size: number; full: boolean } {
    const f = this.inflight.get(id);
    if (f) return { name: f.regionName, size: f.meta.regionSize, full: f.meta.full };
    const row = this.db.prepare('SELECT r.name, s.region_size, s.complete, s.full FROM snapshots s JOIN regions r ON r.id = s.region_id WHERE s.id = ?').get(id) as
      | { name: string; region_size: number; complete: number; full: number }
      | undefined;
    if (!row || !row.complete) throw new SnapshotError('NOT_FOUND', `no snapshot ${id} in ${this.path}`, { hint: 'List the snapshots with store.list() or `usnap list`.' });
    return { name: row.name, size: row.region_size, full: row.full === 1 };
  }

  /** @internal The chunks snapshot `id` itself stores (sorted). */
  chunkSet(id: number): Uint32Array {
    const f = this.inflight.get(id);
    return f ? f.chunks : this.rows(id).chunks;
  }

  /** Snapshot `id`'s chunk rows, each checked against its tag, and their number against the snapshot's. */
  private rows(id: number): ChunkRows {
    let r = this.rowCache.get(id);
    if (r) return r;
    const raw = this.db.prepare('SELECT chunk, blob_id, hash, tag FROM chunks WHERE snapshot_id = ? ORDER BY chunk').safeIntegers(true).raw().all(id) as
      [bigint, bigint | null, bigint | null, bigint | null][];
    const n = raw.length;
    r = { chunks: new Uint32Array(n), blob: new Float64Array(n), hash: new BigInt64Array(n) };
    for (let i = 0; i < n; i++) {
      const [chunk, blob, hash, tag] = raw[i]!;
      // Typed arrays would wrap 2^40 to 0 and turn text into 0: a damaged row must not alias a real chunk.
      if (typeof chunk !== 'bigint' || chunk < 0n || chunk > 0xffffffffn) {
        throw new SnapshotError('STORE_CORRUPT', `snapshot ${id} has an invalid chunk index ${String(chunk)}`, { hint: CORRUPT_HINT });
      }
      checkChunkRow(id, chunk, blob, hash, tag);
      r.chunks[i] = Number(chunk);
      r.blob[i] = blob === null ? 0 : Number(blob);
      r.hash[i] = hash ?? 0n;
    }
    const recorded = this.db.prepare('SELECT chunks, complete FROM snapshots WHERE id = ?').get(id) as { chunks: number; complete: number } | undefined;
    if (recorded?.complete && recorded.chunks !== n) {
      throw new SnapshotError('STORE_CORRUPT', `snapshot ${id} records ${recorded.chunks} chunks but stores ${n}`, { hint: CORRUPT_HINT });
    }
    if (this.rowCache.size > 256) this.rowCache.clear();
    this.rowCache.set(id, r);
    return r;
  }

  /** @internal Chunks whose contents may differ between snapshots `a` and `b` (null: zero memory). */
  _changedBetween(a: number | null, b: number): Set<number> {
    const chainA = a === null ? [] : this.ancestors(a);
    const chainB = this.ancestors(b);
    const inA = new Set(chainA);
    const common = chainB.find((x) => inA.has(x));
    const changed = new Set<number>();
    for (const chain of [chainA, chainB]) {
      for (const s of chain) {
        if (s === common) break;
        for (const c of this.chunkSet(s)) changed.add(c);
      }
    }
    return changed;
  }

  /** @internal Where each of `chunks` comes from at snapshot `target`. */
  _sources(target: number, chunks: Iterable<number>): NativeRollbackSources {
    const wanted = [...chunks].sort((x, y) => x - y);
    const chain = this.ancestors(target);
    const owner = new Map<number, number>();  // chunk -> snapshot storing its version at target
    let left = wanted.length;
    for (const s of chain) {
      if (left === 0) break;
      const set = this.chunkSet(s);
      for (const c of wanted) {
        if (!owner.has(c) && binarySearch(set, c)) {
          owner.set(c, s);
          left--;
        }
      }
    }
    const n = wanted.length;
    const src: NativeRollbackSources = {
      chunk: Uint32Array.from(wanted),
      sinkSnap: new Float64Array(n),
      codec: new Uint8Array(n),
      rawLen: new Uint32Array(n).fill(CHUNK_SIZE),
      hash: new BigInt64Array(n),
      data: new Array<Uint8Array | null>(n).fill(null),
    };
    const blobOf = this.db.prepare('SELECT codec, raw_len, data FROM blobs WHERE id = ?').safeIntegers(true);
    for (let i = 0; i < n; i++) {
      const s = owner.get(wanted[i]!);
      if (s === undefined) continue;  // never stored along the chain: zero
      let blobId: number;
      if (this.inflight.has(s)) {
        // The writer has committed part of it: those chunks are read from here, the rest
        // from the sink (the caller pins it, so none it still holds is dropped meanwhile).
        const row = this.committedChunk(s, wanted[i]!);
        if (!row) {
          src.sinkSnap[i] = s;
          continue;
        }
        blobId = row.blob;
        src.hash[i] = row.hash;
      } else {
        const rows = this.rows(s);
        const at = lowerBound(rows.chunks, wanted[i]!);
        blobId = rows.blob[at]!;
        src.hash[i] = rows.hash[at]!;  // what the row says the data must hash to: a wrong blob fails the check
      }
      if (blobId === 0) continue;  // a zero chunk
      const b = blobOf.get(blobId) as { codec: bigint; raw_len: bigint; data: Buffer } | undefined;
      if (!b) {
        throw new SnapshotError('STORE_CORRUPT', `snapshot ${s} chunk ${wanted[i]}: blob ${blobId} is missing`, { hint: CORRUPT_HINT });
      }
      src.codec[i] = Number(b.codec);
      src.rawLen[i] = Number(b.raw_len);
      src.data[i] = b.data;
    }
    return src;
  }

  /** A committed chunk row of a snapshot still being written (blob 0: a zero chunk), checked. */
  private committedChunk(id: number, chunk: number): { blob: number; hash: bigint } | undefined {
    this.chunkRowOf ??= this.db.prepare('SELECT blob_id, hash, tag FROM chunks WHERE snapshot_id = ? AND chunk = ?').safeIntegers(true);
    const row = this.chunkRowOf.get(id, chunk) as { blob_id: bigint | null; hash: bigint | null; tag: bigint | null } | undefined;
    if (!row) return undefined;
    checkChunkRow(id, chunk, row.blob_id, row.hash, row.tag);
    return { blob: row.blob_id === null ? 0 : Number(row.blob_id), hash: row.hash ?? 0n };
  }

  /** @internal Runs `fn` with the sink pinned: chunks it holds now stay until `fn` returns. */
  _withSinkPinned<T>(fn: () => T): T {
    const addon = native();
    addon.sink_pin(this.sink, true);
    try {
      return fn();
    } finally {
      addon.sink_pin(this.sink, false);
    }
  }

  /** @internal The chunk rows snapshot `id` itself stores (blob null: a zero chunk). */
  _blobIds(id: number): { chunk: number; blob: number | null }[] {
    const r = this.rows(id);
    return Array.from(r.chunks, (chunk, i) => ({ chunk, blob: r.blob[i] === 0 ? null : r.blob[i]! }));
  }

  /** @internal A stored blob, or undefined. */
  _blob(id: number): { hash: bigint; codec: number; rawLen: number; data: Buffer } | undefined {
    const r = this.db.prepare('SELECT hash, codec, raw_len, data FROM blobs WHERE id = ?').safeIntegers(true).get(id) as
      | { hash: bigint; codec: bigint; raw_len: bigint; data: Buffer }
      | undefined;
    return r && { hash: r.hash, codec: Number(r.codec), rawLen: Number(r.raw_len), data: r.data };
  }

  /** @internal Lazy restores plan (and check every chunk row) on the reader worker, not the caller's thread. */
  get _lazyReaderChecksRows(): boolean {
    return !this.memory;
  }

  /** @internal Whether any snapshot in `id`'s history is still only in memory. */
  _hasUnpersistedHistory(id: number): boolean {
    return this.ancestors(id).some((a) => this.inflight.has(a));
  }

  /**
   * @internal Fills a lazily restored region from snapshot `id`: returns at once; the
   * promise settles when every chunk holding data is in memory.
   */
  _fillLazily(source: number, id: number, chunks: number, label: string): Promise<void> {
    const p = this.memory ? this.fillFromMemory(source, id, chunks, label) : this.fillFromReader(source, id, chunks);
    p.catch(() => {});  // surfaces where `ready` is awaited
    return p;
  }

  private fillFromMemory(source: number, id: number, chunks: number, label: string): Promise<void> {
    const addon = native();
    // Everything goes to native memory now: a fault must never need this thread.
    const plan = buildPlan(this.db, id, chunks);
    addon.source_set_plan(source, plan.hasData);
    const reader = new BlobReader(this.db);
    const data: number[] = [];
    for (let c = 0; c < chunks; c++) if (plan.hasData[c]) data.push(c);
    for (let i = 0; i < data.length; i += 1024) addon.source_stage(source, reader.read(plan, data.slice(i, i + 1024)));
    addon.source_start_prefetch(source);
    return new Promise((resolve, reject) => {
      const poll = () => {
        const st = addon.source_stats(source);
        if (!st.open) return reject(new SnapshotError('CLOSED', `${label} was closed before it was fully restored`));
        if (!st.ready) return void setTimeout(poll, 1);
        if (st.corrupt) return reject(corruptRestore(label, st.corrupt));
        resolve();
      };
      poll();
    });
  }

  private fillFromReader(source: number, id: number, chunks: number): Promise<void> {
    if (!this.reader) {
      const { port1, port2 } = new MessageChannel();
      this.readerPort = port1;
      this.reader = new Worker(path.join(packageRoot, 'dist', 'store', 'reader-worker.js'), {
        workerData: { path: this.path, port: port2 },
        transferList: [port2],
      });
      port1.on('message', (m: ReaderMessage) => {
        const f = this.fills.get(m.source);
        this.fills.delete(m.source);
        if (this.fills.size === 0) this.reader?.unref();
        if (!f) return;
        if (m.type === 'failed') f.reject(new SnapshotError('IO', `restore from ${this.path} failed: ${m.message}`));
        else if (m.corrupt) f.reject(corruptRestore(f.what, m.corrupt));
        else f.resolve();
      });
      port1.unref();
      const reader = this.reader;
      this.reader.on('error', (err) => {
        for (const f of this.fills.values()) f.reject(new SnapshotError('INTERNAL', `store reader crashed: ${err.message}`, { cause: err }));
        this.fills.clear();
      });
      // Ended without an error while restores were pending: never leave `ready` waiting.
      this.reader.on('exit', (code) => {
        if (this.reader !== reader) return;
        for (let m = receiveMessageOnPort(port1); m; m = receiveMessageOnPort(port1)) port1.emit('message', m.message);
        this.reader = undefined;
        for (const f of this.fills.values()) f.reject(new SnapshotError('INTERNAL', `store reader exited (code ${code}) before the restore finished`));
        this.fills.clear();
      });
    }
    this.reader.ref();
    return new Promise((resolve, reject) => {
      this.fills.set(source, { what: `snapshot ${id} in ${this.path}`, resolve, reject });
      this.readerPort!.postMessage({ source, snapshot: id, chunks } satisfies ReaderJob);
    });
  }

  // ---- the writer ----

  private pumpWriter(): void {
    if (this.memory) {
      if (!this.mainWriter) this.mainWriter = new StoreWriter(this.db, this.sink);
      if (!this.pumping) {
        this.pumping = true;
        setImmediate(() => this.pumpMain());
      }
      return;
    }
    if (!this.worker) this.startWorker();
    this.worker!.ref();
  }

  private pumpMain(): void {
    if (this.closed) return;
    let wrote = false;
    try {
      const batch = native().sink_drain(this.sink, this.batchBytes, 0);
      if (!batchIsEmpty(batch)) {
        this.deliver(this.mainWriter!.apply(batch));
        wrote = true;
      }
    } catch (err) {
      this.failAll(sqliteError(err, this.path));
    }
    if (this.inflight.size > 0) setTimeout(() => this.pumpMain(), wrote ? 0 : 1);
    else this.pumping = false;
  }

  private startWorker(): void {
    const { port1, port2 } = new MessageChannel();
    this.workerDone = new Int32Array(new SharedArrayBuffer(4));
    this.port = port1;
    this.worker = new Worker(path.join(packageRoot, 'dist', 'store', 'writer-worker.js'), {
      workerData: {
        path: this.path,
        sink: this.sink,
        port: port2,
        done: this.workerDone,
        batchBytes: this.batchBytes,
        checkpointBytes: this.checkpointBytes,
        maxPageCount: this.maxBytes === undefined ? undefined : maxPages(this.db, this.maxBytes),
      },
      transferList: [port2],
    });
    port1.on('message', (m: WriterMessage) => this.onWriterMessage(m));
    port1.unref();
    this.worker.on('error', (err) => this.failAll(new SnapshotError('INTERNAL', `store writer crashed: ${err.message}`, { cause: err })));
    const worker = this.worker;
    // Ended early without an error (never by design before close): never leave `persisted` waiting.
    this.worker.on('exit', (code) => {
      if (this.worker !== worker || this.closed) return;
      // Its last words (a fatal error, results) may still be queued behind the exit event.
      for (let m = receiveMessageOnPort(port1); m; m = receiveMessageOnPort(port1)) this.onWriterMessage(m.message as WriterMessage);
      this.worker = undefined;
      if (this.inflight.size > 0) this.failAll(new SnapshotError('INTERNAL', `store writer exited (code ${code}) with snapshots still to save`));
    });
  }

  private onWriterMessage(m: WriterMessage): void {
    if (m.type === 'fatal') {
      const cause = Object.assign(new Error(m.message), { code: m.code });
      const e = sqliteError(cause, this.path);
      this.failAll(new SnapshotError(e.code, `store writer failed: ${e.message}`, { hint: e.hint ?? 'Check free disk space and the store file.', cause }));
    }
    else this.deliver(m);
    if (this.inflight.size === 0) this.worker?.unref();
  }

  private deliver(r: Pick<WriteResult, 'persisted' | 'failed'>): void {
    const addon = native();
    for (const id of r.persisted) {
      const f = this.inflight.get(id);
      addon.sink_release(this.sink, id);
      this.inflight.delete(id);
      if (!f) continue;
      const row = this.selectSnapshots('WHERE s.id = ?').get(id) as SnapshotRow | undefined;
      if (row) f.resolve(rowToInfo(row));
      else f.reject(new SnapshotError('INTERNAL', `snapshot ${id} was committed but cannot be read back`));
    }
    for (const { id, error } of r.failed) {
      const f = this.inflight.get(id);
      addon.sink_release(this.sink, id);
      this.inflight.delete(id);
      f?.reject(new SnapshotError('SNAPSHOT_FAILED', `snapshot ${id} could not be saved: ${error}`, {
        hint: 'The next snapshot of the region saves all of it again.',
      }));
    }
  }

  private failAll(err: SnapshotError): void {
    this.fatal = err;
    for (const [id, f] of this.inflight) {
      this.inflight.delete(id);
      f.reject(err);
    }
  }

  private finishWriter(): void {
    const addon = native();
    if (this.memory) {
      if (!this.mainWriter) return;
      while (this.inflight.size > 0 && !this.fatal) {
        const batch = addon.sink_drain(this.sink, this.batchBytes, 20);
        if (!batchIsEmpty(batch)) this.deliver(this.mainWriter.apply(batch));
      }
      return;
    }
    if (!this.worker) return;
    this.port!.postMessage('finish');
    while (Atomics.wait(this.workerDone!, 0, 0, 60_000) === 'timed-out') {
      process.emitWarning(`uffd-snapshot: still waiting for the store writer of ${this.path}`);
    }
    for (let m = receiveMessageOnPort(this.port!); m; m = receiveMessageOnPort(this.port!)) this.onWriterMessage(m.message as WriterMessage);
    this.port!.close();
    void this.worker.terminate();
    this.worker = undefined;
    if (this.inflight.size > 0) this.failAll(new SnapshotError('INTERNAL', 'store closed before every snapshot was saved'));
  }

  /** Statistics about the store file. */
  stats(): { snapshots: number; blobs: number; storedBytes: number; fileBytes: number; heldInMemory: number } {
    this.assertOpen();
    const s = this.db.prepare('SELECT (SELECT count(*) FROM snapshots WHERE complete = 1) AS snapshots, count(*) AS blobs, coalesce(sum(size), 0) AS bytes FROM blobs').get() as {
      snapshots: number; blobs: number; bytes: number;
    };
    const pageCount = this.db.pragma('page_count', { simple: true }) as number;
    const pageSize = this.db.pragma('page_size', { simple: true }) as number;
    return { snapshots: s.snapshots, blobs: s.blobs, storedBytes: s.bytes, fileBytes: pageCount * pageSize, heldInMemory: native().sink_stats(this.sink).heldBytes };
  }
}

/** Throws STORE_CORRUPT unless chunk row (snapshot, chunk) carries the tag its fields imply. */
function checkChunkRow(id: number, chunk: bigint | number, blob: bigint | null, hash: bigint | null, tag: bigint | null): void {
  if (tag !== chunkTag(id, chunk, hash) || (blob === null) !== (hash === null) || (blob !== null && blob <= 0n)) {
    throw new SnapshotError('STORE_CORRUPT', `snapshot ${id} chunk ${chunk}: the row was altered (its tag does not match)`, { hint: CORRUPT_HINT });
  }
}

function corruptRestore(what: string, detail: string): SnapshotError {
  return new SnapshotError('STORE_CORRUPT', `${what}: ${detail}`, {
    hint: 'That chunk was not restored; the program stops if it touches it. Run `usnap verify` on the store.',
  });
}

function checkBlob(codec: number, rawLen: number, hash: bigint, data: Buffer, size: number): string | null {
  if (rawLen !== CHUNK_SIZE) return `raw length ${rawLen} is not ${CHUNK_SIZE}`;
  if (size !== data.length) return `recorded size ${size} differs from the data's ${data.length} bytes`;
  if (codec !== CODEC.raw && codec !== CODEC.lz4) return `unknown codec ${codec}`;
  try {
    native().codec_verify(codec, rawLen, BigInt.asIntN(64, hash), data);
    if (codec === CODEC.lz4) native().codec_decode(codec, rawLen, data);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** max_page_count for a byte limit, in the store's SQLite pages. */
function maxPages(db: Database.Database, maxBytes: number): number {
  return Math.max(1, Math.floor(maxBytes / (db.pragma('page_size', { simple: true }) as number)));
}

function checkId(id: unknown): asserts id is number {
  if (!Number.isSafeInteger(id) || (id as number) < 1) throw invalidArgument('snapshot id', 'a positive integer', id);
}

/** Index of the first element >= x. */
function lowerBound(a: Uint32Array, x: number): number {
  let lo = 0, hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function binarySearch(a: Uint32Array, x: number): boolean {
  let lo = 0, hi = a.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = a[mid]!;
    if (v === x) return true;
    if (v < x) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

