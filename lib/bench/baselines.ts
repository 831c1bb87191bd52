// Baseline measurements for `usnap bench`: what the alternatives to a userfaultfd snapshot
// cost on this machine (memcpy, fork, mprotect + SIGSEGV, async write-protect + PAGEMAP_SCAN,
// the raw ioctls, LZ4, reading an image file).
//
// Every native function runs ONE trial on a region of `sizeBytes` that it maps itself
// (anonymous, private, MADV_NOHUGEPAGE unless stated, every page written with
// fillRealistic() data first), times only the operation named with CLOCK_MONOTONIC, cleans up
// its descriptors, children and signal handlers, and returns plain numbers. Times are in
// nanoseconds, rates in bytes per second. Repeat the calls and take min/median in the caller.
//
// The addon is build/Release/usnap_bench.node (binding.gyp target `usnap_bench`), or in an
// installed package the prebuild in native/bench/prebuilds/ (scripts/prebuild.sh).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadAddon, packageRoot } from '../../core/native';

export const PAGE_SIZE = 4096;
export const CHUNK_SIZE = 64 * 1024;

export interface MemcpyResult {
  /** memcpy of the whole region into a pre-faulted buffer. */
  ns: number;
  bytesPerSec: number;
}

export interface ForkPauseResult {
  /** fork() until it returns in the parent, with the region mapped and populated. */
  ns: number;
  /** The same fork() before the region was mapped: the cost of the rest of the process. */
  baseNs: number;
}

export interface ForkWriteResult {
  /** The fork() itself. */
  forkNs: number;
  /** The parent rewriting one word in every page while the child (blocked on a pipe) shares them. */
  writeNs: number;
  /** writeNs / pages: one copy-on-write fault. */
  writeNsPerPage: number;
  pages: number;
}

export type ForkChildWork = 'lz4' | 'read';

export interface ForkPeakResult {
  /** Region pages duplicated by copy-on-write while the child saved: the child's exclusively
   *  mapped region pages (from /proc/self/pagemap) at the end of its save, the peak. */
  extraPages: number;
  extraBytes: number;
  /** extraBytes / sizeBytes: 1 means a fork-based save needed twice the region's memory. */
  fraction: number;
  pages: number;
  /** The child's pass over the region (LZ4 of each 64 KiB chunk, or a plain read). */
  childSaveNs: number;
  /** The parent's rewrite of every page, concurrent with the child's save. */
  parentWriteNs: number;
  /** How many pages the parent had rewritten when it saw the child finish (cross-check of extraPages). */
  parentPagesBeforeSaveDone: number;
}

export interface MprotectResult {
  /** mprotect(PROT_READ) of the whole region. */
  pauseNs: number;
  /** Rewriting every page, each first write trapping to a SIGSEGV handler that mprotects the page RW. */
  writeNs: number;
  writeNsPerPage: number;
  /** Handler invocations on the region (equals pages). */
  faults: number;
  pages: number;
}

export interface WpAsyncScanResult {
  /** Stop-and-copy snapshot: PAGEMAP_SCAN (find + re-protect written pages) + copying them out. */
  pauseNs: number;
  /** The PAGEMAP_SCAN ioctls alone (PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, PAGE_IS_WRITTEN). */
  scanNs: number;
  /** Copying the found pages into a pre-faulted buffer. */
  copyNs: number;
  /** Pages the scan reported written. */
  pagesFound: number;
  /** Pages written (evenly spread) since the region was protected. */
  pagesDirtied: number;
  scanCalls: number;
  /** UFFDIO_WRITEPROTECT of the whole region before the write pass. */
  protectNs: number;
  /** Rewriting every page after that protect: first writes resolved by the kernel (WP_ASYNC). */
  writeNs: number;
  writeNsPerPage: number;
  pages: number;
}

export interface WpIoctlResult {
  /** One UFFDIO_WRITEPROTECT over the whole populated region (sync MODE_WP). */
  fullNs: number;
  /** One UFFDIO_WRITEPROTECT mode=0 over the whole region. */
  unprotectNs: number;
  /** Protecting `percent` of the pages as 16-page (64 KiB) runs spread evenly, one ioctl per run. */
  partialNs: number;
  /**
   * The same runs protected again in the state a program's next snapshot finds them (with
   * `idleMs` > 0), `idleSamples` times: everything protected, the runs unprotected one by one
   * and written, then `idleMs` of sleep. Empty without `idleMs`.
   */
  partialIdleNs: number[];
  partialPages: number;
  partialIoctls: number;
  pages: number;
}

