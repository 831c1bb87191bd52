// Reading a snapshot's full region image straight from the store, without userfaultfd:
// which blob each chunk resolves to at a snapshot, the decoded chunks in order, and the
// chunks whose contents differ between two snapshots. Used by the CLI (restore -o, diff).
import { SnapshotError, fromNative, invalidArgument } from '../core/errors';
import { CHUNK_SIZE, native } from '../core/native';
import type { Store } from './store';

/** Where every chunk of a region comes from at one snapshot. */
export interface ChunkMap {
  snapshot: number;
  region: string;
  regionSize: number;
  /** Chunks in the region (the last may be partial). */
  chunks: number;
  /** Per chunk: the snapshot that stores its version at `snapshot` (0: never stored, zero memory). */
  owner: Float64Array;
  /** Per chunk: the blob id holding its contents (0: the chunk is all zero). */
  blob: Float64Array;
}

/** Resolves every chunk of the region at snapshot `id`. NOT_FOUND if the snapshot does not exist. */
export function chunkMap(store: Store, id: number): ChunkMap {
  const info = store.info(id);  // NOT_FOUND / NOT_PERSISTED / INVALID_ARGUMENT
  const chain = store.ancestors(id);  // checks each snapshot row's tag: region_size is then trusted
  const n = Math.ceil(info.regionSize / CHUNK_SIZE);
  const owner = new Float64Array(n);
  const blob = new Float64Array(n);
  let left = n;
  for (const s of chain) {
    if (left === 0) break;
    try {
      store.info(s);
    } catch {
      throw new SnapshotError('STORE_CORRUPT', `snapshot ${id} stands on snapshot ${s}, which is missing`, {
        hint: 'Run `usnap verify <store>` to see which snapshots are affected.',
      });
    }
    for (const r of store._blobIds(s)) {
      const c = r.chunk;
      if (!Number.isInteger(c) || c < 0 || c >= n) {
        throw new SnapshotError('STORE_CORRUPT', `snapshot ${s} has chunk ${String(c)} outside its ${n}-chunk region`, {
          hint: 'Run `usnap verify <store>` to see which snapshots are affected.',
        });
      }
      if (owner[c] !== 0) continue;
      if (r.blob !== null && !(Number.isInteger(r.blob) && r.blob > 0)) {
        // 0 would read as "all zero" below: a damaged reference must not pass for zeros.
        throw new SnapshotError('STORE_CORRUPT', `snapshot ${s} chunk ${c}: invalid blob id ${String(r.blob)}`, {
          hint: 'Run `usnap verify <store>` to see which snapshots are affected.',
        });
      }
      owner[c] = s;
      blob[c] = r.blob ?? 0;
      left--;
    }
  }
  return { snapshot: id, region: info.region, regionSize: info.regionSize, chunks: n, owner, blob };
}

export interface ForEachOptions {
  /** Called after each chunk with (chunks done, total chunks). */
  onProgress?: (done: number, total: number) => void;
  /** Chunks fetched from the store per query batch (default 64 = 4 MiB of memory). */
  batch?: number;
}

/**
 * Calls `fn` for every chunk of the region at snapshot `id`, in order, with its bytes
 * (trimmed to the region size for a partial last chunk) or null for an all-zero chunk.
 * Every blob is checksum-verified before it is decoded: damage raises STORE_CORRUPT.
 * Returns the chunk map used.
 */
export function forEachChunkAt(
  store: Store,
  id: number,
  fn: (chunkIndex: number, data: Buffer | null) => void,
  opts: ForEachOptions = {},
): ChunkMap {
  const map = chunkMap(store, id);
  const batchSize = Math.max(1, opts.batch ?? 64);
  const n = map.chunks;
  let c = 0;
  while (c < n) {
    // The next run of up to `batchSize` non-zero chunks, and the zero chunks before them.
    const wanted: number[] = [];
    let end = c;
    while (end < n && wanted.length < batchSize) {
      if (map.blob[end] !== 0) wanted.push(end);
      end++;
    }
    const src = wanted.length ? store._sources(id, wanted) : undefined;
    let j = 0;
    for (let k = c; k < end; k++) {
      const len = Math.min(CHUNK_SIZE, map.regionSize - k * CHUNK_SIZE);
      if (map.blob[k] === 0) {
        fn(k, null);
      } else {
        const i = j++;
        if (src!.chunk[i] !== k) throw new SnapshotError('INTERNAL', `chunk order mismatch reading snapshot ${id}`);
        const out = decodeChecked(src!, i, id, k, map.blob[k]!);
        fn(k, len < CHUNK_SIZE ? out.subarray(0, len) : out);
      }
      opts.onProgress?.(k + 1, n);
    }
    c = end;
  }
  return map;
}

