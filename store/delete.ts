// Deleting snapshots and collecting garbage. A deleted snapshot's chunks move to its children
// (unless they store their own), so every later snapshot stays restorable.
import { SnapshotError, invalidArgument } from '../core/errors';
import { CHUNK_SIZE } from '../core/native';
import { info } from './catalog';
import { sqliteError } from './open';
import { checkId, type StoreState } from './state';
import { dropWorkingSet } from './working-set';
import { chunkTag, snapshotTag } from './tags';
import type { GcResult } from './types';

export type { GcResult } from './types';

/**
 * Deletes a snapshot. Its chunks move to its children (unless they store their own), so
 * every later snapshot stays restorable.
 */
export function deleteSnapshot(st: StoreState, id: number): void {
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
  try {
    st.db.transaction(() => deleteInTransaction(st, id)).immediate();
  } catch (err) {
    throw sqliteError(err, st.path);
  }
}

function deleteInTransaction(st: StoreState, id: number): number[] {
  const snap = st.db.prepare('SELECT parent_id FROM snapshots WHERE id = ?').get(id) as { parent_id: number | null };
  const children = (st.db.prepare('SELECT id FROM snapshots WHERE parent_id = ?').all(id) as { id: number }[]).map((r) => r.id);
  const rowsOfDeleted = st.db.prepare('SELECT chunk, blob_id, hash FROM chunks WHERE snapshot_id = ?').safeIntegers(true).all(id) as
    { chunk: bigint; blob_id: bigint | null; hash: bigint | null }[];
  const insert = st.db.prepare('INSERT OR IGNORE INTO chunks (snapshot_id, chunk, blob_id, hash, tag) VALUES (?, ?, ?, ?, ?)');
  const merge = {
    run: (child: number) => {
      for (const r of rowsOfDeleted) insert.run(child, r.chunk, r.blob_id, r.hash, chunkTag(child, r.chunk, r.hash));
    },
  };
  // The children now store those chunks themselves: their counts say so (verify checks them).
  const recount = st.db.prepare(
    `UPDATE snapshots SET chunks = t.n, raw_bytes = t.n * ${CHUNK_SIZE}, stored_bytes = t.stored
     FROM (SELECT count(*) AS n, coalesce(sum(b.size), 0) AS stored FROM chunks c LEFT JOIN blobs b ON b.id = c.blob_id WHERE c.snapshot_id = ?) AS t
     WHERE snapshots.id = ?`,
  );
  for (const child of children) {
    merge.run(child);
    recount.run(child, child);
    st.rowCache.delete(child);
  }
  // A child of a full snapshot becomes full itself: absent chunks now mean zero there too.
  const retag = st.db.prepare('UPDATE snapshots SET parent_id = ?, full = ?, tag = ? WHERE id = ?');
  for (const c of st.db.prepare('SELECT id, region_id, region_size, full FROM snapshots WHERE parent_id = ?').all(id) as { id: number; region_id: number; region_size: number; full: number }[]) {
    const full = snap.parent_id === null ? 1 : c.full;
    retag.run(snap.parent_id, full, snapshotTag(c.id, c.region_id, snap.parent_id, c.region_size, full), c.id);
  }
  const blobs = (st.db.prepare('SELECT DISTINCT blob_id FROM chunks WHERE snapshot_id = ? AND blob_id IS NOT NULL').all(id) as { blob_id: number }[]).map((r) => r.blob_id);
  st.db.prepare('DELETE FROM chunks WHERE snapshot_id = ?').run(id);
  st.db.prepare('DELETE FROM snapshots WHERE id = ?').run(id);
  dropWorkingSet(st, id);
  const dropBlob = st.db.prepare('DELETE FROM blobs WHERE id = ? AND NOT EXISTS (SELECT 1 FROM chunks WHERE blob_id = ?)');
  for (const b of blobs) dropBlob.run(b, b);
  st.rowCache.delete(id);
  return children;
}

/**
 * Removes unreferenced data and, with `keep`, all but the newest `keep` complete snapshots
 * of each region (snapshots open regions stand on are kept).
 */
export function gc(st: StoreState, opts: { keep?: number } = {}): GcResult {
  if (opts.keep !== undefined && (!Number.isInteger(opts.keep) || opts.keep < 0)) throw invalidArgument('keep', 'a non-negative integer', opts.keep);
  const before = st.db.prepare('SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM blobs').get() as { n: number; bytes: number };
  const deleted: number[] = [];
  const inUse = new Set<number>();
  for (const r of st.regions.values()) if (r.head !== null) inUse.add(r.head);
  for (const f of st.inflight.values()) {
    inUse.add(f.meta.id);
    if (f.meta.parent !== null) inUse.add(f.meta.parent);
  }
  try {
    st.db.transaction(() => {
      if (opts.keep !== undefined) {
        const regions = st.db.prepare('SELECT id FROM regions').all() as { id: number }[];
        for (const { id: regionId } of regions) {
          const ids = (st.db.prepare('SELECT id FROM snapshots WHERE region_id = ? AND complete = 1 ORDER BY id DESC').all(regionId) as { id: number }[]).map((r) => r.id);
          for (const id of ids.slice(opts.keep).reverse()) {
            if (inUse.has(id)) continue;
            deleteInTransaction(st, id);
            deleted.push(id);
          }
        }
      }
      st.db.exec('DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM chunks WHERE chunks.blob_id = blobs.id)');
    }).immediate();
    st.db.pragma('incremental_vacuum');
    if (!st.memory) st.db.pragma('wal_checkpoint(TRUNCATE)');
  } catch (err) {
    throw sqliteError(err, st.path);
  }
  const after = st.db.prepare('SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM blobs').get() as { n: number; bytes: number };
  return { deletedSnapshots: deleted, freedBlobs: before.n - after.n, freedBytes: before.bytes - after.bytes };
}