export interface Lz4Result {
  ns: number;
  /** Uncompressed bytes per second. */
  bytesPerSec: number;
  /** Uncompressed / compressed. */
  ratio: number;
  compressedBytes: number;
}

export interface UffdioCopyResult {
  /** Every ioctl (64 KiB each) into a fresh MODE_MISSING region nobody faults on. */
  ns: number;
  bytesPerSec: number;
  ioctls: number;
  /** Chunks found already present (0 expected). */
  eexist: number;
}

export interface ForkResetResult {
  /** All iterations: fork, child writes its pages and _exit()s, parent waitpid()s. */
  ns: number;
  itersPerSec: number;
  nsPerIter: number;
  /** Pages each child wrote. */
  pagesPerIter: number;
}

export interface ContinuousResult {
  /** Updates per second of the loop without checkpoints, then with them. */
  updatesPerSecPlain: number;
  updatesPerSec: number;
  /** 1 - updatesPerSec / updatesPerSecPlain: the fraction of throughput the checkpoints cost. */
  loss: number;
  /** p99 time of a 1000-update batch, without and with checkpoints. */
  batchP99NsPlain: number;
  batchP99Ns: number;
  checkpoints: number;
}

export type CheckpointKind = 'fork_bgsave' | 'memcpy' | 'uffd_wp_raw';

export interface FileTimingResult {
  ns: number;
  bytes: number;
  bytesPerSec: number;
}

interface BenchAddon {
  memcpyFull(size: number): MemcpyResult;
  forkPause(size: number): ForkPauseResult;
  forkWriteOverhead(size: number): ForkWriteResult;
  forkPeakExtra(size: number, childWork: ForkChildWork): ForkPeakResult;
  mprotectSigsegvWriteOverhead(size: number, writes: boolean): MprotectResult;
  wpAsyncScan(size: number, dirtyFraction: number): WpAsyncScanResult;
  wpIoctlRaw(size: number, percent: number, hugePages: boolean, idleMs: number, idleSamples: number): WpIoctlResult;
  lz4Raw(size: number): Lz4Result;
  lz4DecodeRaw(size: number): Lz4Result;
  uffdioCopyRaw(size: number, wp: boolean): UffdioCopyResult;
  uffdioZeroPageRaw(size: number): UffdioCopyResult;
  forkReset(size: number, dirtyFraction: number, iterations: number): ForkResetResult;
  fillRealistic(data: Uint8Array, seed: number): void;
  uffdResetRaw(size: number, pagesPerReset: number, iterations: number): { ns: number; itersPerSec: number };
  continuous(size: number, hotFraction: number, phaseMs: number, periodMs: number, kind: number, dir: string, blockMs: number): ContinuousResult;
  pageSize: number;
  chunkSize: number;
}

let addon: BenchAddon | undefined;

function bench(): BenchAddon {
  if (addon) return addon;
  addon = loadAddon('usnap_bench.node', path.join(packageRoot, 'native', 'bench'), 'the benchmark addon') as BenchAddon;
  return addon;
}

function checkSize(sizeBytes: number): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % CHUNK_SIZE !== 0)
    throw new RangeError(`sizeBytes must be a positive multiple of ${CHUNK_SIZE} (got ${sizeBytes})`);
}

function checkFraction(name: string, f: number): void {
  if (typeof f !== 'number' || !(f >= 0 && f <= 1)) throw new RangeError(`${name} must be a number in [0, 1] (got ${f})`);
}

/** Nanoseconds to memcpy the whole region into another, pre-faulted buffer. */
export function memcpyFull(sizeBytes: number): MemcpyResult {
  checkSize(sizeBytes);
  return bench().memcpyFull(sizeBytes);
}

/** The pause of a fork-based snapshot: fork() until it returns in the parent (child _exit(0)s at once). */
export function forkPause(sizeBytes: number): ForkPauseResult {
  checkSize(sizeBytes);
  return bench().forkPause(sizeBytes);
}

/** Copy-on-write cost per page in the parent while a forked child holds the memory. */
export function forkWriteOverhead(sizeBytes: number): ForkWriteResult {
  checkSize(sizeBytes);
  return bench().forkWriteOverhead(sizeBytes);
}

