// What a lazily restored region needs from the database: which chunk of the snapshot lives
// in which blob, and the blobs themselves. Runs on the main thread (in-memory stores) or in
// the reader worker (file stores), each with its own connection.
import type { Database, Statement } from 'better-sqlite3';
import type { NativeChunkArrays } from '../lib/native';

export interface RestorePlan {
  /** 1 where the chunk holds data, 0 where it is zero at the snapshot. */
  hasData: Uint8Array;
  /** Blob id per chunk (0 for zero chunks). */
  blobIds: Float64Array;
}

/** Damage met while planning a restore; callers turn it into STORE_CORRUPT. */
export class StoreCorrupt extends Error {}

export function buildPlan(db: Database, snapshotId: number, nChunks: number): RestorePlan {
  const parentOf = db.prepare('SELECT parent_id FROM snapshots WHERE id = ?').pluck();
  const rowsOf = db.prepare('SELECT chunk, blob_id FROM chunks WHERE snapshot_id = ?').raw();
  const seen = new Uint8Array(nChunks);
  const hasData = new Uint8Array(nChunks);
  const blobIds = new Float64Array(nChunks);
  let left = nChunks;
  for (let s: number | null = snapshotId, depth = 0; s !== null && left > 0; depth++) {
    if (depth > 1_000_000) throw new Error(`snapshot history of ${snapshotId} loops`);
    for (const [chunk, blob] of rowsOf.iterate(s) as Iterable<[number, number | null]>) {
      // A row outside the region means the chunk it belongs to is lost: serving the parent's
      // (or zero) contents there instead would hand back wrong bytes.
      if (!Number.isInteger(chunk) || chunk < 0 || chunk >= nChunks) throw new StoreCorrupt(`snapshot ${s} has chunk ${String(chunk)} outside its ${nChunks}-chunk region`);
      if (seen[chunk]) continue;
      seen[chunk] = 1;
      left--;
      if (blob !== null) {
        hasData[chunk] = 1;
        blobIds[chunk] = blob;
      }
    }
    s = (parentOf.get(s) as number | null | undefined) ?? null;
  }
  return { hasData, blobIds };
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
      out.hash[i] = BigInt.asIntN(64, row[2]);
      parts.push(row[3]);
      pos += row[3].length;
    }
    out.offset[n] = pos;
    out.data = parts.length === 1 ? parts[0]! : new Uint8Array(Buffer.concat(parts, pos));
    return out;
  }
}
