// The store's public result types, apart from the modules that compute them: the published
// declarations of these modules import better-sqlite3's types, which users need not install.

export interface SnapshotInfo {
  id: number;
  region: string;
  parent: number | null;
  label: string | null;
  createdAt: Date;
  complete: boolean;
  /** Pages whose contents this snapshot records (its chunks times 16). */
  pages: number;
  chunks: number;
  /** Bytes of memory those chunks hold. */
  rawBytes: number;
  /** Bytes after compression, before dedup. */
  storedBytes: number;
  /** Bytes this snapshot added to the store after dedup. */
  uniqueBytes: number;
  regionSize: number;
  /** Saved against nothing: the snapshot stands alone. */
  full: boolean;
}

export interface GcResult {
  deletedSnapshots: number[];
  freedBlobs: number;
  freedBytes: number;
}

export interface VerifyProblem {
  code: 'STORE_CORRUPT';
  snapshot?: number;
  chunk?: number;
  blob?: number;
  message: string;
}

export interface VerifyResult {
  ok: boolean;
  snapshots: number;
  chunks: number;
  problems: VerifyProblem[];
}
