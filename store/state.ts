// What the store's modules share: one connection and this process's view of the store. The
// Store facade (store.ts) owns one StoreState; catalog, delete, verify, the persister, chunk
// sources and restore are functions (or small classes) over it.
import type Database from 'better-sqlite3';
import { invalidArgument } from '../core/errors';
import type { SnapshotInfo } from './catalog';
import type { SnapshotMeta } from './writer';
import type { Settlement } from './persister';

/** A snapshot taken in this process whose chunks the sink still holds. */
export interface Inflight {
  meta: SnapshotMeta;
  regionName: string;
  chunks: Uint32Array;
  /** Settles the snapshot's `persisted`. */
  settlement: Settlement<SnapshotInfo>;
}

/** A persisted snapshot's own chunk rows, checked against their tags, sorted by chunk. */
export interface ChunkRows {
  chunks: Uint32Array;
  blob: Float64Array;  // 0: a zero chunk
  hash: BigInt64Array;  // the checksum the chunk's blob must have
}

/** What a region needs from the store while open. */
export interface RegionLink {
  readonly name: string;
  /** The snapshot the region's memory last matched (its next snapshot's parent). */
  readonly head: number | null;
}

export interface StoreState {
  readonly path: string;
  readonly db: Database.Database;
  /** ':memory:': the writer runs on the main thread and lazy restores stage blobs natively. */
  readonly memory: boolean;
  readonly readonly: boolean;
  /** The native capture sink regions of this store hand their chunks to. */
  readonly sink: number;
  readonly inflight: Map<number, Inflight>;
  /** Open regions by name. */
  readonly regions: Map<string, RegionLink>;
  /** Checked chunk rows of persisted snapshots (see catalog.rows). */
  readonly rowCache: Map<number, ChunkRows>;
}

export const CORRUPT_HINT = 'Run `usnap verify` on the store to see what is damaged.';

export function checkId(id: unknown): asserts id is number {
  if (!Number.isSafeInteger(id) || (id as number) < 1) throw invalidArgument('snapshot id', 'a positive integer', id);
}
