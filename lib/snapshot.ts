import { SnapshotError } from '../core/errors';
import type { SnapshotInfo } from '../store/store';

const owners = new WeakMap<Snapshot, object>();
/** @internal */
export const TOKEN = Symbol('Snapshot');

/** The store a Snapshot was taken on: a Snapshot is only accepted by that store. */
export function snapshotStore(s: Snapshot): object | undefined {
  return owners.get(s);
}

/** A point-in-time copy of a region, returned by `region.snapshot()`. */
export class Snapshot {
  /** Integer id, increasing within a store. */
  readonly id: number;
  readonly label: string | null;
  readonly createdAt: Date;
  /** The region's name. */
  readonly region: string;
  /** The snapshot this one is incremental against (null: it stands alone). */
  readonly parent: number | null;
  /**
   * Number of 64 KiB chunks it covers: those written since its parent, or every chunk for a
   * snapshot that stands alone (zero ones cost nothing; `persisted` reports what was stored).
   */
  readonly chunks: number;
  /** How long the program was paused to take it (the write-protect), in milliseconds. */
  readonly pauseMs: number;
  /** Resolves when every page of the snapshot is durable in the store; rejects with SNAPSHOT_FAILED otherwise. */
  readonly persisted: Promise<SnapshotInfo>;

  /** @internal Snapshots are made by `region.snapshot()`. */
  constructor(token: unknown, store: object, fields: Omit<Snapshot, never>) {
    if (token !== TOKEN) {
      throw new SnapshotError('INVALID_ARGUMENT', 'Snapshot objects are made by region.snapshot(), not constructed', {
        hint: 'Take one with region.snapshot(), or pass a snapshot id where a snapshot is expected.',
      });
    }
    owners.set(this, store);
    this.id = fields.id;
    this.label = fields.label;
    this.createdAt = fields.createdAt;
    this.region = fields.region;
    this.parent = fields.parent;
    this.chunks = fields.chunks;
    this.pauseMs = fields.pauseMs;
    this.persisted = fields.persisted;
  }
}
