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

export interface PushOptions {
  /** Local snapshot id(s) to push, with what they stand on (default: every snapshot). */
  snapshot?: number | number[];
  /** Only snapshots of this region. */
  region?: string;
  /** Called as chunks are done: (chunks done, chunks in all). */
  onProgress?: (done: number, total: number) => void;
}

export interface PushResult {
  snapshots: { local: number; id: string }[];
  chunksUploaded: number;
  /** Data chunks the remote already held (from any store), not uploaded again. */
  chunksPresent: number;
  bytesUploaded: number;
}

export interface PullOptions {
  /** Remote snapshot id(s) to pull, with what they stand on (default: every snapshot). */
  snapshot?: string | string[];
  region?: string;
  onProgress?: (done: number, total: number) => void;
}

export interface PullResult {
  snapshots: { id: string; local: number }[];
  chunksFetched: number;
  bytesDownloaded: number;
}
