import { availableParallelism } from 'node:os';
import { constants as bufferConstants } from 'node:buffer';
import { SnapshotError, fromNative, invalidArgument } from '../core/errors';
import { optBoolean, optString, readOptions } from '../core/options';
import { CHUNK_SIZE, PAGE_SIZE, native, type RegionHandle } from '../core/native';
import { checkPrefetch, nextRecording, prefetchPlan, type PrefetchMode, type PrefetchPlan } from './prefetch';
import { Snapshot, TOKEN } from './snapshot';
import { Store, type PageSource } from '../store/store';
import type { SnapshotMeta } from '../store/writer';
import { Remote, checkRemoteId } from '../store/remote';
import { remotePageSource } from '../store/remote-restore';

export interface RegionOptions {
  /** Where snapshots go. Default: a private in-memory store closed with the region. */
  store?: Store;
  /**
   * `'live'` (default): snapshot() only write-protects; each page is saved before its first
   * write, and the rest in the background. `'pause'`: writes never trap (the kernel records
   * them, UFFD_FEATURE_WP_ASYNC); snapshot() finds the written pages and copies them before it
   * returns. Pause mode has the cheapest writes and suits regions where few pages change
   * between snapshots and no other thread writes during snapshot(); see docs/benchmark.md.
   */
  mode?: 'live' | 'pause';
  /**
   * Back the region with transparent huge pages (MADV_HUGEPAGE): write-protecting 1 GiB then
   * takes ~0.1 ms instead of ~20 ms, so a first snapshot's pause nearly vanishes. Memory is
   * populated 2 MiB at a time, so a sparsely used region takes more of it. Default false.
   */
  hugePages?: boolean;
  /** The region's name in the store. Default: a unique generated name. */
  name?: string;
  /**
   * Which thread serves a live region's write faults. `'thread'` (default): the library's fault
   * handler thread; the writing thread sleeps meanwhile, and writes by the kernel itself
   * (`fs.readSync` into the buffer, `recv`) trap like any other. `'signal'`: the writing thread
   * serves its own fault in a SIGBUS handler (UFFD_FEATURE_SIGBUS) and no thread is woken
   * (on a 2-vCPU VM: half the cost of continuous checkpointing, twice the reset rate; see
   * docs/benchmark.md); but a write by the kernel into a protected page then fails
   * with EFAULT (call `unprotect()` on the range first, as `kernelWritesTrap` says). For
   * programs that checkpoint continuously and do their I/O through copies. Live mode only.
   */
  faults?: 'thread' | 'signal';
  /** Pages unprotected (and saved) per write fault: a power of two, default 16 (one chunk). */
  faultAround?: number;
  /**
   * A write continuing right after the previous fault's pages doubles the group, up to this
   * many pages (power of two, default 512 = 2 MiB): sequential writers trap far less often.
   * Set it to `faultAround` to turn growth off.
   */
  faultAroundMax?: number;
  /**
   * Bytes of raw page copies the fault handler may hold for the background saver (default
   * 64 MiB). When a program rewrites memory faster than it can be compressed, the handler
   * compresses further chunks itself: writes wait longer, memory stays bounded.
   */
  captureBudget?: number;
  /**
   * Threads that compress snapshots in the background (default: 2 where the machine has
   * more than one CPU). More finish a snapshot sooner; they share the CPU with the program.
   */
  saverThreads?: number;
}

export interface RestoreOptions {
  /** The region the snapshot is of: checked against the snapshot when given; the snapshot decides it otherwise. */
  name?: string;
  snapshot: number | Snapshot;
  /**
   * Open the snapshot as a clone: a new region of this name whose history starts at the
   * snapshot (its snapshots are stored under this name, the first one incremental against
   * it). Any number of clones of one snapshot may be open at once. Default: the snapshot's region.
   */
  as?: string;
  /**
   * What a lazy restore fetches in the background. `'recorded'` (the default): the working set
   * an earlier restore of this snapshot recorded, in the order it was first touched, then the
   * rest by address; without a recording, this restore records one (background fetching
   * waits until the program has gone 50 ms without touching a missing chunk, at most 1 s).
   * `'address'`: everything by address at once, recording nothing. `'none'`: only what is
   * touched (recorded; `ready` then waits until something needs the whole region).
   */
  prefetch?: PrefetchMode;
  /** `'pause'` (or `hugePages`) copies the snapshot in before returning instead of lazily. */
  mode?: 'live' | 'pause';
  hugePages?: boolean;
  faultAround?: number;
  faultAroundMax?: number;
  captureBudget?: number;
  saverThreads?: number;
}

