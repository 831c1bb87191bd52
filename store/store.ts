// The page store: snapshots of regions as 64 KiB chunks, LZ4-compressed, checksummed and
// deduplicated, in one SQLite file (or in memory). Writes happen off the main thread for file
// stores; a snapshot becomes visible only when every one of its chunks is committed.
//
// Store is a facade over modules that share one StoreState (state.ts): open.ts (file checks,
// errors, writer lock), catalog.ts (queries), delete.ts (delete, gc), verify.ts, persister.ts
// (the writer and `persisted`), chunk-sources.ts (in-place restores, images) and restore.ts
// (page sources for restores into new regions).
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SnapshotError, invalidArgument } from '../core/errors';
import { native, type NativeRollbackSources } from '../core/native';
import * as catalog from './catalog';
import type { SnapshotInfo } from './catalog';
import { rollbackSources, withSinkPinned } from './chunk-sources';
import { deleteSnapshot, gc, type GcResult } from './delete';
import { checkTruncation, maxPages, recover, releaseWriterLock, sqliteError, takeWriterLock } from './open';
import { Persister } from './persister';
import { LocalRestore, type PageSource } from './restore';
import { readRange } from './image';
import { initSchema } from './schema';
import { checkId, type RegionLink, type StoreState } from './state';
import { verify, type VerifyResult } from './verify';
import { readWorkingSet, recordWorkingSet } from './working-set';
import type { SnapshotMeta } from './writer';
import type { Remote } from './remote';
import {
  commitPulled,
  imageManifest,
  localOfRemote,
  pull as pullFromRemote,
  push as pushToRemote,
  type PullOptions,
  type PullResult,
  type PushOptions,
  type PushResult,
  type RemoteImage,
} from './remote-sync';

export type { SnapshotInfo } from './catalog';
export type { GcResult } from './delete';
export type { PageSource } from './restore';
export type { RegionLink } from './state';
export type { VerifyProblem, VerifyResult } from './verify';

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

export class Store {
  readonly path: string;
  readonly readonly: boolean;
  /** @internal */ readonly sink: number;
  private readonly db: Database.Database;
  private readonly memory: boolean;
  private readonly token = randomBytes(8).toString('hex');
  private readonly lockKey: string | undefined;
  private closed = false;
  private readonly st: StoreState;
  private readonly persister: Persister;
  private readonly restorer: LocalRestore;

  private constructor(file: string, opts: StoreOptions) {
    this.path = file;
    this.memory = file === ':memory:';
    this.readonly = !!opts.readonly && !this.memory;
    const maxBytes = opts.maxBytes;
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
    let nextId: number;
    try {
      initSchema(this.db, file, this.readonly);
      if (maxBytes !== undefined) this.db.pragma(`max_page_count = ${maxPages(this.db, maxBytes)}`);
      if (!this.readonly && !this.memory) {
        this.lockKey = fs.realpathSync(file);
        takeWriterLock(this.db, this.path, this.lockKey, this.token);
      }
      if (!this.readonly) recover(this.db);
      nextId = ((this.db.prepare('SELECT max(id) AS m FROM snapshots').get() as { m: number | null }).m ?? 0) + 1;
    } catch (err) {
      releaseWriterLock(this.db, this.lockKey, this.token);
      this.db.close();
      throw sqliteError(err, file);
    }
    this.sink = native().sink_open();
    this.st = {
      path: this.path,
      db: this.db,
      memory: this.memory,
      readonly: this.readonly,
      sink: this.sink,
      inflight: new Map(),
      regions: new Map(),
      rowCache: new Map(),
    };
    this.persister = new Persister(this.st, nextId, opts.batchBytes ?? 8 << 20, opts.checkpointBytes ?? 256 << 20, maxBytes);
    this.restorer = new LocalRestore(this.st);
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

  private assertOpen(): void {
    if (this.closed) throw new SnapshotError('CLOSED', `store ${this.path} is closed`);
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.readonly) {
      throw new SnapshotError('STORE_READONLY', `store ${this.path} was opened read-only`, { hint: 'Open it without { readonly: true } to change it.' });
    }
  }