/** A stored chunk's bytes, its checksum verified first (damage: STORE_CORRUPT). */
function decodeChecked(src: ReturnType<Store['_sources']>, i: number, id: number, chunk: number, blob: number): Buffer {
  const data = src.data[i];
  if (!data) {
    throw new SnapshotError('STORE_CORRUPT', `snapshot ${id} chunk ${chunk}: blob ${blob} is missing`, {
      hint: 'Run `usnap verify <store>` to see which snapshots are affected.',
    });
  }
  const codec = src.codec[i]!;
  const rawLen = src.rawLen[i]!;
  try {
    if (rawLen !== CHUNK_SIZE) throw Object.assign(new Error(`raw length ${rawLen} is not ${CHUNK_SIZE}`), { nativeCode: 'CORRUPT' });
    native().codec_verify(codec, rawLen, src.hash[i]!, data);
    return native().codec_decode(codec, rawLen, data);
  } catch (err) {
    throw fromNative(err, `snapshot ${id} chunk ${chunk} (blob ${blob})`);
  }
}

/**
 * Bytes [offset, offset + length) of the region at snapshot `id`, zeros where it has zeros.
 * Only the chunks the range covers are read, each checked like a restore (STORE_CORRUPT).
 */
export function readRange(store: Store, id: number, offset: number, length: number): Buffer {
  if (!Number.isSafeInteger(offset) || offset < 0) throw invalidArgument('offset', 'a non-negative integer', offset);
  if (!Number.isSafeInteger(length) || length < 0) throw invalidArgument('length', 'a non-negative integer', length);
  const map = chunkMap(store, id);
  if (offset + length > map.regionSize) {
    throw new SnapshotError('INVALID_ARGUMENT', `range ${offset}+${length} goes beyond snapshot ${id} (region "${map.region}" holds ${map.regionSize} bytes)`, {
      hint: `Read within [0, ${map.regionSize}).`,
    });
  }
  const out = Buffer.alloc(length);
  if (length === 0) return out;
  const first = Math.floor(offset / CHUNK_SIZE);
  const last = Math.floor((offset + length - 1) / CHUNK_SIZE);
  const wanted: number[] = [];
  for (let c = first; c <= last; c++) if (map.blob[c] !== 0) wanted.push(c);
  for (let b = 0; b < wanted.length; b += 64) {
    const batch = wanted.slice(b, b + 64);
    const src = store._sources(id, batch);
    for (const [i, c] of batch.entries()) {
      if (src.chunk[i] !== c) throw new SnapshotError('INTERNAL', `chunk order mismatch reading snapshot ${id}`);
      const bytes = decodeChecked(src, i, id, c, map.blob[c]!);
      const from = Math.max(offset, c * CHUNK_SIZE);
      const to = Math.min(offset + length, (c + 1) * CHUNK_SIZE);
      bytes.copy(out, from - offset, from - c * CHUNK_SIZE, to - c * CHUNK_SIZE);
    }
  }
  return out;
}

export type ChangeKind = 'added' | 'removed' | 'modified';

export interface ChunkChange {
  chunk: number;
  /** zero -> data: added; data -> zero: removed; data -> other data: modified. */
  kind: ChangeKind;
}

export interface DiffResult {
  a: number;
  b: number;
  /** The larger of the two region sizes; chunks beyond a snapshot's region count as zero. */
  regionSize: number;
  chunks: number;
  changed: ChunkChange[];
}

/**
 * Chunks whose contents differ between snapshots `a` and `b`: a chunk is unchanged when both
 * resolve to the same blob (content-deduplicated) or both are zero. Nothing is decoded.
 */
export function diffChunks(store: Store, a: number, b: number): DiffResult {
  const ma = chunkMap(store, a);
  const mb = a === b ? ma : chunkMap(store, b);
  const n = Math.max(ma.chunks, mb.chunks);
  const changed: ChunkChange[] = [];
  const same = sameContent(store);
  for (let c = 0; c < n; c++) {
    const x = c < ma.chunks ? ma.blob[c]! : 0;
    const y = c < mb.chunks ? mb.blob[c]! : 0;
    if (x === y) continue;
    if (x !== 0 && y !== 0 && same(x, y)) continue;  // two blobs with one content (dedup missed it)
    changed.push({ chunk: c, kind: x === 0 ? 'added' : y === 0 ? 'removed' : 'modified' });
  }
  return { a, b, regionSize: Math.max(ma.regionSize, mb.regionSize), chunks: n, changed };
}

/** Whether two blob ids hold identical stored bytes (same codec, hash and data). */
function sameContent(store: Store): (x: number, y: number) => boolean {
  return (x, y) => {
    const bx = store._blob(x);
    const by = store._blob(y);
    if (!bx || !by) return false;
    return bx.hash === by.hash && bx.codec === by.codec && bx.rawLen === by.rawLen && bx.data.equals(by.data);
  };
}

/** Consecutive chunk indices merged into ranges: [{ first, last }] (inclusive). */
export function chunkRanges(chunks: Iterable<number>): { first: number; last: number }[] {
  const out: { first: number; last: number }[] = [];
  for (const c of chunks) {
    const cur = out[out.length - 1];
    if (cur && c === cur.last + 1) cur.last = c;
    else out.push({ first: c, last: c });
  }
  return out;
}