/** Region.restore's options, read once and checked. */
interface RestoreChoice {
  wanted: string | undefined;
  as: string | undefined;
  prefetch: PrefetchMode | undefined;
  tuning: Tuning;
  hugePages: boolean;
}

export interface RemoteRestoreOptions extends Omit<RestoreOptions, 'snapshot' | 'as' | 'mode' | 'hugePages'> {
  /** The remote snapshot's id (remote.list()). */
  snapshot: string;
  /**
   * A local store that keeps the restored snapshot once every chunk is in: the region writes
   * its snapshots there, and restoring the same remote snapshot again reads it from there.
   * Default: a private in-memory store closed with the region.
   */
  cache?: Store;
}

function restoreChoice(opts: { name?: unknown; as?: unknown; prefetch?: unknown; hugePages?: unknown } & { [K in (typeof TUNING_KEYS)[number]]?: unknown }): RestoreChoice {
  return {
    wanted: optString('name', opts.name),
    as: optString('as', opts.as),
    prefetch: checkPrefetch(opts.prefetch),
    tuning: checkTuning(opts),
    hugePages: optBoolean('hugePages', opts.hugePages) === true,
  };
}

interface Tuning {
  pauseMode: boolean;
  signalFaults: boolean;
  faultAround: number;
  faultAroundMax: number;
  captureBudget: number;
  saverThreads: number;
}

export interface RegionStats {
  /** Write faults served since the region was created. */
  faults: number;
  /** Pages saved by the fault handler (written before the saver reached them). */
  pagesCapturedOnFault: number;
  /** Of those, pages the handler compressed itself because the capture budget was spent. */
  pagesCompressedOnFault: number;
  /** Pages saved by the background saver. */
  pagesSavedInBackground: number;
  /** Bytes of memory captured into snapshots. */
  bytesCaptured: number;
  /** Background saves redone because a write raced them. */
  savesRedone: number;
  snapshots: number;
  restores: number;
  /** Pages rewritten by in-place restores. */
  pagesRestored: number;
  /** The last snapshot's pause (write-protect), in milliseconds. */
  lastPauseMs: number;
  maxPauseMs: number;
  /** Mean time the handler took per fault, in microseconds. */
  meanFaultUs: number;
  /** Chunks captured for a snapshot but not yet saved. */
  pendingChunks: number;
  /** Pages fault-around unprotected ahead of a write that stayed unchanged, so no snapshot stored them. */
  pagesUnchangedSkipped: number;
}

const TUNING_KEYS = ['mode', 'faults', 'faultAround', 'faultAroundMax', 'captureBudget', 'saverThreads'] as const;
const OPTION_KEYS = ['store', 'name', 'hugePages', ...TUNING_KEYS] as const;
let unnamed = 0;

/**
 * The largest region: its bookkeeping (about 0.04% of its size, allocated up front) stays
 * below ~450 MiB, and Node.js must be able to hold it in one ArrayBuffer (4 GiB on Node 20).
 */
export const MAX_REGION_BYTES = Math.min(2 ** 40, bufferConstants.MAX_LENGTH - (bufferConstants.MAX_LENGTH % CHUNK_SIZE));

function checkSize(size: number, what: string): void {
  if (size > MAX_REGION_BYTES) {
    throw new SnapshotError('INVALID_ARGUMENT', `${what} of ${size} bytes is larger than the largest region (${MAX_REGION_BYTES} bytes)`, {
      hint: MAX_REGION_BYTES < 2 ** 40
        ? `Node.js ${process.version} holds at most ${bufferConstants.MAX_LENGTH} bytes in one ArrayBuffer: use a smaller region (or several), or Node.js 22+ (up to 1 TiB).`
        : 'Regions hold at most 1 TiB: use several regions.',
    });
  }
}

