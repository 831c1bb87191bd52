// The catalog: what snapshots and regions the store holds, and the queries over it (list,
// info, a snapshot's history and own chunk rows, the chunks that differ between two snapshots).
import type Database from 'better-sqlite3';
import { SnapshotError } from '../core/errors';
import { CHUNK_SIZE, native } from '../core/native';
import { sqliteError } from './open';
import { CORRUPT_HINT, checkId, type ChunkRows, type StoreState } from './state';
import { chunkTag, snapshotTag } from './tags';
import type { SnapshotInfo } from './types';

export type { SnapshotInfo } from './types';

export interface SnapshotRow {
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

export function rowToInfo(r: SnapshotRow): SnapshotInfo {
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

export function selectSnapshots(st: StoreState, where: string, order = 'ORDER BY s.id'): Database.Statement {
  return st.db.prepare(
    `SELECT s.id, r.name AS region, s.parent_id, s.label, s.created_at, s.complete, s.chunks, s.raw_bytes,
            s.stored_bytes, s.unique_bytes, s.region_size, s.full
     FROM snapshots s JOIN regions r ON r.id = s.region_id ${where} ${order}`,
  );
}

/** Snapshots in id order: committed ones, plus this process's in-flight ones with { all: true }. */
export function list(st: StoreState, opts: { region?: string; all?: boolean } = {}): SnapshotInfo[] {
  let infos: SnapshotInfo[];
  try {
    const rows = (opts.region === undefined
      ? selectSnapshots(st, opts.all ? '' : 'WHERE s.complete = 1').all()
      : selectSnapshots(st, `WHERE r.name = ? ${opts.all ? '' : 'AND s.complete = 1'}`).all(opts.region)) as SnapshotRow[];
    infos = rows.map(rowToInfo);
  } catch (err) {
    throw sqliteError(err, st.path);
  }
  if (!opts.all) return infos;
  // Taken in this process, but not yet recorded by the writer.
  const listed = new Set(infos.map((i) => i.id));
  for (const f of st.inflight.values()) {
    if (listed.has(f.meta.id) || (opts.region !== undefined && f.regionName !== opts.region)) continue;
    infos.push({
      id: f.meta.id,
      region: f.regionName,
      parent: f.meta.parent,
      label: f.meta.label,
      createdAt: new Date(f.meta.createdAt),
      complete: false,
      pages: f.chunks.length * (CHUNK_SIZE / 4096),
      chunks: f.chunks.length,
      rawBytes: f.chunks.length * CHUNK_SIZE,
      storedBytes: 0,
      uniqueBytes: 0,
      regionSize: f.meta.regionSize,
      full: f.meta.full,
    });
  }
  return infos.sort((a, b) => a.id - b.id);
}

/** The newest complete snapshot (of `region` when given), or null. */
export function latest(st: StoreState, region?: string): SnapshotInfo | null {
  try {
    const row = (region === undefined
      ? selectSnapshots(st, 'WHERE s.complete = 1', 'ORDER BY s.id DESC LIMIT 1').get()
      : selectSnapshots(st, 'WHERE r.name = ? AND s.complete = 1', 'ORDER BY s.id DESC LIMIT 1').get(region)) as SnapshotRow | undefined;
    return row ? rowToInfo(row) : null;
  } catch (err) {
    throw sqliteError(err, st.path);
  }
}

/** One snapshot; NOT_FOUND when it does not exist or is not yet complete. */
export function info(st: StoreState, id: number): SnapshotInfo {
  checkId(id);
  const row = selectSnapshots(st, 'WHERE s.id = ?').get(id) as SnapshotRow | undefined;
  if (!row || !row.complete) {
    if (st.inflight.has(id)) {
      throw new SnapshotError('NOT_PERSISTED', `snapshot ${id} is not persisted yet`, { hint: 'Await snapshot.persisted first.' });
    }
    throw new SnapshotError('NOT_FOUND', `no snapshot ${id} in ${st.path}`, { hint: 'List the snapshots with store.list() or `usnap list`.' });
  }
  return rowToInfo(row);
}

/** Region names and sizes recorded in the store. */
export function regionsInfo(st: StoreState): { name: string; size: number; snapshots: number }[] {
  return st.db
    .prepare(
      `SELECT r.name, r.size, (SELECT count(*) FROM snapshots s WHERE s.region_id = r.id AND s.complete = 1) AS snapshots
       FROM regions r ORDER BY r.name`,
    )
    .all() as { name: string; size: number; snapshots: number }[];
}

/** Snapshot ids from `id` back to the root of its history. */
export function ancestors(st: StoreState, id: number): number[] {
  const chain: number[] = [];
  const rowOf = st.db.prepare('SELECT region_id, parent_id, region_size, full, tag FROM snapshots WHERE id = ?').safeIntegers(true);
  let cur: number | null = id;
  while (cur !== null) {
    if (chain.length > 1_000_000) throw new SnapshotError('STORE_CORRUPT', `snapshot history of ${id} loops`, { hint: CORRUPT_HINT });
    chain.push(cur);
    const f = st.inflight.get(cur);
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

/** Region name and size a snapshot was taken of; NOT_FOUND if unknown. */
export function snapshotRegion(st: StoreState, id: number): { name: string; size: number; full: boolean } {
  const f = st.inflight.get(id);
  if (f) return { name: f.regionName, size: f.meta.regionSize, full: f.meta.full };
  const row = st.db.prepare('SELECT r.name, s.region_size, s.complete, s.full FROM snapshots s JOIN regions r ON r.id = s.region_id WHERE s.id = ?').get(id) as
    | { name: string; region_size: number; complete: number; full: number }
    | undefined;
  if (!row || !row.complete) throw new SnapshotError('NOT_FOUND', `no snapshot ${id} in ${st.path}`, { hint: 'List the snapshots with store.list() or `usnap list`.' });
  return { name: row.name, size: row.region_size, full: row.full === 1 };
}

/** Whether any snapshot in `id`'s history is still only in memory. */
export function hasUnpersistedHistory(st: StoreState, id: number): boolean {
  return ancestors(st, id).some((a) => st.inflight.has(a));
}

/** The chunks snapshot `id` itself stores (sorted). */
export function chunkSet(st: StoreState, id: number): Uint32Array {
  const f = st.inflight.get(id);
  return f ? f.chunks : rows(st, id).chunks;
}

/** Snapshot `id`'s chunk rows, each checked against its tag, and their number against the snapshot's. */
export function rows(st: StoreState, id: number): ChunkRows {
  let r = st.rowCache.get(id);
  if (r) return r;
  const raw = st.db.prepare('SELECT chunk, blob_id, hash, tag FROM chunks WHERE snapshot_id = ? ORDER BY chunk').safeIntegers(true).raw().all(id) as
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
  const recorded = st.db.prepare('SELECT chunks, complete FROM snapshots WHERE id = ?').get(id) as { chunks: number; complete: number } | undefined;
  if (recorded?.complete && recorded.chunks !== n) {
    throw new SnapshotError('STORE_CORRUPT', `snapshot ${id} records ${recorded.chunks} chunks but stores ${n}`, { hint: CORRUPT_HINT });
  }
  if (st.rowCache.size > 256) st.rowCache.clear();
  st.rowCache.set(id, r);
  return r;
}

/** Chunks whose contents may differ between snapshots `a` and `b` (null: zero memory). */
export function changedBetween(st: StoreState, a: number | null, b: number): Set<number> {
  const chainA = a === null ? [] : ancestors(st, a);
  const chainB = ancestors(st, b);
  const inA = new Set(chainA);
  const common = chainB.find((x) => inA.has(x));
  const changed = new Set<number>();
  for (const chain of [chainA, chainB]) {
    for (const s of chain) {
      if (s === common) break;
      for (const c of chunkSet(st, s)) changed.add(c);
    }
  }
  return changed;
}

/** The chunk rows snapshot `id` itself stores (blob null: a zero chunk). */
export function blobIds(st: StoreState, id: number): { chunk: number; blob: number | null }[] {
  const r = rows(st, id);
  return Array.from(r.chunks, (chunk, i) => ({ chunk, blob: r.blob[i] === 0 ? null : r.blob[i]! }));
}

/** A stored blob, or undefined. */
export function readBlob(st: StoreState, id: number): { hash: bigint; codec: number; rawLen: number; data: Buffer } | undefined {
  const r = st.db.prepare('SELECT hash, codec, raw_len, data FROM blobs WHERE id = ?').safeIntegers(true).get(id) as
    | { hash: bigint; codec: bigint; raw_len: bigint; data: Buffer }
    | undefined;
  return r && { hash: r.hash, codec: Number(r.codec), rawLen: Number(r.raw_len), data: r.data };
}

/** Statistics about the store file. */
export function storeStats(st: StoreState): { snapshots: number; blobs: number; storedBytes: number; fileBytes: number; heldInMemory: number } {
  const s = st.db.prepare('SELECT (SELECT count(*) FROM snapshots WHERE complete = 1) AS snapshots, count(*) AS blobs, coalesce(sum(size), 0) AS bytes FROM blobs').get() as {
    snapshots: number; blobs: number; bytes: number;
  };
  const pageCount = st.db.pragma('page_count', { simple: true }) as number;
  const pageSize = st.db.pragma('page_size', { simple: true }) as number;
  return { snapshots: s.snapshots, blobs: s.blobs, storedBytes: s.bytes, fileBytes: pageCount * pageSize, heldInMemory: native().sink_stats(st.sink).heldBytes };
}

/** Throws STORE_CORRUPT unless chunk row (snapshot, chunk) carries the tag its fields imply. */
export function checkChunkRow(id: number, chunk: bigint | number, blob: bigint | null, hash: bigint | null, tag: bigint | null): void {
  if (tag !== chunkTag(id, chunk, hash) || (blob === null) !== (hash === null) || (blob !== null && blob <= 0n)) {
    throw new SnapshotError('STORE_CORRUPT', `snapshot ${id} chunk ${chunk}: the row was altered (its tag does not match)`, { hint: CORRUPT_HINT });
  }
}

/**
 * A chunk row outside its region (a damaged store) would leave the chunk it belonged to to an
 * older snapshot or to zero: wrong bytes. Refuse such a history before touching memory.
 */
export function checkChunkRanges(st: StoreState, id: number, size: number): void {
  const n = Math.ceil(size / CHUNK_SIZE);
  for (const a of ancestors(st, id)) {
    for (const c of chunkSet(st, a)) {
      if (c >= n) {
        throw new SnapshotError('STORE_CORRUPT', `snapshot ${a} (in the history of ${id}) has chunk ${c} outside its ${n}-chunk region`, {
          hint: 'The store is damaged; run `usnap verify <store>` to see which snapshots are affected.',
        });
      }
    }
  }
}