  /** Snapshots in id order: committed ones, plus this process's in-flight ones with { all: true }. */
  list(opts: { region?: string; all?: boolean } = {}): SnapshotInfo[] {
    this.assertOpen();
    return catalog.list(this.st, opts);
  }

  /** One snapshot; NOT_FOUND when it does not exist or is not yet complete. */
  info(id: number): SnapshotInfo {
    this.assertOpen();
    return catalog.info(this.st, id);
  }

  /**
   * Bytes [offset, offset + length) of the region at a snapshot, without a region: zeros where
   * it has zeros, every chunk read checked like a restore (STORE_CORRUPT). A range beyond the
   * snapshot's region size is INVALID_ARGUMENT.
   */
  read(snapshot: number | { id: number }, offset: number, length: number): Buffer {
    this.assertOpen();
    const id = typeof snapshot === 'object' && snapshot !== null ? snapshot.id : snapshot;
    checkId(id);
    return readRange(this, id, offset, length);
  }

  /** Region names and sizes recorded in the store. */
  regionsInfo(): { name: string; size: number; snapshots: number }[] {
    this.assertOpen();
    return catalog.regionsInfo(this.st);
  }

  /**
   * Deletes a snapshot. Its chunks move to its children (unless they store their own), so
   * every later snapshot stays restorable.
   */
  delete(id: number): void {
    this.assertWritable();
    deleteSnapshot(this.st, id);
  }

  /**
   * Removes unreferenced data and, with `keep`, all but the newest `keep` complete snapshots
   * of each region (snapshots open regions stand on are kept).
   */
  gc(opts: { keep?: number } = {}): GcResult {
    this.assertWritable();
    return gc(this.st, opts);
  }

  /**
   * Checks checksums, lengths and chain completeness of one snapshot (and what it stands on)
   * or of the whole store. Never throws for damage it finds: it reports it.
   */
  verify(id?: number, opts: { onProgress?: (chunksChecked: number, chunksTotal: number) => void } = {}): VerifyResult {
    this.assertOpen();
    return verify(this.st, id, opts);
  }

  /** Statistics about the store file. */
  stats(): { snapshots: number; blobs: number; storedBytes: number; fileBytes: number; heldInMemory: number } {
    this.assertOpen();
    return catalog.storeStats(this.st);
  }

  /** Waits until every snapshot taken so far is durable, then closes. Closes the store's regions first. */
  close(): void {
    if (this.closed) return;
    for (const r of [...this.st.regions.values()]) (r as unknown as { close(): void }).close();
    this.persister.finish();
    this.restorer.close();
    this.closed = true;
    native().sink_close(this.sink);
    if (!this.readonly) {
      try {
        if (!this.memory) this.db.pragma('wal_checkpoint(TRUNCATE)');
      } catch {
        // A checkpoint is an optimization; the WAL is replayed on the next open.
      }
    }
    releaseWriterLock(this.db, this.lockKey, this.token);
    this.db.close();
  }

  // ---- the remote tier (store/remote-sync.ts, docs/remote.md) ----

  /** Uploads snapshots, and what they stand on, to a remote. */
  push(remote: Remote, opts: PushOptions = {}): Promise<PushResult> {
    this.assertOpen();
    return pushToRemote(this, remote, opts);
  }

  /** Copies remote snapshots, and what they stand on, into this store. */
  pull(remote: Remote, opts: PullOptions = {}): Promise<PullResult> {
    this.assertWritable();
    return pullFromRemote(this, this.db, remote, opts);
  }

  /** @internal The local snapshot a remote snapshot was pulled or restored into, if any. */
  _remoteOrigin(remoteId: string): number | undefined {
    this.assertOpen();
    return localOfRemote(this.db, remoteId);
  }

  /** @internal Commits a lazily restored remote image as full snapshot `id` (store/remote-restore.ts). */
  _importRemote(id: number, image: RemoteImage, chunks: Map<string, { codec: number; data: Buffer }>): void {
    this.assertWritable();
    try {
      commitPulled(this.db, id, image.id, null, imageManifest(image), chunks);
    } catch (err) {
      throw sqliteError(err, this.path);
    }
  }

