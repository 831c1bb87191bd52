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

type SnapshotRow = { region_id: bigint; parent_id: bigint | null; region_size: bigint; full: bigint; tag: bigint | null; chunks: bigint };
type ChunkRow = [bigint, bigint | null, bigint | null, bigint | null];  // chunk, blob_id, hash, tag

const MAX_HISTORY = 1_000_000;

/** Snapshot `s`'s row, checked against its tag; `of` names the snapshot being restored. */
function snapshotRow(snapOf: Statement, s: number, of: number): SnapshotRow {
  const snap = snapOf.get(s) as SnapshotRow | undefined;
  if (!snap) throw new StoreCorrupt(`snapshot ${of} stands on snapshot ${s}, which is missing`);
  if (snap.tag !== snapshotTag(s, snap.region_id, snap.parent_id, snap.region_size, snap.full)) {
    throw new StoreCorrupt(`snapshot ${s}: its region, parent or size was altered (the row's tag does not match)`);
  }
  return snap;
}

/** Enters chunk row `row` of snapshot `s` into `plan` unless a newer snapshot set that chunk; false if it was set. */
function enterRow(plan: RestorePlan, seen: Uint8Array, s: number, nChunks: number, [chunk, blob, hash, tag]: ChunkRow): boolean {
  // A row outside the region means the chunk it belongs to is lost: serving the parent's
  // (or zero) contents there instead would hand back wrong bytes.
  if (typeof chunk !== 'bigint' || chunk < 0n || chunk >= BigInt(nChunks)) throw new StoreCorrupt(`snapshot ${s} has chunk ${String(chunk)} outside its ${nChunks}-chunk region`);
  if (tag !== chunkTag(s, chunk, hash) || (blob === null) !== (hash === null) || (blob !== null && blob <= 0n)) {
    throw new StoreCorrupt(`snapshot ${s} chunk ${chunk}: the row was altered (its tag does not match)`);
  }
  const c = Number(chunk);
  if (seen[c]) return false;
  seen[c] = 1;
  if (blob !== null) {
    plan.hasData[c] = 1;
    plan.blobIds[c] = Number(blob);
    plan.hashes[c] = hash!;
  }
  return true;
}

function snapshotsOf(db: Database): Statement {
  return db.prepare('SELECT region_id, parent_id, region_size, full, tag, chunks FROM snapshots WHERE id = ?').safeIntegers(true);
}

function rowsOfSnapshot(db: Database): Statement {
  return db.prepare('SELECT chunk, blob_id, hash, tag FROM chunks WHERE snapshot_id = ?').safeIntegers(true).raw();
}

/** Enters every chunk row of snapshot `s` and checks that it has the `expected` count; returns how many chunks it set. */
function enterAllRows(rowsOf: Statement, plan: RestorePlan, seen: Uint8Array, s: number, expected: bigint, nChunks: number): number {
  let rows = 0;
  let entered = 0;
  for (const row of rowsOf.iterate(s) as Iterable<ChunkRow>) {
    rows++;
    if (enterRow(plan, seen, s, nChunks, row)) entered++;
  }
  if (BigInt(rows) !== expected) throw new StoreCorrupt(`snapshot ${s} records ${expected} chunks but stores ${rows}`);
  return entered;
}

function emptyPlan(nChunks: number): RestorePlan {
  return { hasData: new Uint8Array(nChunks), blobIds: new Float64Array(nChunks), hashes: new BigInt64Array(nChunks) };
}

export function buildPlan(db: Database, snapshotId: number, nChunks: number): RestorePlan {
  const snapOf = snapshotsOf(db);
  const rowsOf = rowsOfSnapshot(db);
  const seen = new Uint8Array(nChunks);
  const plan = emptyPlan(nChunks);
  let left = nChunks;
  for (let s: number | null = snapshotId, depth = 0; s !== null && left > 0; depth++) {
    if (depth > MAX_HISTORY) throw new StoreCorrupt(`snapshot history of ${snapshotId} loops`);
    const snap = snapshotRow(snapOf, s, snapshotId);
    left -= enterAllRows(rowsOf, plan, seen, s, snap.chunks, nChunks);
    s = snap.parent_id === null ? null : Number(snap.parent_id);
  }
  return plan;
}

/**
 * Where single chunks come from, before the whole plan is built: a restore serves the
 * recorded working set (and faulted chunks) from this while the plan for the rest waits, so
 * the first chunks do not wait for every row of the history. A chunk's row is looked up
 * newest snapshot first and checked as buildPlan checks it; looking past a snapshot (the chunk
 * has no row there, or none anywhere: zero) first checks all of that snapshot's rows and
 * their count, so a lost or moved row never lets an older version through.
 */
export class EarlyPlan {
  /** History longer than this: building the whole plan first is cheaper than probing it per chunk. */
  static readonly MAX_CHAIN = 64;
  readonly plan: RestorePlan;
  private readonly seen: Uint8Array;
  private readonly rowsIn: Statement;
  private readonly rowsOf: Statement;
  private checked = 0;  // chain[0 .. checked) had every row checked

  private constructor(private readonly chain: { id: number; chunks: bigint }[], private readonly nChunks: number, db: Database) {
    this.plan = emptyPlan(nChunks);
    this.seen = new Uint8Array(nChunks);
    this.rowsIn = db.prepare('SELECT chunk, blob_id, hash, tag FROM chunks WHERE snapshot_id = ? AND chunk IN (SELECT value FROM json_each(?))').safeIntegers(true).raw();
    this.rowsOf = rowsOfSnapshot(db);
  }

  /** An early plan for `snapshotId`, or null when its history is too long for one. */
  static open(db: Database, snapshotId: number, nChunks: number): EarlyPlan | null {
    const snapOf = snapshotsOf(db);
    const chain: { id: number; chunks: bigint }[] = [];
    for (let s: number | null = snapshotId; s !== null; ) {
      if (chain.length >= EarlyPlan.MAX_CHAIN) return null;
      const snap = snapshotRow(snapOf, s, snapshotId);
      chain.push({ id: s, chunks: snap.chunks });
      s = snap.parent_id === null ? null : Number(snap.parent_id);
    }
    return new EarlyPlan(chain, nChunks, db);
  }

  /** Enters `chunks` into the plan: the newest row along the history, or zero where there is none. */
  resolve(chunks: ArrayLike<number>): void {
    let want = Array.from(chunks).filter((c) => c < this.nChunks && !this.seen[c]);
    for (let k = 0; k < this.chain.length && want.length > 0; k++) {
      const s = this.chain[k]!.id;
      for (const row of this.rowsIn.iterate(s, JSON.stringify(want)) as Iterable<ChunkRow>) enterRow(this.plan, this.seen, s, this.nChunks, row);
      want = want.filter((c) => !this.seen[c]);
      if (want.length > 0) this.checkAllRows(k);
    }
  }

  private checkAllRows(k: number): void {
    if (k < this.checked) return;
    const { id: s, chunks } = this.chain[k]!;
    enterAllRows(this.rowsOf, this.plan, this.seen, s, chunks, this.nChunks);
    this.checked = k + 1;
  }
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
