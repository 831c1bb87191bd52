// The raw addon, described once. Public classes wrap it; nothing else touches it.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface NativeProbe {
  ok: boolean;
  errno: number;
  failedOp: string;
  route: 'device' | 'syscall' | 'syscall-user-mode-only';
  features: number;
}

export interface NativeRegionStats {
  wpFaults: number;
  missingFaults: number;
  chunksCapturedByHandler: number;
  chunksEncodedByHandler: number;
  chunksSavedInBackground: number;
  savesDiscarded: number;
  bytesCaptured: number;
  snapshots: number;
  rollbacks: number;
  chunksRolledBack: number;
  pagesRolledBack: number;
  lastPauseNs: number;
  maxPauseNs: number;
  pendingChunks: number;
  faultNsTotal: number;
  chunksUnchanged: number;
}

/** Where each rolled-back chunk comes from: the sink (sinkSnap > 0) or checked bytes. */
export interface NativeRollbackSources {
  chunk: Uint32Array;
  sinkSnap: Float64Array;
  codec: Uint8Array;
  rawLen: Uint32Array;
  hash: BigInt64Array;
  data: (Uint8Array | null)[];
  /** Chunks to take from the region's rollback cache (see region_uncached). */
  cached?: Uint32Array;
}

export interface NativeBatch {
  begins: { snap: number; regionKey: number; full: boolean; meta: string }[];
  chunks: {
    snap: Float64Array;
    chunk: Uint32Array;
    codec: Uint8Array;
    rawLen: Uint32Array;
    hash: BigInt64Array;
    offset: Uint32Array;
    data: Buffer;
  };
  ends: { snap: number; chunks: number; rawBytes: number; storedBytes: number; failed: boolean; error: string }[];
}

export interface NativeBlob {
  codec: number;
  rawLen: number;
  hash: bigint;
  bytes: Buffer;
}

/** Encoded chunks as parallel arrays; chunk i's bytes are data[offset[i], offset[i+1]). */
export interface NativeChunkArrays {
  chunk: Uint32Array;
  codec: Uint8Array;
  rawLen: Uint32Array;
  hash: BigInt64Array;
  offset: Uint32Array;
  data: Uint8Array;
}

export interface NativeSourceStats {
  open: boolean;
  dataChunks?: number;
  dataPresent?: number;
  ready?: boolean;
  corrupt?: string;
}

declare const regionHandleBrand: unique symbol;
export type RegionHandle = { readonly [regionHandleBrand]: true };

