// Checking a store: checksums, lengths, row tags and chain completeness, reported rather than thrown.
import { SnapshotError } from '../core/errors';
import { CHUNK_SIZE, native } from '../core/native';
import { ancestors, selectSnapshots, type SnapshotRow } from './catalog';
import { sqliteError } from './open';
import { CODEC } from './schema';
import { checkId, type StoreState } from './state';
import { chunkTag, snapshotTag } from './tags';
import type { VerifyProblem, VerifyResult } from './types';

export type { VerifyProblem, VerifyResult } from './types';

/**
 * Checks checksums, lengths and chain completeness of one snapshot (and what it stands on)
 * or of the whole store. Never throws for damage it finds: it reports it.
 */
export function verify(st: StoreState, id?: number, opts: { onProgress?: (chunksChecked: number, chunksTotal: number) => void } = {}): VerifyResult {
  const problems: VerifyProblem[] = [];
  let snapshots: SnapshotRow[];
  try {
    if (id === undefined) {
      for (const r of st.db.pragma('quick_check') as { quick_check: string }[]) {
        if (r.quick_check !== 'ok') problems.push({ code: 'STORE_CORRUPT', message: `SQLite: ${r.quick_check}` });
      }
      snapshots = selectSnapshots(st, 'WHERE s.complete = 1').all() as SnapshotRow[];
      // Rows nothing can reach: chunks of a snapshot that does not exist, snapshots of a
      // region that does not exist (a committed transaction never leaves either).
      for (const r of st.db.prepare(
        'SELECT snapshot_id, count(*) AS n FROM chunks WHERE snapshot_id NOT IN (SELECT id FROM snapshots) GROUP BY snapshot_id',
      ).all() as { snapshot_id: number; n: number }[]) {
        problems.push({ code: 'STORE_CORRUPT', snapshot: r.snapshot_id, message: `${r.n} chunk rows belong to snapshot ${r.snapshot_id}, which does not exist` });
      }
      for (const r of st.db.prepare('SELECT id, region_id FROM snapshots WHERE region_id NOT IN (SELECT id FROM regions)').all() as { id: number; region_id: number }[]) {
        problems.push({ code: 'STORE_CORRUPT', snapshot: r.id, message: `snapshot ${r.id} belongs to region ${r.region_id}, which does not exist` });
      }
    } else {
      checkId(id);
      snapshots = [];
      for (const a of ancestors(st, id)) {
        const row = selectSnapshots(st, 'WHERE s.id = ?').get(a) as SnapshotRow | undefined;
        if (row) snapshots.push(row);
      }
      if (!snapshots.length) throw new SnapshotError('NOT_FOUND', `no snapshot ${id} in ${st.path}`);
    }
    const byId = new Map(snapshots.map((s) => [s.id, s]));
    const parentOf = st.db.prepare('SELECT id, complete FROM snapshots WHERE id = ?');
    const chunkRows = st.db.prepare(
      `SELECT c.chunk, c.blob_id, c.hash AS row_hash, c.tag, b.id AS found, b.hash, b.codec, b.raw_len, b.size, b.data
       FROM chunks c LEFT JOIN blobs b ON b.id = c.blob_id WHERE c.snapshot_id = ?`,
    ).safeIntegers(true);
    const snapTagOf = st.db.prepare('SELECT region_id, parent_id, region_size, full, tag FROM snapshots WHERE id = ?').safeIntegers(true);
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
    const e = sqliteError(err, st.path);
    problems.push({ code: 'STORE_CORRUPT', message: e.message });
    return { ok: false, snapshots: 0, chunks: 0, problems };
  }
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
