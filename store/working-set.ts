// The working set a lazy restore of a snapshot touched first (schema 3, table working_sets):
// chunk indices in first-touch order, uint32 LE. A hint for the next restore's prefetch, never
// data: a damaged or missing one only changes the order chunks come in.
import type Database from 'better-sqlite3';
import { hasWorkingSets } from './schema';
import type { StoreState } from './state';

/** Chunks a working set keeps at most (16 KiB of ids; 256 MiB of memory), as the native page source records. */
export const WORKING_SET_MAX = 4096;

export function readWorkingSet(st: StoreState, id: number): Uint32Array | null {
  let row: { chunks: unknown } | undefined;
  try {
    if (!hasWorkingSets(st.db)) return null;  // a version-2 store opened read-only
    row = st.db.prepare('SELECT chunks FROM working_sets WHERE snapshot_id = ?').get(id) as { chunks: unknown } | undefined;
  } catch {
    return null;  // a damaged table costs the hint, never the restore
  }
  if (!row || !Buffer.isBuffer(row.chunks) || row.chunks.length % 4 !== 0 || row.chunks.length / 4 > WORKING_SET_MAX) return null;
  const out = new Uint32Array(row.chunks.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = row.chunks.readUInt32LE(i * 4);
  return out.length ? out : null;
}

/**
 * Keeps `chunks` as snapshot `id`'s working set. Best effort: a read-only handle, a snapshot
 * deleted meanwhile or a busy store leave the previous one (a later restore records again).
 */
export function recordWorkingSet(st: StoreState, id: number, chunks: Uint32Array): boolean {
  if (st.readonly) return false;
  const bytes = Buffer.alloc(chunks.length * 4);
  for (let i = 0; i < chunks.length; i++) bytes.writeUInt32LE(chunks[i]!, i * 4);
  try {
    if (!hasWorkingSets(st.db)) return false;
    const r = st.db
      .prepare('INSERT OR REPLACE INTO working_sets (snapshot_id, chunks, recorded_at) SELECT id, ?, ? FROM snapshots WHERE id = ? AND complete = 1')
      .run(bytes, Date.now(), id);
    return r.changes > 0;
  } catch {
    return false;
  }
}

/** In a delete's transaction: the snapshot's working set goes with it. */
export function dropWorkingSet(db: Database.Database, id: number): void {
  if (hasWorkingSets(db)) db.prepare('DELETE FROM working_sets WHERE snapshot_id = ?').run(id);
}
