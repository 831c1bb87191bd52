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
import { optBoolean, optFunction, optInteger, optString, readOptions } from '../core/options';
import { Snapshot, snapshotStore } from '../lib/snapshot';
import { native, type NativeRollbackSources } from '../core/native';
import * as catalog from './catalog';
import type { GcResult, PullOptions, PullResult, PushOptions, PushResult, SnapshotInfo, VerifyResult } from './types';
import { rollbackSources, withSinkPinned } from './chunk-sources';
import { checkDeletable, gcInUse } from './delete';
import { checkStoreFile, checkTruncation, maxPages, recover, releaseWriterLock, sqliteError, syncDirectory, takeWriterLock } from './open';
import { Persister, type Settlement } from './persister';
import { LocalRestore, type PageSource } from './restore';
import { readRange } from './image';
import { initSchema } from './schema';
import type { RegionLink, StoreState } from './state';
import { verify } from './verify';
import { readWorkingSet, recordWorkingSet } from './working-set';
import type { SnapshotMeta } from './writer';
import type { Remote } from './remote';
import {
  commitPulled,
  imageManifest,
  localOfRemote,
  pull as pullFromRemote,
  push as pushToRemote,
  type RemoteImage,
} from './remote-sync';

export type { SnapshotInfo, GcResult, VerifyProblem, VerifyResult } from './types';
/** @internal */
export type { PageSource } from './restore';
/** @internal */
export type { RegionLink } from './state';

export interface StoreOptions {
  /** Open for reading only: no writer lock, no snapshots. */
  readonly?: boolean;
  /**
   * Create the store when the path does not exist (or is an empty file). Default true; with
   * false, the path must already hold a store (NOT_FOUND, NOT_A_STORE otherwise).
   */
  create?: boolean;
  /** Bytes of chunks per write transaction (default 8 MiB). */
  batchBytes?: number;
  /** Bytes of WAL the writer lets build up before it checkpoints while busy (default 256 MiB; it also checkpoints whenever idle). */
  checkpointBytes?: number;
  /** Largest the store file may grow, in bytes; past it `persisted` rejects with IO (SQLITE_FULL). Default: unlimited. */
  maxBytes?: number;
  /**
   * Retention: after each persisted snapshot, the writer deletes all but the newest `keep`
   * snapshots of each region in the background (as `gc({ keep })`, off the main thread for a
   * file store). At least 1. Default: keep everything.
   */
  keep?: number;
  /**
   * What a resolved `persisted` survives. 'power' (default): a power loss or OS crash (the WAL is
   * fsynced before it resolves). 'process': a crash of the process only, not of the machine (no
   * fsync; faster, see README). Has no effect on ':memory:' stores, which nothing survives.
   */
  durability?: Durability;
}

export type Durability = 'power' | 'process';

