// What a lazily restored region needs from the database: which chunk of the snapshot lives
// in which blob, and the blobs themselves. Runs on the main thread (in-memory stores) or in
// the reader worker (file stores), each with its own connection.
import type { Database, Statement } from 'better-sqlite3';
import type { NativeChunkArrays } from '../core/native';
import { chunkTag, snapshotTag } from './tags';

export interface RestorePlan {
  /** 1 where the chunk holds data, 0 where it is zero at the snapshot. */
  hasData: Uint8Array;
  /** Blob id per chunk (0 for zero chunks). */
  blobIds: Float64Array;
  /** The checksum each chunk's blob must have (from its chunk row, not from the blob). */
  hashes: BigInt64Array;
}

/** Damage met while planning a restore; callers turn it into STORE_CORRUPT. */
export class StoreCorrupt extends Error {}

export function buildPlan(db: Database, snapshotId: number, nChunks: number): RestorePlan {
  const snapOf = db.prepare('SELECT region_id, parent_id, region_size, full, tag, chunks FROM snapshots WHERE id = ?').safeIntegers(true);
  const rowsOf = db.prepare('SELECT chunk, blob_id, hash, tag FROM chunks WHERE snapshot_id = ?').safeIntegers(true).raw();
  const seen = new Uint8Array(nChunks);
  const hasData = new Uint8Array(nChunks);
  const blobIds = new Float64Array(nChunks);
  const hashes = new BigInt64Array(nChunks);
  let left = nChunks;
  for (let s: number | null = snapshotId, depth = 0; s !== null && left > 0; depth++) {
    if (depth > 1_000_000) throw new StoreCorrupt(`snapshot history of ${snapshotId} loops`);
    const snap = snapOf.get(s) as { region_id: bigint; parent_id: bigint | null; region_size: bigint; full: bigint; tag: bigint | null; chunks: bigint } | undefined;
    if (!snap) throw new StoreCorrupt(`snapshot ${snapshotId} stands on snapshot ${s}, which is missing`);
    if (snap.tag !== snapshotTag(s, snap.region_id, snap.parent_id, snap.region_size, snap.full)) {
      throw new StoreCorrupt(`snapshot ${s}: its region, parent or size was altered (the row's tag does not match)`);
    }
    let rows = 0;
    for (const [chunk, blob, hash, tag] of rowsOf.iterate(s) as Iterable<[bigint, bigint | null, bigint | null, bigint | null]>) {
      rows++;
      // A row outside the region means the chunk it belongs to is lost: serving the parent's
      // (or zero) contents there instead would hand back wrong bytes.
      if (typeof chunk !== 'bigint' || chunk < 0n || chunk >= BigInt(nChunks)) throw new StoreCorrupt(`snapshot ${s} has chunk ${String(chunk)} outside its ${nChunks}-chunk region`);
      if (tag !== chunkTag(s, chunk, hash) || (blob === null) !== (hash === null) || (blob !== null && blob <= 0n)) {
        throw new StoreCorrupt(`snapshot ${s} chunk ${chunk}: the row was altered (its tag does not match)`);
      }
      const c = Number(chunk);
      if (seen[c]) continue;
      seen[c] = 1;
      left--;
      if (blob !== null) {
        hasData[c] = 1;
        blobIds[c] = Number(blob);
        hashes[c] = hash!;
      }
    }
    if (BigInt(rows) !== snap.chunks) throw new StoreCorrupt(`snapshot ${s} records ${snap.chunks} chunks but stores ${rows}`);
    s = snap.parent_id === null ? null : Number(snap.parent_id);
  }
  return { hasData, blobIds, hashes };
}

/** Reads blobs for `chunks` into the arrays native code takes. A missing blob gets an empty, failing entry. */
export class BlobReader {
  private readonly byId: Statement;

  constructor(db: Database) {
    this.byId = db.prepare('SELECT codec, raw_len, hash, data FROM blobs WHERE id = ?').safeIntegers(true).raw();
  }

  read(plan: RestorePlan, chunks: ArrayLike<number>): NativeChunkArrays {
    const n = chunks.length;
    const out = {
      chunk: new Uint32Array(n),
      codec: new Uint8Array(n),
      rawLen: new Uint32Array(n),
      hash: new BigInt64Array(n),
      offset: new Uint32Array(n + 1),
      data: new Uint8Array(0) as Uint8Array,
    };
    const parts: Buffer[] = [];
    let pos = 0;
    for (let i = 0; i < n; i++) {
      const c = chunks[i]!;
      out.chunk[i] = c;
      out.offset[i] = pos;
      out.rawLen[i] = 65536;
      if (!plan.hasData[c]) continue;  // codec 0: zero
      const row = this.byId.get(plan.blobIds[c]) as [bigint, bigint, bigint, Buffer] | undefined;
      if (!row) {
        out.codec[i] = 2;  // lz4 with no bytes fails verification: the chunk is reported corrupt
        continue;
      }
      out.codec[i] = Number(row[0]);
      out.rawLen[i] = Number(row[1]);
      out.hash[i] = plan.hashes[c]!;  // the row's expectation: a blob swapped in fails the check
      parts.push(row[3]);
      pos += row[3].length;
    }
    out.offset[n] = pos;
    out.data = parts.length === 1 ? parts[0]! : new Uint8Array(Buffer.concat(parts, pos));
    return out;
  }
}
