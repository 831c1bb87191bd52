// Deleting snapshots and collecting garbage. A deleted snapshot's chunks move to its children
// (unless they store their own), so every later snapshot stays restorable.
//
// The main thread checks what only it knows (snapshots in flight, the snapshots open regions
// stand on) and hands the work to the store's writer (runJob): the writer thread for a file
// store, so a large delete or gc never stalls the program; the main thread for ':memory:'.
import type Database from 'better-sqlite3';
import { SnapshotError } from '../core/errors';
import { CHUNK_SIZE } from '../core/native';
import { info } from './catalog';
import { sqliteError } from './open';
import { checkId, type StoreState } from './state';
import { dropWorkingSet } from './working-set';
import { chunkTag, snapshotTag } from './tags';
import type { GcResult } from './types';

export type { GcResult } from './types';

/** A delete or gc for the writer; `inUse`: snapshots gc must keep (region heads, in flight). */
export type StoreJob = { op: 'delete'; id: number } | { op: 'gc'; keep?: number; inUse: number[]; compact: boolean };

/** What runJob reports: a GcResult for gc, null for delete; or the error, as plain data. */
export type JobOutcome = { result: GcResult | null } | { error: { code: string; message: string; hint?: string } };

/** The checks a delete needs from the main thread: throws when `id` may not be deleted now. */
export function checkDeletable(st: StoreState, id: number): void {
  checkId(id);
  if (st.inflight.has(id)) {
    throw new SnapshotError('NOT_PERSISTED', `snapshot ${id} is still being saved`, { hint: 'Await snapshot.persisted before deleting it.' });
  }
  for (const f of st.inflight.values()) {
    if (f.meta.parent === id) {
      throw new SnapshotError('NOT_PERSISTED', `snapshot ${f.meta.id}, a child of ${id}, is still being saved`, {
        hint: `Await the persisted promise of snapshot ${f.meta.id} first.`,
      });
    }
  }
  for (const r of st.regions.values()) {
    if (r.head === id) {
      throw new SnapshotError('SNAPSHOT_IN_USE', `snapshot ${id} is what open region "${r.name}" last snapshotted or restored`, {
        hint: 'Take another snapshot of the region, or close it, before deleting this one.',
      });
    }
  }
  info(st, id);
}

/** Snapshots gc must keep now: those open regions stand on, and those in flight with their parents. */
export function gcInUse(st: StoreState): number[] {
  const inUse = new Set<number>();
  for (const r of st.regions.values()) if (r.head !== null) inUse.add(r.head);
  for (const f of st.inflight.values()) {
    inUse.add(f.meta.id);
    if (f.meta.parent !== null) inUse.add(f.meta.parent);
  }
  return [...inUse];
}

/** Runs a delete or gc on `db` (the writer's connection); never throws. */
export function runJob(db: Database.Database, file: string, memory: boolean, job: StoreJob): JobOutcome {
  try {
    if (job.op === 'delete') {
      db.transaction(() => deleteInTransaction(db, job.id)).immediate();
      return { result: null };
    }
    return { result: gc(db, memory, job.keep, new Set(job.inUse), job.compact) };
  } catch (err) {
    const e = sqliteError(err, file);
    return { error: { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) } };
  }
}

function deleteInTransaction(db: Database.Database, id: number): number[] {
  const snap = db.prepare('SELECT parent_id FROM snapshots WHERE id = ?').get(id) as { parent_id: number | null };
  const children = (db.prepare('SELECT id FROM snapshots WHERE parent_id = ?').all(id) as { id: number }[]).map((r) => r.id);
  const rowsOfDeleted = db.prepare('SELECT chunk, blob_id, hash FROM chunks WHERE snapshot_id = ?').safeIntegers(true).all(id) as
    { chunk: bigint; blob_id: bigint | null; hash: bigint | null }[];
  const insert = db.prepare('INSERT OR IGNORE INTO chunks (snapshot_id, chunk, blob_id, hash, tag) VALUES (?, ?, ?, ?, ?)');
  const merge = {
    run: (child: number) => {
      for (const r of rowsOfDeleted) insert.run(child, r.chunk, r.blob_id, r.hash, chunkTag(child, r.chunk, r.hash));
    },
  };
  // The children now store those chunks themselves: their counts say so (verify checks them).
  const recount = db.prepare(
    `UPDATE snapshots SET chunks = t.n, raw_bytes = t.n * ${CHUNK_SIZE}, stored_bytes = t.stored
     FROM (SELECT count(*) AS n, coalesce(sum(b.size), 0) AS stored FROM chunks c LEFT JOIN blobs b ON b.id = c.blob_id WHERE c.snapshot_id = ?) AS t
     WHERE snapshots.id = ?`,
  );
  for (const child of children) {
    merge.run(child);
    recount.run(child, child);
  }
  // A child of a full snapshot becomes full itself: absent chunks now mean zero there too.
  const retag = db.prepare('UPDATE snapshots SET parent_id = ?, full = ?, tag = ? WHERE id = ?');
  for (const c of db.prepare('SELECT id, region_id, region_size, full FROM snapshots WHERE parent_id = ?').all(id) as { id: number; region_id: number; region_size: number; full: number }[]) {
    const full = snap.parent_id === null ? 1 : c.full;
    retag.run(snap.parent_id, full, snapshotTag(c.id, c.region_id, snap.parent_id, c.region_size, full), c.id);
  }
  const blobs = (db.prepare('SELECT DISTINCT blob_id FROM chunks WHERE snapshot_id = ? AND blob_id IS NOT NULL').all(id) as { blob_id: number }[]).map((r) => r.blob_id);
  db.prepare('DELETE FROM chunks WHERE snapshot_id = ?').run(id);
  db.prepare('DELETE FROM snapshots WHERE id = ?').run(id);
  dropWorkingSet(db, id);
  const dropBlob = db.prepare('DELETE FROM blobs WHERE id = ? AND NOT EXISTS (SELECT 1 FROM chunks WHERE blob_id = ?)');
  for (const b of blobs) dropBlob.run(b, b);
  return children;
}

/**
 * Removes unreferenced data and, with `keep`, all but the newest `keep` complete snapshots
 * of each region (snapshots open regions stand on are kept).
 */
function gc(db: Database.Database, memory: boolean, keep: number | undefined, inUse: Set<number>, compact: boolean): GcResult {
  const before = db.prepare('SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM blobs').get() as { n: number; bytes: number };
  const deleted: number[] = [];
  db.transaction(() => {
    if (keep !== undefined) {
      const regions = db.prepare('SELECT id FROM regions').all() as { id: number }[];
      for (const { id: regionId } of regions) {
        const ids = (db.prepare('SELECT id FROM snapshots WHERE region_id = ? AND complete = 1 ORDER BY id DESC').all(regionId) as { id: number }[]).map((r) => r.id);
        for (const id of ids.slice(keep).reverse()) {
          if (inUse.has(id)) continue;
          deleteInTransaction(db, id);
          deleted.push(id);
        }
      }
    }
    db.exec('DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM chunks WHERE chunks.blob_id = blobs.id)');
  }).immediate();
  db.pragma('incremental_vacuum');
  if (!memory && compact) db.pragma('wal_checkpoint(TRUNCATE)');
  const after = db.prepare('SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM blobs').get() as { n: number; bytes: number };
  return { deletedSnapshots: deleted, freedBlobs: before.n - after.n, freedBytes: before.bytes - after.bytes };
}
