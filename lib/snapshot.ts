import { SnapshotError } from '../core/errors';
import type { Settlement } from '../store/persister';
import type { SnapshotInfo } from '../store/store';

interface Private {
  store: object;
  settlement: Settlement<SnapshotInfo>;
}
const privates = new WeakMap<Snapshot, Private>();
/** @internal */
export const TOKEN = Symbol('Snapshot');

/** The store a Snapshot was taken on: a Snapshot is only accepted by that store. */
export function snapshotStore(s: Snapshot): object | undefined {
  return privates.get(s)?.store;
}

/** A point-in-time copy of a region, returned by `region.snapshot()`. */
export class Snapshot {
  // `declare`: no field initializers to run; snapshot() is on the program's path.
  /** Integer id, increasing within a store. */
  declare readonly id: number;
  declare readonly label: string | null;
  declare readonly createdAt: Date;
  /** The region's name. */
  declare readonly region: string;
  /** The snapshot this one is incremental against (null: it stands alone). */
  declare readonly parent: number | null;
  /**
   * Number of 64 KiB chunks it covers: those written since its parent, or every chunk for a
   * snapshot that stands alone (zero ones cost nothing; `persisted` reports what was stored).
   */
  declare readonly chunks: number;
  /** How long the program was paused to take it (the write-protect), in milliseconds. */
  declare readonly pauseMs: number;

  /** @internal Snapshots are made by `region.snapshot()`. */
  constructor(token: unknown, store: object, settlement: Settlement<SnapshotInfo>, fields: Omit<Snapshot, 'persisted'>) {
    if (token !== TOKEN) {
      throw new SnapshotError('INVALID_ARGUMENT', 'Snapshot objects are made by region.snapshot(), not constructed', {
        hint: 'Take one with region.snapshot(), or pass a snapshot id where a snapshot is expected.',
      });
    }
    privates.set(this, { store, settlement });
    this.id = fields.id;
    this.label = fields.label;
    this.createdAt = fields.createdAt;
    this.region = fields.region;
    this.parent = fields.parent;
    this.chunks = fields.chunks;
    this.pauseMs = fields.pauseMs;
  }

  /** Resolves when every page of the snapshot is durable in the store; rejects with SNAPSHOT_FAILED otherwise. */
  get persisted(): Promise<SnapshotInfo> {
    return privates.get(this)!.settlement.promise();
  }
}