function checkStore(v: unknown): Store | undefined {
  if (v !== undefined && !(v instanceof Store)) throw invalidArgument('store', 'a Store', v);
  return v;
}

function checkPages(what: string, v: unknown, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 512 || ((v as number) & ((v as number) - 1)) !== 0) {
    throw invalidArgument(what, 'a power of two from 1 to 512 (pages)', v);
  }
  return v as number;
}

function checkTuning(opts: { [K in (typeof TUNING_KEYS)[number]]?: unknown }): Tuning {
  if (opts.mode !== undefined && opts.mode !== 'live' && opts.mode !== 'pause') throw invalidArgument('mode', "'live' or 'pause'", opts.mode);
  const faultAround = checkPages('faultAround', opts.faultAround, 16);
  const faultAroundMax = checkPages('faultAroundMax', opts.faultAroundMax, Math.max(512, faultAround));
  if (faultAroundMax < faultAround) throw invalidArgument('faultAroundMax', `a power of two from faultAround (${faultAround}) to 512`, faultAroundMax);
  const captureBudget = (opts.captureBudget ?? 64 << 20) as number;
  if (!Number.isSafeInteger(captureBudget) || captureBudget < 0) throw invalidArgument('captureBudget', 'a non-negative integer (bytes)', captureBudget);
  const saverThreads = (opts.saverThreads ?? (availableParallelism() > 1 ? 2 : 1)) as number;
  if (!Number.isInteger(saverThreads) || saverThreads < 1 || saverThreads > 16) throw invalidArgument('saverThreads', 'an integer from 1 to 16', saverThreads);
  if (opts.faults !== undefined && opts.faults !== 'thread' && opts.faults !== 'signal') throw invalidArgument('faults', "'thread' or 'signal'", opts.faults);
  const signalFaults = opts.faults === 'signal';
  if (signalFaults && opts.mode === 'pause') throw invalidArgument('faults', "'thread' (or nothing) in pause mode, where writes never fault", opts.faults);
  return { pauseMode: opts.mode === 'pause', signalFaults, faultAround, faultAroundMax, captureBudget, saverThreads };
}

/**
 * Page-aligned memory whose contents can be snapshotted while the program keeps running,
 * and rolled back in place. Snapshots are incremental: each stores only the 64 KiB chunks
 * written since the previous one.
 */
/**
 * What `Region.attach` takes: a WebAssembly.Memory, described here because Node's own types
 * leave WebAssembly out. `B` is its buffer: ArrayBuffer, or SharedArrayBuffer for `shared: true`.
 */
export interface WasmMemory<B extends ArrayBufferLike = ArrayBuffer | SharedArrayBuffer> {
  readonly buffer: B;
  grow(delta: number): number;
}

export class Region<B extends ArrayBuffer | SharedArrayBuffer = ArrayBuffer | SharedArrayBuffer> {
  readonly name: string;
  readonly store: Store;
  private handle: RegionHandle | undefined;
  private readonly key: number;
  private readonly ownsStore: boolean;
  private readonly _buffer: B | undefined;
  private readonly memory: WasmMemory<B> | undefined;
  private _size: number;
  private _head: number | null = null;
  /** region_snapshot's [pause ns, full] (cheaper than a result object in a call that starts cold). */
  private readonly snapOut = new Float64Array(2);
  private _ready: Promise<void> = Promise.resolve();
  /** The snapshot Region.restore opened: it and its history may be restored in place too. */
  private origin: number | null = null;
  /** A lazy restore's working set, to store with the snapshot once it is known. */
  private recording: { source: number; prev: Uint32Array | null; records: PrefetchPlan['records']; keep: ((ws: Uint32Array) => void) | undefined } | undefined;
  private traceSource = 0;
  /** The page source id while a lazy restore may still have missing chunks. */
  private source = 0;