/**
 * Extra memory of a fork-based save while the program rewrites all of the region: the child
 * saves (by default LZ4-compresses each 64 KiB chunk into a scratch buffer, like a saver would;
 * 'read' only sums the words) while the parent rewrites every page.
 */
export function forkPeakExtra(sizeBytes: number, childWork: ForkChildWork = 'lz4'): ForkPeakResult {
  checkSize(sizeBytes);
  if (childWork !== 'lz4' && childWork !== 'read') throw new RangeError(`childWork must be 'lz4' or 'read'`);
  return bench().forkPeakExtra(sizeBytes, childWork);
}

/**
 * mprotect(PROT_READ) + a SIGSEGV handler that unprotects each page on its first write.
 * With `writes` false only the mprotect is timed (writeNs and faults are 0).
 */
export function mprotectSigsegvWriteOverhead(sizeBytes: number, writes = true): MprotectResult {
  checkSize(sizeBytes);
  return bench().mprotectSigsegvWriteOverhead(sizeBytes, writes);
}

/**
 * `pause` mode: UFFD_FEATURE_WP_ASYNC dirty tracking. Protects the region, writes
 * `dirtyFraction` of its pages (evenly spread), then times a stop-and-copy snapshot
 * (PAGEMAP_SCAN that finds and re-protects the written pages, then a copy of them); then times
 * a rewrite of every page after a fresh protect (the kernel-resolved first-write cost).
 */
export function wpAsyncScan(sizeBytes: number, dirtyFraction: number): WpAsyncScanResult {
  checkSize(sizeBytes);
  checkFraction('dirtyFraction', dirtyFraction);
  return bench().wpAsyncScan(sizeBytes, dirtyFraction);
}

/**
 * The raw write-protect ioctl (sync MODE_WP) on a populated region: the whole region in one
 * call, and `percent` percent (default 1 %) of its pages as 64 KiB runs spread evenly (at
 * least one run when percent > 0). `hugePages` maps the region 2 MiB aligned with MADV_HUGEPAGE.
 * With `idleMs`, the runs are protected again, `idleSamples` times, as a program's next
 * snapshot finds them (partialIdleNs).
 */
export function wpIoctlRaw(sizeBytes: number, percent = 1, options: { hugePages?: boolean; idleMs?: number; idleSamples?: number } = {}): WpIoctlResult {
  checkSize(sizeBytes);
  if (typeof percent !== 'number' || !(percent >= 0 && percent <= 100))
    throw new RangeError(`percent must be a number in [0, 100] (got ${percent})`);
  const idleMs = options.idleMs ?? 0;
  if (!Number.isInteger(idleMs) || idleMs < 0 || idleMs > 10_000) throw new RangeError(`idleMs must be an integer in [0, 10000] (got ${idleMs})`);
  const idleSamples = options.idleSamples ?? 1;
  if (!Number.isInteger(idleSamples) || idleSamples < 1 || idleSamples > 1000) throw new RangeError(`idleSamples must be an integer in [1, 1000] (got ${idleSamples})`);
  return bench().wpIoctlRaw(sizeBytes, percent, options.hugePages === true, idleMs, idleSamples);
}

/** LZ4_compress_default over the region in 64 KiB chunks into a pre-faulted buffer. */
export function lz4Raw(sizeBytes: number): Lz4Result {
  checkSize(sizeBytes);
  return bench().lz4Raw(sizeBytes);
}

/** LZ4_decompress_safe of the region's 64 KiB chunks (compressed beforehand, untimed). */
export function lz4DecodeRaw(sizeBytes: number): Lz4Result {
  checkSize(sizeBytes);
  return bench().lz4DecodeRaw(sizeBytes);
}

/** Eager restore: UFFDIO_COPY 64 KiB at a time into a fresh MODE_MISSING region (with
 *  `wp`, registered MISSING|WP and copied with UFFDIO_COPY_MODE_WP). */
export function uffdioCopyRaw(sizeBytes: number, options: { wp?: boolean } = {}): UffdioCopyResult {
  checkSize(sizeBytes);
  return bench().uffdioCopyRaw(sizeBytes, options.wp === true);
}

