// Chunk sources for an in-place restore (and for reading an image): where each chunk's version
// at a snapshot comes from — checked bytes from SQLite, or the sink for a snapshot this
// process has not finished writing.
import type Database from 'better-sqlite3';
import { SnapshotError } from '../core/errors';
import { CHUNK_SIZE, native, type NativeRollbackSources } from '../core/native';
import { ancestors, checkChunkRow, chunkSet, rows as chunkRows } from './catalog';
import { CORRUPT_HINT, type StoreState } from './state';

const chunkRowOf = new WeakMap<StoreState, Database.Statement>();

/** Where each of `chunks` comes from at snapshot `target`. */
export function rollbackSources(st: StoreState, target: number, chunks: Iterable<number>): NativeRollbackSources {
  const wanted = [...chunks].sort((x, y) => x - y);
  const chain = ancestors(st, target);
  const owner = new Map<number, number>();  // chunk -> snapshot storing its version at target
  let left = wanted.length;
  for (const s of chain) {
    if (left === 0) break;
    const set = chunkSet(st, s);
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
  const blobOf = st.db.prepare('SELECT codec, raw_len, data FROM blobs WHERE id = ?').safeIntegers(true);
  for (let i = 0; i < n; i++) {
    const s = owner.get(wanted[i]!);
    if (s === undefined) continue;  // never stored along the chain: zero
    let blobId: number;
    if (st.inflight.has(s)) {
      // The writer has committed part of it: those chunks are read from here, the rest
      // from the sink (the caller pins it, so none it still holds is dropped meanwhile).
      const row = committedChunk(st, s, wanted[i]!);
      if (!row) {
        src.sinkSnap[i] = s;
        continue;
      }
      blobId = row.blob;
      src.hash[i] = row.hash;
    } else {
      const rows = chunkRows(st, s);
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
function committedChunk(st: StoreState, id: number, chunk: number): { blob: number; hash: bigint } | undefined {
  let stmt = chunkRowOf.get(st);
  if (!stmt) {
    stmt = st.db.prepare('SELECT blob_id, hash, tag FROM chunks WHERE snapshot_id = ? AND chunk = ?').safeIntegers(true);
    chunkRowOf.set(st, stmt);
  }
  const row = stmt.get(id, chunk) as { blob_id: bigint | null; hash: bigint | null; tag: bigint | null } | undefined;
  if (!row) return undefined;
  checkChunkRow(id, chunk, row.blob_id, row.hash, row.tag);
  return { blob: row.blob_id === null ? 0 : Number(row.blob_id), hash: row.hash ?? 0n };
}

/** Runs `fn` with the sink pinned: chunks it holds now stay until `fn` returns. */
export function withSinkPinned<T>(st: StoreState, fn: () => T): T {
  const addon = native();
  addon.sink_pin(st.sink, true);
  try {
    return fn();
  } finally {
    addon.sink_pin(st.sink, false);
  }
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