  private constructor(init: { size: number; store?: Store; ownsStore?: boolean; name?: string; tuning: Tuning; memory?: WasmMemory<B>; restoreLabel?: string; hugePages?: boolean }) {
    this.ownsStore = !init.store || init.ownsStore === true;
    this.store = init.store ?? Store.open(':memory:');
    if (!(this.store instanceof Store)) throw invalidArgument('store', 'a Store', init.store);
    this.name = init.name ?? `region-${process.pid}-${++unnamed}`;
    this._size = init.size;
    try {
      this.key = this.store._attachRegion(this, init.size);
    } catch (err) {
      if (this.ownsStore) this.store.close();
      throw err;
    }
    try {
      this.handle = native().region_open({
        size: init.size,
        faultAroundPages: init.tuning.faultAround,
        faultAroundMaxPages: init.tuning.faultAroundMax,
        captureBudget: init.tuning.captureBudget,
        saverThreads: init.tuning.saverThreads,
        pauseMode: init.tuning.pauseMode,
        signalFaults: init.tuning.signalFaults,
        hugePages: init.hugePages === true,
        sink: this.store.sink,
        regionKey: this.key,
        ...(init.memory ? { memory: new Uint8Array(init.memory.buffer) } : {}),
        ...(init.restoreLabel ? { restore: { label: init.restoreLabel } } : {}),
      });
    } catch (err) {
      this.store._detachRegion(this.name);
      if (this.ownsStore) this.store.close();
      throw fromNative(err, `cannot create region "${this.name}" of ${init.size} bytes`);
    }
    this.memory = init.memory;
    this._buffer = init.memory ? undefined : (native().region_buffer(this.handle) as B);
  }

