// The JSON shapes the CLI prints. Field names here are a stable interface (docs/cli.md).
import type { SnapshotInfo } from '../../store/store';
import { ratio } from './util';

export interface SnapshotJson {
  id: number;
  region: string;
  parent: number | null;
  label: string | null;
  /** ISO 8601, UTC. */
  createdAt: string;
  /** Saved against nothing (the first snapshot of a region, or after its parent was deleted). */
  full: boolean;
  regionSize: number;
  /** 64 KiB chunks this snapshot itself stores (what changed since its parent). */
  chunks: number;
  pages: number;
  rawBytes: number;
  storedBytes: number;
  uniqueBytes: number;
  /** rawBytes / storedBytes (null when nothing is stored). */
  compressionRatio: number | null;
  /** storedBytes / uniqueBytes (null when nothing new was stored). */
  dedupRatio: number | null;
}

export function snapshotJson(s: SnapshotInfo): SnapshotJson {
  return {
    id: s.id,
    region: s.region,
    parent: s.parent,
    label: s.label,
    createdAt: s.createdAt.toISOString(),
    full: s.full,
    regionSize: s.regionSize,
    chunks: s.chunks,
    pages: s.pages,
    rawBytes: s.rawBytes,
    storedBytes: s.storedBytes,
    uniqueBytes: s.uniqueBytes,
    compressionRatio: ratio(s.rawBytes, s.storedBytes),
    dedupRatio: ratio(s.storedBytes, s.uniqueBytes),
  };
}