  // ---- used by Region ----

  /** @internal Registers an open region; returns its key in the store (0 in a read-only store). */
  _attachRegion(link: RegionLink, size: number): number {
    this.assertOpen();
    if (this.st.regions.has(link.name)) {
      throw new SnapshotError('REGION_IN_USE', `a region named "${link.name}" is already open on this store`, {
        hint: 'Close it first, or give the new region another name.',
      });
    }
    let row = this.db.prepare('SELECT id FROM regions WHERE name = ?').get(link.name) as { id: number } | undefined;
    if (this.readonly) {
      // Restores work; snapshots are refused when they ask for an id.
      this.st.regions.set(link.name, link);
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
    this.st.regions.set(link.name, link);
    return row.id;
  }

  /** @internal */
  _detachRegion(name: string): void {
    this.st.regions.delete(name);
  }

  /** @internal The id the next snapshot gets. */
  _allocateId(): number {
    this.assertWritable();
    return this.persister.allocateId();
  }

  /** @internal Tracks a snapshot whose chunks are on their way to the store. */
  _track(meta: SnapshotMeta, regionName: string, chunks: Uint32Array): Promise<SnapshotInfo> {
    return this.persister.track(meta, regionName, chunks);
  }

  /** @internal The page source for restoring snapshot `id` into a new region (see store/restore.ts). */
  _pageSource(id: number): PageSource {
    return this.restorer.pageSource(this, id);
  }

  // In-place restores (region.restore) and images (image.ts) read chunks at a snapshot here.

  /** @internal Snapshot ids from `id` back to the root of its history. */
  ancestors(id: number): number[] {
    return catalog.ancestors(this.st, id);
  }

  /** @internal The chunks snapshot `id` itself stores (sorted). */
  chunkSet(id: number): Uint32Array {
    return catalog.chunkSet(this.st, id);
  }

  /** @internal Region name and size a snapshot was taken of; NOT_FOUND if unknown. */
  /** @internal The working set recorded for a snapshot (chunk indices in first-touch order), or null. */
  _workingSet(id: number): Uint32Array | null {
    this.assertOpen();
    return readWorkingSet(this.st, id);
  }

  /** @internal Keeps a snapshot's working set; false when it could not (read-only, deleted, busy). */
  _recordWorkingSet(id: number, chunks: Uint32Array): boolean {
    if (this.closed) return false;
    return recordWorkingSet(this.st, id, chunks);
  }

  /** @internal */
  _snapshotRegion(id: number): { name: string; size: number; full: boolean } {
    return catalog.snapshotRegion(this.st, id);
  }

  /** @internal STORE_CORRUPT when a snapshot in `id`'s history has a chunk beyond `size` bytes. */
  _checkChunkRanges(id: number, size: number): void {
    catalog.checkChunkRanges(this.st, id, size);
  }

  /** @internal Chunks whose contents may differ between snapshots `a` and `b` (null: zero memory). */
  _changedBetween(a: number | null, b: number): Set<number> {
    return catalog.changedBetween(this.st, a, b);
  }

  /** @internal Where each of `chunks` comes from at snapshot `target`. */
  _sources(target: number, chunks: Iterable<number>): NativeRollbackSources {
    return rollbackSources(this.st, target, chunks);
  }

  /** @internal Runs `fn` with the sink pinned: chunks it holds now stay until `fn` returns. */
  _withSinkPinned<T>(fn: () => T): T {
    return withSinkPinned(this.st, fn);
  }

  /** @internal The chunk rows snapshot `id` itself stores (blob null: a zero chunk). */
  _blobIds(id: number): { chunk: number; blob: number | null }[] {
    return catalog.blobIds(this.st, id);
  }

  /** @internal A stored blob, or undefined. */
  _blob(id: number): { hash: bigint; codec: number; rawLen: number; data: Buffer } | undefined {
    return catalog.readBlob(this.st, id);
  }
}