const OPTION_KEYS = ['readonly', 'create', 'batchBytes', 'checkpointBytes', 'maxBytes', 'keep', 'durability'] as const;

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
    const durability = opts.durability ?? 'power';
    if (!this.memory) {
      checkStoreFile(file, { readonly: this.readonly, create: opts.create !== false });
      checkTruncation(file);
    }
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
        // SQLite fsyncs the directory only when the connection that created a -wal or -journal
        // syncs it; the store file we created and the -wal made by this connection (the writer
        // connection syncs it) must also survive a power loss before the first `persisted`.
        if (durability === 'power') syncDirectory(path.dirname(file));
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
    this.persister = new Persister(this.st, nextId, opts.batchBytes ?? 8 << 20, opts.checkpointBytes ?? 256 << 20, maxBytes, durability, opts.keep);
    this.restorer = new LocalRestore(this.st);
  }

  /** Opens (creating if needed) a store file, or ':memory:' for a store that lives in RAM. */
  static open(file: string, options?: StoreOptions): Store {
    if (typeof file !== 'string' || file.length === 0 || file.includes('\0')) throw invalidArgument('path', 'a non-empty string without NUL bytes', file);
    // Each option is read once, here: the rest of the store sees only this copy.
    const raw = readOptions(options, OPTION_KEYS, 'Store.open');
    const opts: StoreOptions = {
      readonly: optBoolean('readonly', raw.readonly),
      create: optBoolean('create', raw.create),
      batchBytes: optInteger('batchBytes', raw.batchBytes, 1),
      checkpointBytes: optInteger('checkpointBytes', raw.checkpointBytes, 1),
      maxBytes: optInteger('maxBytes', raw.maxBytes, 1),
      keep: optInteger('keep', raw.keep, 1),
      durability: optDurability(raw.durability),
    };
    if (opts.keep !== undefined && opts.readonly) throw invalidArgument('keep', 'unset for a read-only store', opts.keep);
    return new Store(file === ':memory:' ? file : path.resolve(file), opts);
  }

  /** @internal A snapshot argument: a positive integer id, or a Snapshot taken on this store. */
  _snapshotId(v: unknown): number {
    if (v instanceof Snapshot) {
      if (snapshotStore(v) !== this) {
        throw new SnapshotError('INVALID_ARGUMENT', `snapshot ${v.id} was taken on another store, not ${this.path}`, {
          hint: 'Pass a Snapshot of this store, or its integer id.',
        });
      }
      return v.id;
    }
    if (!Number.isSafeInteger(v) || (v as number) < 1) throw invalidArgument('snapshot', 'a Snapshot or a positive integer id', v);
    return v as number;
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
  list(options?: { region?: string; all?: boolean }): SnapshotInfo[] {
    this.assertOpen();
    const opts = readOptions(options, ['region', 'all'], 'store.list');
    return catalog.list(this.st, { region: optString('region', opts.region), all: optBoolean('all', opts.all) });
  }

  /**
   * The newest complete snapshot (of `region` when given), or null when there is none: what
   * a program restores at start-up.
   */
  latest(region?: string): SnapshotInfo | null {
    this.assertOpen();
    return catalog.latest(this.st, optString('region', region));
  }

  /** One snapshot; NOT_PERSISTED while it is still being saved, NOT_FOUND when it does not exist. */
  info(snapshot: number | Snapshot): SnapshotInfo {
    this.assertOpen();
    return catalog.info(this.st, this._snapshotId(snapshot));
  }

  /**
   * Bytes [offset, offset + length) of the region at a snapshot, without a region: zeros where
   * it has zeros, every chunk read checked like a restore (STORE_CORRUPT). A range beyond the
   * snapshot's region size is INVALID_ARGUMENT.
   */
  read(snapshot: number | Snapshot, offset: number, length: number): Buffer {
    this.assertOpen();
    return readRange(this, this._snapshotId(snapshot), offset, length);
  }

  /** Region names and sizes recorded in the store. */
  regionsInfo(): { name: string; size: number; snapshots: number }[] {
    this.assertOpen();
    return catalog.regionsInfo(this.st);
  }

  /**
   * Deletes a snapshot. Its chunks move to its children (unless they store their own), so
   * every later snapshot stays restorable. Runs on the store's writer thread (a file store)
   * and resolves when committed.
   */
  async delete(snapshot: number | Snapshot): Promise<void> {
    this.assertWritable();
    const id = this._snapshotId(snapshot);
    checkDeletable(this.st, id);
    await this.persister.run({ op: 'delete', id });
  }

  /**
   * Removes unreferenced data and, with `keep`, all but the newest `keep` complete snapshots
   * of each region (snapshots open regions stand on are kept). `keep: 0` deletes every
   * snapshot and needs `force: true`. Runs on the store's writer thread (a file store), so the
   * program keeps running; resolves with what was freed.
   */
  async gc(options?: { keep?: number; force?: boolean }): Promise<GcResult> {
    this.assertWritable();
    const raw = readOptions(options, ['keep', 'force'], 'store.gc');
    const keep = optInteger('keep', raw.keep, 0);
    if (keep === 0 && optBoolean('force', raw.force) !== true) {
      throw new SnapshotError('INVALID_ARGUMENT', 'gc({ keep: 0 }) would delete every snapshot', {
        hint: 'Pass { keep: 0, force: true } to delete them all, or keep at least 1.',
      });
    }
    return (await this.persister.run({ op: 'gc', keep, inUse: gcInUse(this.st), compact: true }))!;
  }

  /**
   * Checks checksums, lengths and chain completeness of one snapshot (and what it stands on)
   * or of the whole store. Never throws for damage it finds: it reports it.
   */
  verify(snapshot?: number | Snapshot, options?: { onProgress?: (chunksChecked: number, chunksTotal: number) => void }): VerifyResult {
    this.assertOpen();
    const id = snapshot === undefined ? undefined : this._snapshotId(snapshot);
    const raw = readOptions(options, ['onProgress'], 'store.verify');
    return verify(this.st, id, { onProgress: optFunction<(chunksChecked: number, chunksTotal: number) => void>('onProgress', raw.onProgress) });
  }

  /** Statistics about the store file. */
  stats(): { snapshots: number; blobs: number; storedBytes: number; fileBytes: number; heldInMemory: number } {
    this.assertOpen();
    return catalog.storeStats(this.st);
  }

  /**
   * Closes the store's regions, waits until every snapshot taken so far is durable and every
   * delete/gc has run, then closes. It blocks the calling thread for that long (typically tens
   * of milliseconds for a file store; await the `persisted` promises first to wait without
   * blocking). Idempotent.
   */
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
  _track(meta: SnapshotMeta, regionName: string, chunks: Uint32Array): Settlement<SnapshotInfo> {
    return this.persister.track(meta, regionName, chunks);
  }

  /** @internal A region closed during its lazy restore: its `ready` rejects with CLOSED. */
  _cancelFill(source: number): void {
    this.restorer.cancel(source);
  }

  /** @internal The page source for restoring snapshot `id` into a new region (see store/restore.ts). */
  _pageSource(id: number): PageSource {
    this.assertOpen();
    return this.restorer.pageSource(this, id);
  }

  // In-place restores (region.restore) and images (image.ts) read chunks at a snapshot here.

  /** @internal Snapshot ids from `id` back to the root of its history. */
  ancestors(id: number): number[] {
    this.assertOpen();
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
    this.assertOpen();
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

function optDurability(v: unknown): Durability | undefined {
  if (v !== undefined && v !== 'power' && v !== 'process') throw invalidArgument('durability', "'power' or 'process'", v);
  return v;
}
