// Applies what the capture sink hands over to the database: one transaction per batch, and a
// snapshot is marked complete only in the transaction that commits its last chunk.
//
// Durability: connections run WAL with synchronous = NORMAL, where a commit reaches the WAL
// file but not stable storage. A transaction that completes a snapshot runs with
// synchronous = FULL instead, so SQLite fsyncs the WAL as part of that commit (after its last
// frame is written, before the commit returns) and `persisted` resolves only after that. The
// fsync covers every earlier frame too, so the batches in between need none.
import type { Database, Statement } from 'better-sqlite3';
import { native, type NativeBatch } from '../core/native';
import { CODEC } from './schema';
import { chunkTag, snapshotTag } from './tags';

export interface SnapshotMeta {
  id: number;
  regionId: number;
  parent: number | null;
  label: string | null;
  createdAt: number;
  regionSize: number;
  full: boolean;
}

export interface WriteResult {
  persisted: number[];
  failed: { id: number; error: string }[];
  bytes: number;
}

export class StoreWriter {
  private readonly insertSnapshot: Statement;
  private readonly findBlob: Statement;
  private readonly insertBlob: Statement;
  private readonly upsertChunk: Statement;
  private readonly completeSnapshot: Statement;
  private readonly dropChunks: Statement;
  private readonly dropSnapshot: Statement;
  private readonly dropOrphanBlobs: Statement;
  /** Bytes each open snapshot added to the store after dedup. */
  private readonly uniqueBytes = new Map<number, number>();
  // BEGIN IMMEDIATE: the batch takes the write lock before its first read, so a commit by the
  // main connection (delete, gc) in between can never fail it with SQLITE_BUSY_SNAPSHOT.
  private readonly applyTx: { immediate(batch: NativeBatch): WriteResult };

  /**
   * `sink`: told which chunks each transaction committed, so it can drop its copies.
   * `syncCompletions`: fsync the WAL in each commit that completes a snapshot (durability 'power').
   */
  constructor(
    private readonly db: Database,
    private readonly sink: number,
    private readonly syncCompletions = false,
  ) {
    this.insertSnapshot = db.prepare(
      `INSERT OR REPLACE INTO snapshots (id, region_id, parent_id, label, created_at, region_size, full, complete, tag)
       VALUES (@id, @regionId, @parent, @label, @createdAt, @regionSize, @full, 0, @tag)`,
    );
    this.findBlob = db.prepare('SELECT id, data FROM blobs WHERE hash = ? AND codec = ? AND raw_len = ?');
    this.insertBlob = db.prepare('INSERT INTO blobs (hash, codec, raw_len, size, data) VALUES (?, ?, ?, ?, ?)');
    this.upsertChunk = db.prepare(
      `INSERT INTO chunks (snapshot_id, chunk, blob_id, hash, tag) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (snapshot_id, chunk) DO UPDATE SET blob_id = excluded.blob_id, hash = excluded.hash, tag = excluded.tag`,
    );
    this.completeSnapshot = db.prepare(
      'UPDATE snapshots SET complete = 1, chunks = ?, raw_bytes = ?, stored_bytes = ?, unique_bytes = ? WHERE id = ?',
    );
    this.dropChunks = db.prepare('DELETE FROM chunks WHERE snapshot_id = ?');
    this.dropSnapshot = db.prepare('DELETE FROM snapshots WHERE id = ?');
    this.dropOrphanBlobs = db.prepare(
      'DELETE FROM blobs WHERE id > ? AND NOT EXISTS (SELECT 1 FROM chunks WHERE chunks.blob_id = blobs.id)',
    );
    this.applyTx = db.transaction((batch: NativeBatch) => this.applyInTransaction(batch));
  }

  apply(batch: NativeBatch): WriteResult {
    const sync = this.syncCompletions && batch.ends.some((e) => !e.failed);
    let result: WriteResult;
    if (sync) this.db.pragma('synchronous = FULL');
    try {
      result = this.applyTx.immediate(batch);
    } finally {
      if (sync) this.db.pragma('synchronous = NORMAL');
    }
    native().sink_committed(this.sink, batch.chunks.snap, batch.chunks.chunk);
    return result;
  }

  private applyInTransaction(batch: NativeBatch): WriteResult {
    for (const b of batch.begins) {
      const meta = JSON.parse(b.meta) as SnapshotMeta;
      // The region may decide at the last moment that the snapshot must stand alone.
      const full = meta.full || b.full;
      const parent = full ? null : meta.parent;
      this.insertSnapshot.run({ ...meta, parent, full: full ? 1 : 0, tag: snapshotTag(meta.id, meta.regionId, parent, meta.regionSize, full) });
      this.uniqueBytes.set(meta.id, 0);
    }
    const c = batch.chunks;
    let bytes = 0;
    for (let i = 0; i < c.chunk.length; i++) {
      const snap = c.snap[i]!;
      const codec = c.codec[i]!;
      let blobId: number | bigint | null = null;
      if (codec !== CODEC.zero) {
        const data = c.data.subarray(c.offset[i]!, c.offset[i + 1]!);
        const hash = c.hash[i]!;
        for (const row of this.findBlob.all(hash, codec, c.rawLen[i]!) as { id: number; data: Buffer }[]) {
          if (row.data.equals(data)) {
            blobId = row.id;
            break;
          }
        }
        if (blobId === null) {
          blobId = this.insertBlob.run(hash, codec, c.rawLen[i]!, data.length, data).lastInsertRowid;
          this.uniqueBytes.set(snap, (this.uniqueBytes.get(snap) ?? 0) + data.length);
        }
        bytes += data.length;
      }
      const hash = codec === CODEC.zero ? null : c.hash[i]!;
      this.upsertChunk.run(snap, c.chunk[i]!, blobId, hash, chunkTag(snap, c.chunk[i]!, hash));
    }
    const result: WriteResult = { persisted: [], failed: [], bytes };
    for (const e of batch.ends) {
      if (e.failed) {
        this.dropChunks.run(e.snap);
        this.dropSnapshot.run(e.snap);
        result.failed.push({ id: e.snap, error: e.error });
      } else {
        this.completeSnapshot.run(e.chunks, e.rawBytes, e.storedBytes, this.uniqueBytes.get(e.snap) ?? 0, e.snap);
        result.persisted.push(e.snap);
      }
      this.uniqueBytes.delete(e.snap);
    }
    if (result.failed.length) this.dropOrphanBlobs.run(0);
    return result;
  }
}

export function batchIsEmpty(b: NativeBatch): boolean {
  return b.begins.length === 0 && b.chunks.chunk.length === 0 && b.ends.length === 0;
}