  /** Maps `size` bytes of zero-filled memory (rounded up to 64 KiB). */
  static alloc(size: number, options?: RegionOptions): Region<ArrayBuffer> {
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0) throw invalidArgument('size', 'a positive integer (bytes)', size);
    const rounded = Math.ceil(size / CHUNK_SIZE) * CHUNK_SIZE;
    checkSize(rounded, 'a region');
    const opts = readOptions(options, OPTION_KEYS, 'Region.alloc');
    const tuning = checkTuning(opts);
    const name = optString('name', opts.name);
    const hugePages = optBoolean('hugePages', opts.hugePages);
    return new Region<ArrayBuffer>({ size: rounded, store: checkStore(opts.store), name, tuning, hugePages: hugePages === true });
  }

  /**
   * Tracks an existing WebAssembly.Memory in place. Its size must be a multiple of 64 KiB,
   * which every wasm memory is.
   */
  static attach<B extends ArrayBuffer | SharedArrayBuffer>(memory: WasmMemory<B>, options?: RegionOptions): Region<B> {
    // The engine's own getter: a Proxy, or an object that only inherits from Memory.prototype,
    // fails its brand check.
    let buffer: ArrayBuffer | SharedArrayBuffer;
    try {
      buffer = memoryBuffer.call(memory);
    } catch {
      throw invalidArgument('memory', 'a WebAssembly.Memory', memory);
    }
    const opts = readOptions(options, OPTION_KEYS, 'Region.attach');
    const name = optString('name', opts.name);
    if (opts.hugePages) throw invalidArgument('hugePages', 'unset for an attached memory (the engine owns its pages)', opts.hugePages);
    optBoolean('hugePages', opts.hugePages);
    const tuning = checkTuning(opts);
    const size = buffer.byteLength;
    if (size === 0) throw new SnapshotError('INVALID_ARGUMENT', 'the WebAssembly.Memory has no pages', { hint: 'Grow it to at least one page first.' });
    checkSize(size, 'a WebAssembly.Memory');
    return new Region({ size, store: checkStore(opts.store), name, tuning, memory });
  }

  /**
   * A new region holding a stored snapshot. Returns before reading any page: each chunk is
   * read, decoded and copied in on first touch, and a background reader fetches the rest;
   * `ready` resolves when all of it is in memory. The region's next snapshot is incremental
   * against the restored one.
   */
  static restore(store: Store, options: RestoreOptions): Region<ArrayBuffer>;
  /**
   * A new region holding a remote snapshot. Resolves once the manifests are read, before any
   * chunk is fetched: a fetch worker brings each chunk in on first touch (faulted ones first)
   * and, unless `prefetch: 'none'`, all the others in the background. See docs/remote.md.
   */
  static restore(remote: Remote, options: RemoteRestoreOptions): Promise<Region<ArrayBuffer>>;
  static restore(source: Store | Remote, options: RestoreOptions | RemoteRestoreOptions): Region<ArrayBuffer> | Promise<Region<ArrayBuffer>> {
    if (source instanceof Remote) return Region.restoreRemote(source, options);
    if (!(source instanceof Store)) throw invalidArgument('store', 'a Store or a Remote', source);
    const opts = readOptions(options, ['name', 'snapshot', 'as', 'prefetch', 'hugePages', ...TUNING_KEYS], 'Region.restore');
    if (typeof opts.snapshot === 'string') throw invalidArgument('snapshot', 'a local snapshot id (a remote id needs the Remote)', opts.snapshot);
    return Region.fromPageSource(source._pageSource(source._snapshotId(opts.snapshot)), restoreChoice(opts));
  }

  private static async restoreRemote(remote: Remote, options: unknown): Promise<Region<ArrayBuffer>> {
    const opts = readOptions(options, ['name', 'snapshot', 'cache', 'prefetch', 'faultAround', 'faultAroundMax', 'captureBudget', 'saverThreads'], 'Region.restore');
    const choice = restoreChoice(opts);
    const snapshot = opts.snapshot;
    checkRemoteId(snapshot);
    const cache = opts.cache;
    if (cache !== undefined && !(cache instanceof Store)) throw invalidArgument('cache', 'a Store', cache);
    const src = await remotePageSource(remote, snapshot, { ...(cache ? { cache } : {}), prefetch: choice.prefetch !== 'none' });
    try {
      return Region.fromPageSource(src, choice);
    } catch (err) {
      if (src.ownsStore) src.store.close();
      throw err;
    }
  }

  /** A new region filled by a backend's page source (store/restore.ts): the one restore path. */
  private static fromPageSource(src: PageSource, o: RestoreChoice): Region<ArrayBuffer> {
    if (o.wanted !== undefined && src.region !== o.wanted) {
      throw new SnapshotError('REGION_MISMATCH', `snapshot ${src.head} is of region "${src.region}", not "${o.wanted}"`, {
        hint: `Pass name: "${src.region}", or leave name out.`,
      });
    }
    const name = o.as ?? src.region;
    const tuning = o.tuning;
    if (!src.fill || tuning.pauseMode || o.hugePages) {
      // Copied in eagerly: nothing to serve lazily, or a region a lazy restore cannot fill (the
      // kernel resolves pause mode's write faults itself; huge pages arrive 2 MiB at a time).
      const region = new Region<ArrayBuffer>({ size: src.size, store: src.store, ownsStore: src.ownsStore === true, name, tuning, hugePages: o.hugePages });
      region.origin = src.head;
      try {
        region.restore(src.head);
      } catch (err) {
        region.close();
        throw err;
      }
      return region;
    }
    const label = name === src.region ? src.label : `${src.label}, opened as "${name}"`;
    const region = new Region<ArrayBuffer>({ size: src.size, store: src.store, ownsStore: src.ownsStore === true, name, tuning, restoreLabel: label });
    region._head = src.head;
    region.origin = src.head;
    region.source = native().region_source(region.handle!);
    const recording = src.workingSet?.() ?? null;
    const plan = prefetchPlan(o.prefetch, recording);
    native().source_set_order(region.source, plan.order, plan.prefetch, src.recordWorkingSet ? plan.recordQuietMs : 0);
    region.recording = { source: region.source, prev: recording, records: plan.records, keep: src.recordWorkingSet };
    region.traceSource = region.source;
    region._ready = src.fill(region.source);
    native().source_handed_out(region.source);  // a recording's quiet time starts once the program has the memory
    region._ready.then(() => {
      region.source = 0;
      region.saveRecording();
    }, () => {});
    return region;
  }

  private h(): RegionHandle {
    if (!this.handle) throw new SnapshotError('CLOSED', `region "${this.name}" is closed`);
    if (this.memory && this.memory.buffer.byteLength !== this._size) this.trackGrowth(this.handle);
    return this.handle;
  }

  /** A WebAssembly.Memory grew since we last looked: its new pages join the region. */
  private trackGrowth(h: RegionHandle): void {
    try {
      native().region_grow(h, new Uint8Array(this.memory!.buffer));
    } catch (err) {
      throw fromNative(err, `cannot track the growth of region "${this.name}"`);
    }
    this._size = this.memory!.buffer.byteLength;
  }

  /**
   * Grows an attached WebAssembly.Memory to `size` bytes, so that a snapshot taken after it
   * grew (e.g. restored into a fresh memory for a new instance) fits.
   */
  private growMemory(size: number): void {
    try {
      this.memory!.grow((size - this.memory!.buffer.byteLength) / 65536);
    } catch (err) {
      throw new SnapshotError('REGION_MISMATCH', `cannot grow the WebAssembly.Memory of region "${this.name}" to ${size} bytes: ${(err as Error).message}`, {
        hint: 'Create the WebAssembly.Memory with a `maximum` at least as large as the snapshot.',
        cause: err,
      });
    }
    this.h();  // the new pages join the region
  }

  /**
   * The memory. For an attached WebAssembly.Memory, its current buffer (which changes when
   * it grows). Views over an allocated region's buffer become empty after close().
   */
  get buffer(): B {
    this.h();
    return this._buffer ?? this.memory!.buffer;
  }

  /** Bytes tracked; an attached memory's growth is picked up at the next call on the region. */
  get size(): number {
    return this._size;
  }

  /** The snapshot the memory last matched: the parent of the next snapshot. */
  get head(): number | null {
    return this._head;
  }

  /** Resolves when every page of a restored region is in memory. */
  get ready(): Promise<void> {
    return this._ready;
  }

  get closed(): boolean {
    return !this.handle;
  }

  /**
   * Freezes the region's contents at this instant and returns at once: the pages written
   * since the previous snapshot are saved in the background (or when next written).
   */
  snapshot(options?: { label?: string }): Snapshot {
    const h = this.h();
    return this.take(h, checkLabel(options, 'region.snapshot'), false);
  }

  /**
   * Snapshots several regions as one consistent cut: no member's snapshot holds a write made
   * after a write that another member's snapshot misses. Live mode: each member is protected
   * in turn, and a write fault on a member already protected waits (in the kernel) until every
   * member is protected. Pause mode copies member by member: the cut is consistent when no
   * other thread writes the members meanwhile (docs/api.md). Returns the snapshots in order.
   */
  static snapshotAll(regions: readonly Region[], options?: { label?: string }): Snapshot[] {
    if (!Array.isArray(regions) || regions.length === 0) throw invalidArgument('regions', 'a non-empty array of Regions', regions);
    const label = checkLabel(options, 'Region.snapshotAll');
    const handles: RegionHandle[] = [];
    const seen = new Set<Region>();
    for (const [i, r] of regions.entries()) {
      if (!(r instanceof Region)) throw invalidArgument(`regions[${i}]`, 'a Region', r);
      if (seen.has(r)) throw new SnapshotError('INVALID_ARGUMENT', `regions[${i}] ("${r.name}") appears twice`, { hint: 'Pass each region once.' });
      if (r.closed) throw new SnapshotError('INVALID_ARGUMENT', `regions[${i}] ("${r.name}") is closed`, { hint: 'Pass open regions only.' });
      seen.add(r);
      handles.push(r.h());
    }
    const held: RegionHandle[] = [];
    const snaps: Snapshot[] = [];
    try {
      // Nothing here touches a member's memory: a held member's faults wait for the release.
      for (const [i, r] of regions.entries()) {
        held.push(handles[i]!);  // before: a failure after the native protect still releases
        snaps.push(r.take(handles[i]!, label, true));
      }
    } finally {
      for (const h of held) native().region_release(h);
    }
    return snaps;
  }

  private take(h: RegionHandle, label: string | null, hold: boolean): Snapshot {
    const id = this.store._allocateId();
    const meta: SnapshotMeta = {
      id,
      regionId: this.key,
      parent: this._head,
      label,
      createdAt: Date.now(),
      regionSize: this._size,
      full: this._head === null,
    };
    let chunks;
    try {
      chunks = native().region_snapshot(h, id, JSON.stringify(meta), hold, this.snapOut);
    } catch (err) {
      throw fromNative(err, `snapshot of region "${this.name}" failed`);
    }
    const pauseNs = this.snapOut[0]!;
    if (this.snapOut[1]) {
      meta.full = true;
      meta.parent = null;
    }
    const settlement = this.store._track(meta, this.name, chunks);
    this._head = id;
    return new Snapshot(TOKEN, this.store, settlement, {
      id,
      label: meta.label,
      createdAt: new Date(meta.createdAt),
      region: this.name,
      parent: meta.parent,
      chunks: chunks.length,
      pauseMs: pauseNs / 1e6,
    });
  }

  /**
   * Rolls the region back (or forward) in place to a snapshot of it, rewriting only the
   * chunks that differ. Later snapshots continue from it: it becomes their parent.
   * An attached WebAssembly.Memory smaller than the snapshot is grown to its size first; one
   * that grew since keeps its size (memory cannot shrink), the part beyond the snapshot zeroed.
   */
  restore(snapshot: Snapshot | number): void {
    const h = this.h();
    const id = this.store._snapshotId(snapshot);
    if (id === this._head && !this.source) {
      // Back to where it last was, with everything needed decoded in memory: a fuzzer's loop.
      try {
        if (native().region_reset_to_head(h, id)) return;
      } catch (err) {
        throw fromNative(err, `restore of snapshot ${id} into region "${this.name}" failed`);
      }
    }
    const info = this.store._snapshotRegion(id);
    if (info.name !== this.name && (this.origin === null || !this.store.ancestors(this.origin).includes(id))) {
      throw new SnapshotError('REGION_MISMATCH', `snapshot ${id} is of region "${info.name}", not "${this.name}"`, {
        hint: 'Restore it into a region of that name (Region.restore), or open it as a clone: Region.restore(store, { name, snapshot, as }).',
      });
    }
    if (info.size > this._size && this.memory) this.growMemory(info.size);
    if (info.size > this._size) {
      throw new SnapshotError('REGION_MISMATCH', `snapshot ${id} holds ${info.size} bytes; region "${this.name}" has only ${this._size}`);
    }
    this.store._checkChunkRanges(id, info.size);
    if (this.source) this.waitUntilRestored();
    try {
      this.store._withSinkPinned(() => this.rollbackTo(h, id));
    } catch (err) {
      throw fromNative(err, `restore of snapshot ${id} into region "${this.name}" failed`);
    }
    this._head = id;
  }

  private rollbackTo(h: RegionHandle, id: number): void {
    const addon = native();
    const want = this._head === id ? new Set<number>() : this.store._changedBetween(this._head, id);
    for (const c of addon.region_prepare_rollback(h)) want.add(c);
    for (let round = 0; ; round++) {
      const all = Uint32Array.from(want);
      const uncached = addon.region_uncached(h, id, all);
      const sources = this.store._sources(id, uncached);
      if (uncached.length < all.length) {
        const fromStore = new Set(uncached);
        sources.cached = all.filter((c) => !fromStore.has(c));
      }
      const missing = addon.region_rollback(h, this.store.sink, sources, id, this._head === id);
      if (missing.length === 0) return;
      // Another thread wrote more chunks meanwhile: include them and try again.
      if (round > 100) throw new SnapshotError('INTERNAL', 'restore kept racing concurrent writers');
      for (const c of missing) want.add(c);
    }
  }

  /**
   * The chunks first touched while missing, in order, and those the background fetched, in
   * order (each up to 4096), while the region was restored lazily; null otherwise. For tests.
   * @internal
   */
  _restoreTrace(): { faultOrder: number[]; prefetchLog: number[] } | null {
    const t = this.traceSource ? native().source_trace(this.traceSource) : null;
    return t ? { faultOrder: Array.from(t.faultOrder), prefetchLog: Array.from(t.prefetchLog) } : null;
  }

  /** Stores the working set a lazy restore saw (once: when it is complete, or at close). */
  private saveRecording(): void {
    const rec = this.recording;
    if (!rec) return;
    const t = native().source_trace(rec.source);
    this.recording = undefined;
    const next = t && nextRecording(rec.prev, rec.records, t.faultOrder);
    if (next) rec.keep?.(next);
  }

  /** Blocks until a lazy restore has every data chunk in memory (rolling back needs it). */
  private waitUntilRestored(): void {
    const addon = native();
    addon.source_prefetch_all(this.source);
    while (!addon.source_wait_ready(this.source, 1000)) {
      if (!addon.source_stats(this.source).open) break;
    }
    const corrupt = addon.source_stats(this.source).corrupt;
    if (corrupt) {
      throw new SnapshotError('STORE_CORRUPT', `region "${this.name}" could not be fully restored: ${corrupt}`, {
        hint: 'Run `usnap verify` on the store.',
      });
    }
    this.source = 0;
  }

  /**
   * Whether a write by the kernel itself into a write-protected page (`fs.readSync` or
   * `read(2)` into the region, `recv(2)`, ...) is trapped and tracked like a program write.
   * False when the process may only use userfaultfd in user mode (unprivileged, with
   * vm.unprivileged_userfaultfd=0), or with `faults: 'signal'` (a kernel write cannot take the
   * signal): such a syscall then fails with EFAULT and writes nothing
   * to the protected pages, so no snapshot is corrupted. Call `unprotect()` on the target range
   * first to let it through.
   */
  get kernelWritesTrap(): boolean {
    return native().region_kernel_writes_trap(this.h());
  }

  /**
   * Makes [offset, offset + length) writable by the kernel until the next snapshot: pages an
   * in-flight snapshot still has to save are captured first, then write protection is lifted
   * and the range counts as written (the next snapshot saves it). Needed before a syscall
   * writes into the region when `kernelWritesTrap` is false; harmless otherwise.
   */
  unprotect(offset: number, length: number): void {
    const h = this.h();
    if (!Number.isSafeInteger(offset) || offset < 0) throw invalidArgument('offset', 'a non-negative integer', offset);
    if (!Number.isSafeInteger(length) || length < 0) throw invalidArgument('length', 'a non-negative integer', length);
    if (offset + length > this._size) {
      throw new SnapshotError('INVALID_ARGUMENT', `range ${offset}+${length} goes beyond region "${this.name}" (${this._size} bytes)`);
    }
    // Chunks a lazy restore has not brought in yet would fault in kernel mode: finish first.
    if (this.source) this.waitUntilRestored();
    try {
      native().region_unprotect(h, offset, length);
    } catch (err) {
      throw fromNative(err, `unprotect of region "${this.name}" failed`);
    }
  }

  stats(): RegionStats {
    const s = native().region_stats(this.h());
    const pagesPerChunk = CHUNK_SIZE / PAGE_SIZE;
    return {
      faults: s.wpFaults + s.missingFaults,
      pagesCapturedOnFault: s.chunksCapturedByHandler * pagesPerChunk,
      pagesCompressedOnFault: s.chunksEncodedByHandler * pagesPerChunk,
      pagesSavedInBackground: s.chunksSavedInBackground * pagesPerChunk,
      bytesCaptured: s.bytesCaptured,
      savesRedone: s.savesDiscarded,
      snapshots: s.snapshots,
      restores: s.rollbacks,
      pagesRestored: s.pagesRolledBack,
      lastPauseMs: s.lastPauseNs / 1e6,
      maxPauseMs: s.maxPauseNs / 1e6,
      meanFaultUs: s.wpFaults ? s.faultNsTotal / s.wpFaults / 1e3 : 0,
      pendingChunks: s.pendingChunks,
      pagesUnchangedSkipped: s.chunksUnchanged * pagesPerChunk,
    };
  }

  /**
   * Stops tracking and releases the memory. Snapshots already taken still complete.
   * Views over `buffer` become empty. Idempotent.
   */
  close(): void {
    if (!this.handle) return;
    if (this.recording) this.saveRecording();
    const h = this.handle;
    this.handle = undefined;
    if (this.source) this.store._cancelFill(this.source);
    try {
      native().region_close(h);
    } finally {
      this.store._detachRegion(this.name);
      if (this.ownsStore) this.store.close();
    }
  }
}

function checkLabel(options: unknown, where: string): string | null {
  const opts = readOptions(options, ['label'], where);
  if (opts.label !== undefined && (typeof opts.label !== 'string' || opts.label.length > 4096)) {
    throw invalidArgument('label', 'a string of at most 4096 characters', opts.label);
  }
  return (opts.label as string | undefined) ?? null;
}

const memoryBuffer = Object.getOwnPropertyDescriptor(WebAssembly.Memory.prototype, 'buffer')!.get! as (this: unknown) => ArrayBuffer | SharedArrayBuffer;