/** UFFDIO_ZEROPAGE 64 KiB at a time into a fresh MODE_MISSING region. */
export function uffdioZeroPageRaw(sizeBytes: number): UffdioCopyResult {
  checkSize(sizeBytes);
  return bench().uffdioZeroPageRaw(sizeBytes);
}

/** Fork-server reset as fuzzers do it: per iteration a child writes `dirtyFraction` of the
 *  pages (evenly spread) and _exit()s; the parent waits. */
export function forkReset(sizeBytes: number, dirtyFraction: number, iterations: number): ForkResetResult {
  checkSize(sizeBytes);
  checkFraction('dirtyFraction', dirtyFraction);
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > 1e7)
    throw new RangeError(`iterations must be an integer in [1, 1e7] (got ${iterations})`);
  return bench().forkReset(sizeBytes, dirtyFraction, iterations);
}

/**
 * The primitives under a live-mode reset, in C: `pagesPerReset` random pages written, each
 * first write to a 64 KiB chunk copying it aside and unprotecting it in a SIGBUS handler, then
 * the chunks copied back and re-protected. Throws if the region did not come back.
 */
export function uffdResetRaw(sizeBytes: number, pagesPerReset: number, iterations: number): { ns: number; itersPerSec: number } {
  checkSize(sizeBytes);
  return bench().uffdResetRaw(sizeBytes, pagesPerReset, iterations);
}

/**
 * A C program that keeps running while it is checkpointed: random 8-byte updates in a hot set of
 * `hotFraction` of the 64 KiB chunks (chosen anew each period), `phaseMs` without checkpoints
 * and `phaseMs` with one per period, in alternating blocks of `blockMs`. `fork_bgsave`: fork,
 * the child LZ4-compresses the region and writes it to a file in `dir` (at most 8 children in
 * flight); `memcpy`: copy the region; `uffd_wp_raw`: re-protect the chunks written, unprotect
 * on a write fault (SIGBUS), nothing copied.
 */
export function continuous(sizeBytes: number, hotFraction: number, phaseMs: number, periodMs: number, blockMs: number, kind: CheckpointKind, dir: string): ContinuousResult {
  checkSize(sizeBytes);
  checkFraction('hotFraction', hotFraction);
  return bench().continuous(sizeBytes, hotFraction, phaseMs, periodMs, ({ fork_bgsave: 0, memcpy: 1, uffd_wp_raw: 2 } as const)[kind], dir, blockMs);
}

/**
 * Fills `data` with the benchmark's heap-like bytes: 256-byte blocks, two thirds 64-byte object
 * records and one third pseudo-random, so LZ4 on 64 KiB chunks compresses about 2.1x.
 * Deterministic per seed (an integer below 2^53).
 */
export function fillRealistic(data: Uint8Array, seed = 1): void {
  if (!(data instanceof Uint8Array)) throw new TypeError('data must be a Uint8Array');
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError('seed must be a non-negative integer');
  bench().fillRealistic(data, seed);
}

/**
 * Writes an image file of `sizeBytes` of fillRealistic() data (the stand-in for a saved heap
 * image) and times the write (fs.writeFileSync; with `fsync`, plus fsync).
 */
export function writeImage(file: string, sizeBytes: number, options: { seed?: number; fsync?: boolean } = {}): FileTimingResult {
  checkSize(sizeBytes);
  const data = Buffer.allocUnsafe(sizeBytes);
  fillRealistic(data, options.seed ?? 1);
  const t0 = process.hrtime.bigint();
  const fd = fs.openSync(file, 'w');
  try {
    let off = 0;
    while (off < sizeBytes) off += fs.writeSync(fd, data, off, sizeBytes - off);
    if (options.fsync) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  const ns = Number(process.hrtime.bigint() - t0);
  return { ns, bytes: sizeBytes, bytesPerSec: (sizeBytes * 1e9) / ns };
}

/**
 * The restore baseline of a plain image file: fs.readFileSync of the whole file into a new
 * buffer. The file is usually in the page cache (written just before), so this is the warm
 * figure; drop caches beforehand for a cold one.
 */
export function readImage(file: string): FileTimingResult {
  const t0 = process.hrtime.bigint();
  const buf = fs.readFileSync(file);
  const ns = Number(process.hrtime.bigint() - t0);
  return { ns, bytes: buf.length, bytesPerSec: ns > 0 ? (buf.length * 1e9) / ns : 0 };
}