export interface Addon {
  /**
   * The calling thread runs on spare CPU only (SCHED_IDLE), as the savers do, and a snapshot
   * parks it by a signal while it write-protects and while the program's fault burst lasts:
   * the store writer (native/background.h).
   */
  thread_set_background(): void;
  /** Parks begun, park signals sent, and signalled threads that stopped within the wait (process-wide). */
  background_park_stats(): { parks: number; signalsSent: number; signalsAcked: number };
  probe(): NativeProbe;
  region_open(opts: {
    size?: number;
    faultAroundPages: number;
    faultAroundMaxPages?: number;
    captureBudget?: number;
    saverThreads?: number;
    pauseMode?: boolean;
    signalFaults?: boolean;
    hugePages?: boolean;
    sink: number;
    regionKey: number;
    memory?: Uint8Array;
    restore?: { label: string };
  }): RegionHandle;
  region_source(h: RegionHandle): number;
  source_set_plan(source: number, hasData: Uint8Array): void;
  /** The reader cannot go on: data chunks not yet in memory become corrupt (see PageSource::Fail). */
  source_fail(source: number, why: string): void;
  source_stage(source: number, chunks: NativeChunkArrays): void;
  source_start_prefetch(source: number): void;
  /** Background fetching takes `order` first, then address order; `prefetch` false: faulted chunks only. */
  source_set_order(source: number, order: Uint32Array, prefetch: boolean, recordQuietMs: number): void;
  source_prefetch_all(source: number): void;
  source_handed_out(source: number): void;
  /** Chunks first touched while missing, in order; chunks background fetching took, in order. Null once closed. */
  source_trace(source: number): { faultOrder: Uint32Array; prefetchLog: Uint32Array } | null;
  source_next(source: number, max: number, waitMs: number): Uint32Array;
  source_supply(source: number, chunks: NativeChunkArrays): boolean;
  source_wait_ready(source: number, timeoutMs: number): boolean;
  source_stats(source: number): NativeSourceStats;
  region_buffer(h: RegionHandle): ArrayBuffer | undefined;
  /** `hold`: write faults on the region wait after its protect until region_release. */
  /** The snapshot's chunks; `out` receives [pause in ns, 1 if it stands alone (full) else 0]. */
  region_snapshot(h: RegionHandle, snapId: number, meta: string, hold: boolean, out: Float64Array): Uint32Array;
  region_release(h: RegionHandle): void;
  region_prepare_rollback(h: RegionHandle): Uint32Array;
  region_rollback(h: RegionHandle, sink: number, sources: NativeRollbackSources, target: number, onlyWritten?: boolean): Uint32Array;
  region_uncached(h: RegionHandle, target: number, chunks: Uint32Array): Uint32Array;
  region_reset_to_head(h: RegionHandle, target: number): boolean;
  region_stats(h: RegionHandle): NativeRegionStats;
  region_grow(h: RegionHandle, view: Uint8Array): void;
  region_unprotect(h: RegionHandle, offset: number, length: number): void;
  region_kernel_writes_trap(h: RegionHandle): boolean;
  region_close(h: RegionHandle): void;
  sink_open(): number;
  /** `scratch`, when large enough, receives the batch's bytes (`chunks.data` is then a view of it). */
  sink_drain(sink: number, maxBytes: number, waitMs: number, lingerMs?: number, scratch?: Uint8Array): NativeBatch;
  /** The writer committed these chunks: the sink drops its copies (unless pinned). */
  sink_committed(sink: number, snap: Float64Array, chunk: Uint32Array): void;
  sink_pin(sink: number, pinned: boolean): void;
  sink_release(sink: number, snap: number): void;
  sink_stats(sink: number): { heldBytes: number; inflight: number };
  sink_close(sink: number): void;
  codec_encode(data: Uint8Array): NativeBlob;
  codec_decode(codec: number, rawLen: number, bytes: Uint8Array): Buffer;
  codec_verify(codec: number, rawLen: number, hash: bigint, bytes: Uint8Array): void;
  codec_hash(data: Uint8Array): bigint;
  chunkSize: number;
  pageSize: number;
}

/** The package root: where package.json, build/ and dist/ live, from source or from dist/. */
export const packageRoot: string = (() => {
  let dir = __dirname;
  for (;;) {
    // Read, not exists-then-read: access(2) ignores capabilities, and one syscall beats two.
    try {
      if (JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).name === 'uffd-snapshot') return dir;
    } catch {
      // none here, or not ours: keep walking up
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('uffd-snapshot: cannot find the package root from ' + __dirname);
    dir = up;
  }
})();

/**
 * Loads one of our addons: the local build (build/Release/<file>, from `npm run build:native` in the
 * repo or the source build an install falls back to), else the prebuild shipped for this platform
 * under `prebuildDir`/prebuilds/ (found by node-gyp-build). A failure says what to do about it.
 */
export function loadAddon(file: string, prebuildDir: string, what: string): unknown {
  try {
    // USNAP_ADDON: another build of the main addon (npm run test:sanitize points it at the ASan/UBSan one).
    if (file === 'uffd_snapshot.node' && process.env.USNAP_ADDON) return require(process.env.USNAP_ADDON);
    try {
      return require(path.join(packageRoot, 'build', 'Release', file));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
    }
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('node-gyp-build') as (dir: string) => unknown)(prebuildDir);
  } catch (err) {
    const why = process.platform !== 'linux' ? `it runs on Linux only (this is ${process.platform}).` : (err as Error).message;
    throw new Error(
      `uffd-snapshot: ${what} did not load: ${why}\n` +
        'Possible solutions:\n' +
        '  - Build it from source: npm rebuild uffd-snapshot --build-from-source (needs python3, make and a C++ compiler)\n' +
        `  - In a clone of the repository: npm run build:native (builds build/Release/${file})`,
      { cause: err },
    );
  }
}

let addon: Addon | undefined;

export function native(): Addon {
  if (addon) return addon;
  addon = loadAddon('uffd_snapshot.node', packageRoot, 'the native addon') as Addon;
  return addon;
}

export const CHUNK_SIZE = 64 * 1024;
export const PAGE_SIZE = 4096;
