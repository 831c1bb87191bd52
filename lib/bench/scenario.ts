// One benchmark scenario, run in a fresh Node process by run.ts:
//   node --expose-gc dist/lib/bench/scenario.js '<ScenarioTask JSON>'
// It reports raw samples over IPC (process.send) and exits. Every figure times the real work:
// snapshots go to a FILE store and persist times end when `persisted` resolves (committed in
// SQLite, WAL + synchronous=NORMAL); restored memory is compared byte for byte (untimed).
import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { randomBytes } from 'node:crypto';
import { Region, Remote, Store, type RemoteOptions } from '../index';
import { forEachLimit } from '../../store/remote';
import * as base from './baselines';
import type { BaselineName, MetricId, SampleRow, ScenarioMessage, ScenarioTask } from './types';

const PAGE = 4096;
const CHUNK = 65536;
const MiB = 1 << 20;
/** The store's default batch (Store batchBytes, 8 MiB): sqlite_raw commits the same amount per transaction. */
const STORE_BATCH_BYTES = 8 << 20;

const nowNs = (): bigint => process.hrtime.bigint();
const msSince = (t0: bigint): number => Number(nowNs() - t0) / 1e6;
const gc = (): void => (globalThis as { gc?: () => void }).gc?.();
/** CPU ticks used so far by this process's threads other than the main one. */
function otherThreadsTicks(): number {
  let ticks = 0;
  for (const tid of fs.readdirSync('/proc/self/task')) {
    if (Number(tid) === process.pid) continue;
    try {
      const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);  // utime + stime
    } catch {
      // the thread ended
    }
  }
  return ticks;
}

const SETTLE_MS = 30;

/**
 * A full GC, then wait until the process's other threads are quiet: V8 sweeping after the
 * GC and the store writer checkpointing the WAL after the previous snapshot run on the other
 * vCPU, where every write-protect ioctl interrupts them (a TLB-flush IPI each). Measured here:
 * right after gc() a 1% snapshot of 1 GiB paused 1.2-3 ms, 30 ms later 0.6-0.8 ms. The
 * baselines run in a quiet process too.
 */
async function settle(): Promise<void> {
  gc();
  const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
  const deadline = Date.now() + 5000;
  let last = otherThreadsTicks();
  while (Date.now() < deadline) {
    await sleep(SETTLE_MS);
    const now = otherThreadsTicks();
    if (now === last) return;
    last = now;
  }
}

/** The same even spread as the native baselines (util.h InSpread / SpreadCount). */
function spreadCount(n: number, fraction: number): number {
  return Math.round(n * fraction);
}
function inSpread(i: number, n: number, count: number): boolean {
  return Math.floor(((i + 1) * count) / n) > Math.floor((i * count) / n);
}

/** Read-modify-write of one byte in a page, so the write is real and cannot be elided. */
function touch(u8: Uint8Array, page: number, by = 1): void {
  const o = page * PAGE + 64;
  u8[o] = (u8[o]! + by) & 255;
}

function touchAllPages(u8: Uint8Array): void {
  const pages = u8.length / PAGE;
  for (let p = 0; p < pages; p++) touch(u8, p);
}

/** Writes every page of `percent`% of the 64 KiB chunks, spread evenly; returns the chunk count. */
function dirtyChunks(u8: Uint8Array, percent: number): number {
  const chunks = u8.length / CHUNK;
  const count = spreadCount(chunks, percent / 100);
  for (let c = 0; c < chunks; c++) {
    if (!inSpread(c, chunks, count)) continue;
    for (let p = 0; p < CHUNK / PAGE; p++) touch(u8, c * (CHUNK / PAGE) + p);
  }
  return count;
}

/** Pages selected by an even spread of `fraction` (what forkReset's children write). */
function spreadPages(pages: number, fraction: number): Uint32Array {
  const count = spreadCount(pages, fraction);
  const out = new Uint32Array(count);
  let k = 0;
  for (let i = 0; i < pages; i++) if (inSpread(i, pages, count)) out[k++] = i;
  return out;
}

let fileSeq = 0;
interface Opened {
  store: Store;
  region: Region;
  u8: Uint8Array;
  file: string;
}

/**
 * Starts the store's writer thread, a fixed cost of the store's first snapshot (a Worker: about
 * 10 MiB and a few ms, paid inside that snapshot() call), with a one-chunk region's snapshot.
 * The figures are then the region's steady-state costs; docs/benchmark.md gives the cold one.
 */
async function warmStore(store: Store): Promise<void> {
  const warm = Region.alloc(CHUNK, { store, name: 'warm' });
  new Uint8Array(warm.buffer).fill(1);
  await warm.snapshot().persisted;
  warm.close();
}

/** A fresh file store (writer warmed) with one region of `size`, every page written with fillRealistic data. */
async function openFilled(task: ScenarioTask, size: number, seed: number, fill = size, faults: 'thread' | 'signal' = 'thread'): Promise<Opened> {
  const file = path.join(task.tmpDir, `s${process.pid}-${++fileSeq}.usnap`);
  const store = Store.open(file);
  await warmStore(store);
  const mode = task.pauseMode ? 'pause' : 'live';
  const region = Region.alloc(size, { store, name: 'heap', mode, hugePages: task.hugePages === true, ...(mode === 'live' ? { faults } : {}) });
  const u8 = new Uint8Array(region.buffer);
  base.fillRealistic(fill < size ? u8.subarray(0, fill) : u8, seed);
  return { store, region, u8, file };
}

function removeStore(file: string): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`]) fs.rmSync(f, { force: true });
}

function closeAll(o: Opened): void {
  o.region.close();
  o.store.close();
  removeStore(o.file);
}

function expect(cond: boolean, what: string): void {
  if (!cond) throw new Error(`bench self-check failed: ${what}`);
}

type Samples = Map<string, number[]>;
function push(m: Samples, key: string, v: number): void {
  let a = m.get(key);
  if (!a) m.set(key, (a = []));
  a.push(v);
}

// ---- ours ----

const INCREMENTAL: [MetricId, number][] = [
  ['pause_incremental_1pct', 1],
  ['pause_incremental_10pct', 10],
  ['pause_incremental_100pct', 100],
];

/**
 * Samples of pause_incremental_1pct per run, and of its wp_ioctl_raw baseline per call: a
 * sub-millisecond figure on a shared host needs more than one sample per run.
 */
const SAMPLES_1PCT = 8;

/**
 * pause_full: the first snapshot of a fully written region. pause_incremental_N: then N% of
 * the 64 KiB chunks (spread evenly, every page of each) are written and the next snapshot
 * taken. The figure is the wall time of region.snapshot(), as the program sees it. Each
 * snapshot is awaited (persisted) before the next step, so no saver work overlaps a pause.
 */
async function pause(task: ScenarioTask): Promise<SampleRow[]> {
  const s: Samples = new Map();
  for (let r = 0; r < task.runs; r++) {
    const o = await openFilled(task, task.size, r + 1);
    await settle();
    let t0 = nowNs();
    let snap = o.region.snapshot();
    if (!task.pauseMode) push(s, task.hugePages ? 'pause_full_huge_pages' : 'pause_full', msSince(t0));
    expect(snap.chunks === task.size / CHUNK, `full snapshot holds ${snap.chunks} chunks`);
    await snap.persisted;
    if (task.hugePages) {
      closeAll(o);
      continue;
    }
    for (const [metric, pct] of task.pauseMode ? INCREMENTAL.slice(0, 1) : INCREMENTAL) {
      for (let k = 0; k < (pct === 1 ? SAMPLES_1PCT : 1); k++) {
        const dirtied = dirtyChunks(o.u8, pct);
        await settle();
        t0 = nowNs();
        snap = o.region.snapshot();
        push(s, task.pauseMode ? `${metric}_pause_mode` : metric, msSince(t0));
        expect(snap.chunks >= dirtied, `${metric}: snapshot holds ${snap.chunks} chunks, ${dirtied} were written`);
        await snap.persisted;
      }
    }
    closeAll(o);
  }
  return [...s].map(([metric, ours]) => ({ metric: metric as MetricId, size: task.size, ours }));
}

/** The program rewrites every page right after a snapshot (while that snapshot is being saved). */
async function writeOverhead(task: ScenarioTask): Promise<SampleRow[]> {
  const ours: number[] = [];
  const pages = task.size / PAGE;
  for (let r = 0; r < task.runs; r++) {
    const o = await openFilled(task, task.size, r + 1);
    await settle();
    const snap = o.region.snapshot();
    const t0 = nowNs();
    touchAllPages(o.u8);
    ours.push((msSince(t0) * 1e3) / pages);
    await snap.persisted;
    closeAll(o);
  }
  return [{ metric: task.pauseMode ? 'write_overhead_per_page_pause_mode' : 'write_overhead_per_page', size: task.size, ours }];
}

/**
 * persist_throughput: raw bytes of a full snapshot of a realistic, fully written region
 * divided by the time from snapshot() until `persisted` resolves on a file store.
 * store_ratio: the store file's size after close (checkpointed) / the raw bytes.
 */
async function persist(task: ScenarioTask): Promise<SampleRow[]> {
  const rate: number[] = [];
  const ratio: number[] = [];
  for (let r = 0; r < task.runs; r++) {
    const o = await openFilled(task, task.size, r + 1);
    await settle();
    const t0 = nowNs();
    const snap = o.region.snapshot();
    const info = await snap.persisted;
    const ms = msSince(t0);
    expect(info.rawBytes === task.size, `persisted ${info.rawBytes} raw bytes of ${task.size}`);
    rate.push((info.rawBytes * 1e3) / ms);
    o.region.close();
    o.store.close();
    let stored = 0;
    for (const f of [o.file, `${o.file}-wal`]) if (fs.existsSync(f)) stored += fs.statSync(f).size;
    ratio.push(stored / info.rawBytes);
    removeStore(o.file);
  }
  return [
    { metric: 'persist_throughput', size: task.size, ours: rate },
    { metric: 'store_ratio', size: task.size, ours: ratio },
  ];
}

/**
 * restore_return: Region.restore(store, ...) of a full snapshot until it returns.
 * materialize_throughput: bytes / time from that call until `await region.ready`.
 * The store is written once, closed and reopened (a restore starts from the file);
 * each restored region is checked byte for byte against the original afterwards.
 */
async function restore(task: ScenarioTask): Promise<SampleRow[]> {
  const ret: number[] = [];
  const rate: number[] = [];
  const o = await openFilled(task, task.size, 7);
  const expected = Buffer.from(o.u8);  // a copy
  const snap = o.region.snapshot();
  await snap.persisted;
  o.region.close();
  o.store.close();
  const store = Store.open(o.file);
  for (let r = 0; r < task.runs; r++) {
    await settle();
    const t0 = nowNs();
    const region = Region.restore(store, { name: 'heap', snapshot: snap.id });
    ret.push(msSince(t0));
    await region.ready;
    const ms = msSince(t0);
    rate.push((task.size * 1e3) / ms);
    expect(expected.equals(new Uint8Array(region.buffer)), 'restored memory differs from the snapshot');
    region.close();
  }
  store.close();
  removeStore(o.file);
  return [
    { metric: 'restore_return', size: task.size, ours: ret },
    { metric: 'materialize_throughput', size: task.size, ours: rate },
  ];
}

/** A snapshot of a realistic region of `size` in a closed file store, reopened. */
async function storedSnapshot(task: ScenarioTask, seed: number): Promise<{ store: Store; id: number; expected: Buffer; file: string }> {
  const o = await openFilled(task, task.size, seed);
  const expected = Buffer.from(o.u8);
  const snap = o.region.snapshot();
  await snap.persisted;
  o.region.close();
  o.store.close();
  return { store: Store.open(o.file), id: snap.id, expected, file: o.file };
}

/** The chunks restore_first_work's program uses: a fixed 10%, in a fixed shuffled order. */
function workingSet(chunks: number): Uint32Array {
  const all = Uint32Array.from({ length: chunks }, (_, i) => i);
  let x = 0x2545f491;
  for (let i = chunks - 1; i > 0; i--) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const j = (x >>> 0) % (i + 1);
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return all.slice(0, Math.max(1, Math.round(chunks / 10)));
}

/** Passes the program makes over each chunk it uses (one: it reads every word once). */
const WORK_PASSES = 1;

/** The program: sums every word of each chunk of `order`, WORK_PASSES times, in that order. */
function work(u8: Uint8Array, order: Uint32Array): number {
  const words = new Int32Array(u8.buffer, u8.byteOffset, u8.length >> 2);
  const per = CHUNK >> 2;
  let h = 0;
  for (let k = 0; k < order.length; k++) {
    const from = order[k]! * per;
    for (let pass = 0; pass < WORK_PASSES; pass++) for (let i = from; i < from + per; i++) h = (h + words[i]! * (pass + 1)) | 0;
  }
  return h;
}

/**
 * restore_first_work: from Region.restore until the program above has finished, with the
 * snapshot's recorded working set (ours), without one (baseline no_recording: address-order
 * prefetch, the best a first restore can do), on memory already in place (baseline warm), and
 * the kernel primitive alone (baseline uffdio_copy_raw: UFFDIO_COPY of as many bytes as the
 * program uses into fresh memory, 64 KiB at a time: what any lazy restore pays to put those
 * pages in place). Baseline recording: the one restore in between that records the working
 * set (the default on a snapshot without one: chunks come only as they are touched until
 * the program pauses).
 */
async function firstWork(task: ScenarioTask): Promise<SampleRow[]> {
  const { store, id, expected, file } = await storedSnapshot(task, 11);
  const order = workingSet(task.size / CHUNK);
  const want = work(expected, order);
  const s: Samples = new Map();
  const timed = async (key: string, prefetch: 'address' | undefined, warmToo: boolean) => {
    await settle();
    const t0 = nowNs();
    const region = Region.restore(store, { name: 'heap', snapshot: id, ...(prefetch ? { prefetch } : {}) });
    const u8 = new Uint8Array(region.buffer);
    const h = work(u8, order);
    push(s, key, msSince(t0));
    expect(h === want, 'the program read other bytes than the snapshot holds');
    await region.ready;
    if (warmToo) {
      await settle();
      const t1 = nowNs();
      expect(work(u8, order) === want, 'warm run differs');
      push(s, 'warm', msSince(t1));
    }
    expect(expected.equals(u8), 'restored memory differs from the snapshot');
    region.close();
  };
  for (let r = 0; r < task.runs; r++) await timed('no_recording', 'address', false);
  expect(store._workingSet(id) === null, 'an address-order restore recorded a working set');
  await timed('recording', undefined, false);
  const recorded = store._workingSet(id)?.length ?? 0;
  expect(recorded === order.length, `the recording restore recorded ${recorded} chunks, not the ${order.length} the program used`);
  for (let r = 0; r < task.runs; r++) {
    await timed('ours', undefined, true);
    await settle();
    push(s, 'uffdio_copy_raw', ms(base.uffdioCopyRaw(order.length * CHUNK, { wp: true }).ns));
  }
  process.stderr.write(`first_work: ${order.length} chunks used, ${recorded} recorded, ${store._workingSet(id)?.length ?? 0} at the end\n`);
  store.close();
  removeStore(file);
  const m: MetricId = 'restore_first_work';
  return [
    {
      metric: m,
      size: task.size,
      ours: s.get('ours')!,
      baselines: (['warm', 'no_recording', 'recording', 'uffdio_copy_raw'] as const).map((name) => ({ name, samples: s.get(name)! })),
    },
  ];
}

/**
 * clone_open: Region.restore(..., { as }) of the 10th clone of one snapshot, nine open and
 * fully in memory, until it returns (the clone is usable: its pages come in on touch).
 * Baseline memcpy: copying the region, what a clone by copy costs.
 */
async function clones(task: ScenarioTask): Promise<SampleRow[]> {
  const { store, id, expected, file } = await storedSnapshot(task, 13);
  const ours: number[] = [];
  const copy: number[] = [];
  for (let r = 0; r < task.runs; r++) {
    const open: Region[] = [];
    for (let k = 1; k < 10; k++) {
      open.push(Region.restore(store, { name: 'heap', snapshot: id, as: `clone-${k}` }));
      await open.at(-1)!.ready;
    }
    await settle();
    const t0 = nowNs();
    const tenth = Region.restore(store, { name: 'heap', snapshot: id, as: 'clone-10' });
    ours.push(msSince(t0));
    await tenth.ready;
    expect(expected.equals(new Uint8Array(tenth.buffer)), 'the 10th clone differs from the snapshot');
    for (const c of [...open, tenth]) c.close();
    await settle();
    copy.push(ms(base.memcpyFull(task.size).ns));
  }
  store.close();
  removeStore(file);
  return [{ metric: 'clone_open', size: task.size, ours, baselines: [{ name: 'memcpy', samples: copy }] }];
}

/** Time target of one rollback run (iterations adapt to it). */
const ROLLBACK_RUN_MS = (task: ScenarioTask): number => (task.quick ? 300 : 1000);

/**
 * A fuzzing loop: write 1% of the pages (spread evenly, as forkReset's children do), roll the
 * region back in place to the base snapshot; resets per second over a run of iterations.
 * One untimed warm-up iteration first (its time is reported on stderr).
 */
async function rollback(task: ScenarioTask): Promise<SampleRow[]> {
  const o = await openFilled(task, task.size, 3);
  const pages = spreadPages(task.size / PAGE, 0.01);
  const probe = pages[pages.length >> 1]! * PAGE + 64;
  const original = o.u8[probe]!;
  const snap = o.region.snapshot();
  await snap.persisted;
  const iteration = (it: number): void => {
    for (let k = 0; k < pages.length; k++) touch(o.u8, pages[k]!, it);
    o.region.restore(snap);
  };
  let t0 = nowNs();
  iteration(1);
  const warmMs = msSince(t0);
  expect(o.u8[probe] === original, 'rollback did not restore the written page');
  t0 = nowNs();
  iteration(2);
  const oneMs = Math.max(msSince(t0), 0.01);
  process.stderr.write(`rollback: first reset ${warmMs.toFixed(2)} ms, second ${oneMs.toFixed(2)} ms\n`);
  const iters = Math.min(5000, Math.max(5, Math.ceil(ROLLBACK_RUN_MS(task) / oneMs)));
  const ours: number[] = [];
  for (let r = 0; r < task.runs; r++) {
    await settle();
    t0 = nowNs();
    for (let i = 0; i < iters; i++) iteration(3 + (i % 200));
    ours.push((iters * 1e3) / msSince(t0));
    expect(o.u8[probe] === original, 'rollback did not restore the written page');
  }
  closeAll(o);
  return [{ metric: task.pauseMode ? 'rollback_resets_per_s_pause_mode' : 'rollback_resets_per_s', size: task.size, ours }];
}

function vmStatus(field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'));
  if (!m) throw new Error(`no ${field} in /proc/self/status`);
  return Number(m[1]) * 1024;
}

/** Resets VmHWM to the current RSS (clear_refs 5); false when the kernel refuses. */
function resetPeak(): boolean {
  try {
    fs.writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/** A thread sampling VmRSS every 0.5 ms: a cross-check of VmHWM (which the kernel may update late). */
function startSampler(): { stop(): Promise<number> } {
  const shared = new Float64Array(new SharedArrayBuffer(16));
  const src = `
    const { workerData } = require('node:worker_threads');
    const fs = require('node:fs');
    const a = workerData;
    const buf = Buffer.alloc(4096);
    const fd = fs.openSync('/proc/self/status', 'r');
    while (a[1] === 0) {
      const n = fs.readSync(fd, buf, 0, 4096, 0);
      const m = /VmRSS:\\s+(\\d+) kB/.exec(buf.toString('latin1', 0, n));
      if (m && m[1] * 1024 > a[0]) a[0] = m[1] * 1024;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 0.5);
    }`;
  const w = new Worker(src, { eval: true, workerData: shared });
  return {
    async stop() {
      shared[1] = 1;
      await w.terminate();
      return shared[0]!;
    },
  };
}

/**
 * The region is fully written and resident; a snapshot of all of it is taken and the program
 * at once rewrites every page while the snapshot is captured and persisted. Peak RSS (the
 * larger of VmHWM, reset just before the snapshot, and a 0.5 ms VmRSS sampler thread) minus
 * the RSS just before, as a fraction of the region.
 */
async function peakMemory(task: ScenarioTask): Promise<SampleRow[]> {
  const ours: number[] = [];
  for (let r = 0; r < task.runs; r++) {
    const o = await openFilled(task, task.size, r + 1);
    await settle();
    const sampler = startSampler();
    const hwm = resetPeak();
    const rss0 = vmStatus('VmRSS');
    const snap = o.region.snapshot();
    touchAllPages(o.u8);
    await snap.persisted;
    const sampled = await sampler.stop();
    const hw = hwm ? vmStatus('VmHWM') : 0;
    process.stderr.write(`peak_memory: VmHWM +${((hw - rss0) / MiB).toFixed(1)} MiB, sampled +${((sampled - rss0) / MiB).toFixed(1)} MiB\n`);
    const peak = Math.max(hw, sampled);
    ours.push(Math.max(peak - rss0, PAGE) / task.size);  // floor: one page, the resolution of RSS
    closeAll(o);
  }
  return [{ metric: 'peak_extra_memory', size: task.size, ours }];
}

// ---- a program that keeps running (issue 14) ----

const PERIOD_MS = 100;
const MAX_IN_FLIGHT = 8;
const BATCH = 1000;
/** Each phase (with and without snapshots) lasts this long; runs are fewer than elsewhere. */
const continuousPhaseMs = (task: ScenarioTask): number => (task.quick ? 300 : 5000);
const continuousRuns = (task: ScenarioTask): number => (task.quick ? 1 : Math.min(task.runs, 3));
const HOT: [MetricId, number][] = [
  ['continuous_loss_1pct', 0.01],
  ['continuous_loss_5pct', 0.05],
];

/** A loss below 0.01% (or a gain: noise) is reported as 0.01%, so ratios stay finite. */
const lossFloor = (loss: number): number => Math.max(loss, 1e-4);

function p99(xs: Float64Array | number[]): number {
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]!;
}

const yieldNow = (): Promise<void> => new Promise((res) => setImmediate(res));

/** Blocks with and without snapshots alternate, this long each (see keepRunning). */
const continuousBlockMs = (task: ScenarioTask): number => (task.quick ? 300 : 500);

interface LoopState {
  x: number;
  hotBase: Uint32Array;
}

/**
 * One block of the loop: random 32-bit updates in a hot set of the 64 KiB chunks, chosen anew
 * every 100 ms; with `region`, one snapshot at the start of each period (at most 8 in flight:
 * beyond that the loop waits for the oldest to persist). The event loop runs once per period
 * either way (persisted promises need it). Adds the block's updates, time and 1000-update batch
 * times to `into`.
 */
async function loopBlock(u8: Uint8Array, st: LoopState, blockMs: number, into: LoopTotals, region?: Region, inflight: Promise<unknown>[] = []): Promise<void> {
  const words = new Uint32Array(u8.buffer, u8.byteOffset, u8.byteLength >>> 2);
  const chunks = u8.length / CHUNK;
  const wordsPerChunk = CHUNK / 4;
  const { hotBase } = st;
  const hotCount = hotBase.length;
  let x = st.x;
  let updates = 0;
  const t0 = performance.now();
  const end = t0 + blockMs;
  let nextPeriod = t0;
  let batchStart = t0;
  for (;;) {
    let now = performance.now();
    if (now >= nextPeriod) {
      if (nextPeriod >= end) break;
      if (region) {
        while (inflight.length >= MAX_IN_FLIGHT) await inflight.shift();
        inflight.push(region.snapshot().persisted);
        into.snapshots++;
      }
      for (let i = 0; i < hotCount; i++) {
        x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
        hotBase[i] = ((x >>> 0) % chunks) * wordsPerChunk;
      }
      nextPeriod += PERIOD_MS;
      await yieldNow();
    }
    for (let i = 0; i < BATCH; i++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      const r = x >>> 0;
      const w = hotBase[r % hotCount]! + ((r >>> 12) & (wordsPerChunk - 1));
      words[w] = (words[w]! + 1) | 0;
    }
    updates += BATCH;
    now = performance.now();
    into.batches.push(now - batchStart);
    batchStart = now;
    if (now >= end) break;
  }
  into.updates += updates;
  into.ms += performance.now() - t0;
  st.x = x;
}

interface LoopTotals {
  updates: number;
  ms: number;
  batches: number[];
  snapshots: number;
}

/**
 * The loop for `phaseMs` with snapshots of `region` and `phaseMs` without, on `plain` (an
 * untracked buffer of the same size and contents), in alternating blocks: the speed of a shared
 * host drifts by tens of percent over seconds, and alternating weighs that on both alike.
 * Snapshots still persisting when a block with them ends finish before the next block
 * without (untimed).
 */
async function keepRunning(region: Region, u8: Uint8Array, plain: Uint8Array, hot: number, phaseMs: number, blockMs: number, seed: number): Promise<{ plain: LoopTotals; withSnaps: LoopTotals }> {
  const st: LoopState = { x: seed | 0 || 1, hotBase: new Uint32Array(Math.max(1, Math.round((u8.length / CHUNK) * hot))) };
  const totals = (): LoopTotals => ({ updates: 0, ms: 0, batches: [], snapshots: 0 });
  const without = totals();
  const withSnaps = totals();
  const inflight: Promise<unknown>[] = [];
  for (let spent = 0; spent < phaseMs; spent += blockMs) {
    await loopBlock(plain, st, blockMs, without);
    await loopBlock(u8, st, blockMs, withSnaps, region, inflight);
    await Promise.all(inflight.splice(0));
  }
  return { plain: without, withSnaps };
}

/**
 * continuous_loss_N: the loop above on a live-mode region with a file store, after a full first
 * snapshot has persisted (untimed); blocks with one snapshot per 100 ms alternate with blocks
 * on an untracked copy. Ours = 1 - rate with / rate without, same process.
 * continuous_stall_p99_1pct: p99 of the 1000-update batch times with / without (1% hot set).
 */
async function continuous(task: ScenarioTask): Promise<SampleRow[]> {
  const s: Samples = new Map();
  const phaseMs = continuousPhaseMs(task);
  for (let r = 0; r < continuousRuns(task); r++) {
    for (const [metric, hot] of HOT) {
      // faults: 'signal', as docs/benchmark.md recommends for continuous checkpointing.
      const o = await openFilled(task, task.size, r + 1, task.size, 'signal');
      const plainCopy = new Uint8Array(task.size);
      plainCopy.set(o.u8);
      await o.region.snapshot().persisted;
      await settle();
      const st0 = o.region.stats();
      const { plain, withSnaps } = await keepRunning(o.region, o.u8, plainCopy, hot, phaseMs, continuousBlockMs(task), 7 + r);
      const st1 = o.region.stats();
      const rate = (t: LoopTotals): number => (t.updates * 1e3) / t.ms;
      const loss = lossFloor(1 - rate(withSnaps) / rate(plain));
      push(s, metric, loss);
      if (hot === 0.01) push(s, 'continuous_stall_p99_1pct', p99(withSnaps.batches) / p99(plain.batches));
      process.stderr.write(
        `${metric}: ${(rate(plain) / 1e6).toFixed(1)} -> ${(rate(withSnaps) / 1e6).toFixed(1)} M updates/s (loss ${(loss * 100).toFixed(1)}%), ` +
          `${withSnaps.snapshots} snapshots, p99 batch ${(p99(plain.batches) * 1e3).toFixed(0)} -> ${(p99(withSnaps.batches) * 1e3).toFixed(0)} us, ` +
          `max ${withSnaps.batches.reduce((a, b) => Math.max(a, b), 0).toFixed(1)} ms, faults ${st1.faults - st0.faults}, ` +
          `mean fault ${st1.meanFaultUs.toFixed(1)} us, compressed on fault ${st1.pagesCompressedOnFault - st0.pagesCompressedOnFault} pages\n`,
      );
      expect(withSnaps.snapshots > 0, 'no snapshot taken');
      closeAll(o);
    }
  }
  return [...s].map(([metric, ours]) => ({ metric: metric as MetricId, size: task.size, ours }));
}

/** Writes every page of [firstPage, firstPage + pages) in order. */
function writeRun(u8: Uint8Array, firstPage: number, pages: number): void {
  for (let p = firstPage; p < firstPage + pages; p++) touch(u8, p);
}

/**
 * capture_amplification: chunks an incremental snapshot stores / chunks written, after a
 * program writes (a) 32 sequential runs of 256 KiB, spread over the region, and (b) one 1 MiB
 * run; the worse of the two. capture_faults: the write faults the two patterns took.
 */
async function capture(task: ScenarioTask): Promise<SampleRow[]> {
  const amp: number[] = [];
  const faults: number[] = [];
  const chunks = task.size / CHUNK;
  const ppc = CHUNK / PAGE;
  if (chunks < 32 * 8) throw new Error('capture needs a region of at least 16 MiB');
  for (let r = 0; r < (task.quick ? 1 : task.runs); r++) {
    const o = await openFilled(task, task.size, r + 1);
    await o.region.snapshot().persisted;
    let f0 = o.region.stats().faults;
    for (let i = 0; i < 32; i++) writeRun(o.u8, Math.floor((i * chunks) / 32) * ppc, (256 * 1024) / PAGE);
    let snap = o.region.snapshot();
    const a = snap.chunks / (32 * 4);
    let f = o.region.stats().faults - f0;
    await snap.persisted;
    f0 = o.region.stats().faults;
    writeRun(o.u8, Math.floor(chunks / 2 + chunks / 64) * ppc, MiB / PAGE);
    snap = o.region.snapshot();
    const b = snap.chunks / 16;
    f += o.region.stats().faults - f0;
    await snap.persisted;
    process.stderr.write(`capture: 32 x 256 KiB -> ${a.toFixed(3)}x, 1 MiB -> ${b.toFixed(3)}x, ${f} faults\n`);
    amp.push(Math.max(a, b));
    faults.push(f);
    closeAll(o);
  }
  return [
    { metric: 'capture_amplification', size: task.size, ours: amp },
    { metric: 'capture_faults', size: task.size, ours: faults },
  ];
}

const RESET_PAGES = 16;
const resetMetric = (size: number): MetricId => (size >= 1 << 30 ? 'reset_small_dirty_1g' : 'reset_small_dirty');

/**
 * reset_small_dirty: a fuzzer's loop on a live-mode region: write 16 random pages, reset the
 * region to its base snapshot in place; resets per second over ~1 s. The written pages are
 * checked against the base after the timed loop.
 */
async function resetSmall(task: ScenarioTask): Promise<SampleRow[]> {
  // Quick mode fills 64 MiB of the region only (the loop writes 16 pages; the rest is zero).
  // faults: 'signal', as docs/benchmark.md recommends for a loop that keeps rewriting memory.
  const o = await openFilled(task, task.size, 5, task.quick ? 64 * MiB : task.size, 'signal');
  const pages = task.size / PAGE;
  const original = new Uint8Array(pages);
  for (let p = 0; p < pages; p++) original[p] = o.u8[p * PAGE + 64]!;
  const snap = o.region.snapshot();
  await snap.persisted;
  let x = 12345;
  const written = new Uint32Array(RESET_PAGES);
  const iteration = (it: number): void => {
    for (let k = 0; k < RESET_PAGES; k++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      written[k] = (x >>> 0) % pages;
      touch(o.u8, written[k]!, 1 + (it % 200));
    }
    o.region.restore(snap);
  };
  const check = (): void => {
    for (const p of written) expect(o.u8[p * PAGE + 64] === original[p], `page ${p} not reset`);
  };
  iteration(0);
  check();
  let t0 = nowNs();
  for (let i = 0; i < 20; i++) iteration(i);
  const oneMs = Math.max(msSince(t0) / 20, 0.001);
  const iters = Math.min(200_000, Math.max(50, Math.ceil(ROLLBACK_RUN_MS(task) / oneMs)));
  const ours: number[] = [];
  for (let r = 0; r < (task.quick ? 1 : task.runs); r++) {
    await settle();
    const st0 = o.region.stats();
    t0 = nowNs();
    for (let i = 0; i < iters; i++) iteration(i);
    ours.push((iters * 1e3) / msSince(t0));
    check();
    const st1 = o.region.stats();
    if (r === 0) process.stderr.write(`${resetMetric(task.size)}: ${((st1.faults - st0.faults) / iters).toFixed(1)} faults, ${((st1.pagesRestored - st0.pagesRestored) / iters).toFixed(1)} pages copied per reset\n`);
  }
  closeAll(o);
  return [{ metric: resetMetric(task.size), size: task.size, ours }];
}

// ---- baselines (each native call is one trial on a region it maps and fills itself) ----

function collect(runs: number, fns: Record<string, () => void>): void {
  // Interleave the trials so slow phases of a noisy machine spread over all of them.
  for (let r = 0; r < runs; r++) for (const f of Object.values(fns)) f();
}

function rows(size: number, byMetric: Map<MetricId, Map<BaselineName, number[]>>): SampleRow[] {
  return [...byMetric].map(([metric, m]) => ({ metric, size, baselines: [...m].map(([name, samples]) => ({ name, samples })) }));
}

/** The pause-mode twins of a metric share its baselines. */
const TWIN: Partial<Record<MetricId, MetricId>> = {
  pause_full: 'pause_full_huge_pages',
  pause_incremental_1pct: 'pause_incremental_1pct_pause_mode',
  write_overhead_per_page: 'write_overhead_per_page_pause_mode',
  rollback_resets_per_s: 'rollback_resets_per_s_pause_mode',
};

class BaselineSamples {
  readonly m = new Map<MetricId, Map<BaselineName, number[]>>();
  add(metric: MetricId, name: BaselineName, v: number): void {
    this.addOne(metric, name, v);
    const twin = TWIN[metric];
    if (twin) this.addOne(twin, name, v);
  }
  private addOne(metric: MetricId, name: BaselineName, v: number): void {
    let mm = this.m.get(metric);
    if (!mm) this.m.set(metric, (mm = new Map()));
    let a = mm.get(name);
    if (!a) mm.set(name, (a = []));
    a.push(v);
  }
}

const ms = (ns: number): number => ns / 1e6;

function pauseBaselines(task: ScenarioTask): SampleRow[] {
  const b = new BaselineSamples();
  const size = task.size;
  const all: MetricId[] = ['pause_full', ...INCREMENTAL.map(([m]) => m)];
  collect(task.runs, {
    memcpy: () => {
      const v = ms(base.memcpyFull(size).ns);  // a full copy: the stop-and-copy snapshot
      for (const m of all) b.add(m, 'memcpy', v);
    },
    fork: () => {
      const v = ms(base.forkPause(size).ns);  // fork() returns in the parent: a fork-based snapshot's pause
      for (const m of all) b.add(m, 'fork', v);
    },
    mprotect: () => {
      const v = ms(base.mprotectSigsegvWriteOverhead(size, false).pauseNs);  // mprotect(PROT_READ) of the region
      for (const m of all) b.add(m, 'mprotect_sigsegv', v);
    },
    wpIoctl: () => {
      // The bare write-protect a snapshot needs: one ioctl over the whole region for a full
      // (or 100%) snapshot; one per written 64 KiB chunk (spread like ours) for 1% and 10%,
      // in the state ours meets: the chunks written, then a settle's idle time. _warm: the
      // same ioctls right after a walk of the whole region, which no program's snapshot meets.
      const one = base.wpIoctlRaw(size, 1, { idleMs: SETTLE_MS, idleSamples: SAMPLES_1PCT });
      const ten = base.wpIoctlRaw(size, 10, { idleMs: SETTLE_MS });
      b.add('pause_full', 'wp_ioctl_raw', ms(one.fullNs));
      b.add('pause_incremental_100pct', 'wp_ioctl_raw', ms(one.fullNs));
      for (const ns of one.partialIdleNs) b.add('pause_incremental_1pct', 'wp_ioctl_raw', ms(ns));
      b.add('pause_incremental_10pct', 'wp_ioctl_raw', ms(ten.partialIdleNs[0]!));
      b.add('pause_incremental_1pct', 'wp_ioctl_raw_warm', ms(one.partialNs));
      b.add('pause_incremental_10pct', 'wp_ioctl_raw_warm', ms(ten.partialNs));
    },
    wpAsync: () => {
      // Stop-and-copy with WP_ASYNC tracking: PAGEMAP_SCAN + copy of the written pages.
      const full = ms(base.wpAsyncScan(size, 1).pauseNs);
      b.add('pause_full', 'wp_async_scan', full);
      b.add('pause_incremental_100pct', 'wp_async_scan', full);
      b.add('pause_incremental_1pct', 'wp_async_scan', ms(base.wpAsyncScan(size, 0.01).pauseNs));
      b.add('pause_incremental_10pct', 'wp_async_scan', ms(base.wpAsyncScan(size, 0.1).pauseNs));
    },
  });
  return rows(size, b.m);
}

function writeOverheadBaselines(task: ScenarioTask): SampleRow[] {
  const b = new BaselineSamples();
  const m: MetricId = 'write_overhead_per_page';
  collect(task.runs, {
    fork: () => b.add(m, 'fork', base.forkWriteOverhead(task.size).writeNsPerPage / 1e3),
    mprotect: () => b.add(m, 'mprotect_sigsegv', base.mprotectSigsegvWriteOverhead(task.size).writeNsPerPage / 1e3),
    wpAsync: () => b.add(m, 'wp_async_scan', base.wpAsyncScan(task.size, 0.01).writeNsPerPage / 1e3),
  });
  return rows(task.size, b.m);
}

/**
 * Raw better-sqlite3: insert the region's 64 KiB chunks (fillRealistic data, uncompressed) as
 * blobs into a rowid table, WAL + synchronous=NORMAL, one transaction per STORE_BATCH_BYTES
 * (the store's default batch). Raw bytes per second until the last commit returns.
 */
function sqliteRaw(task: ScenarioTask, seed: number): number {
  const data = Buffer.allocUnsafe(task.size);
  base.fillRealistic(data, seed);
  const file = path.join(task.tmpDir, `raw${process.pid}-${++fileSeq}.sqlite`);
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec('CREATE TABLE blobs (id INTEGER PRIMARY KEY, chunk INTEGER NOT NULL, data BLOB NOT NULL)');
    const ins = db.prepare('INSERT INTO blobs (chunk, data) VALUES (?, ?)');
    const perTx = STORE_BATCH_BYTES / CHUNK;
    const chunks = task.size / CHUNK;
    const batch = db.transaction((from: number) => {
      for (let c = from; c < Math.min(chunks, from + perTx); c++) ins.run(c, data.subarray(c * CHUNK, (c + 1) * CHUNK));
    });
    gc();
    const t0 = nowNs();
    for (let c = 0; c < chunks; c += perTx) batch(c);
    return (task.size * 1e3) / msSince(t0);
  } finally {
    db.close();
    removeStore(file);
  }
}

function persistBaselines(task: ScenarioTask): SampleRow[] {
  const b = new BaselineSamples();
  let seed = 0;
  collect(task.runs, {
    lz4: () => {
      const r = base.lz4Raw(task.size);
      b.add('persist_throughput', 'lz4_raw', r.bytesPerSec);
      b.add('store_ratio', 'lz4_raw', r.compressedBytes / task.size);
    },
    sqlite: () => b.add('persist_throughput', 'sqlite_raw', sqliteRaw(task, ++seed)),
  });
  return rows(task.size, b.m);
}

function restoreBaselines(task: ScenarioTask): SampleRow[] {
  const b = new BaselineSamples();
  const file = path.join(task.tmpDir, `image${process.pid}.bin`);
  base.writeImage(file, task.size, { seed: 7 });
  try {
    collect(task.runs, {
      read: () => {
        const r = base.readImage(file);  // warm page cache, like the store file ours reads
        b.add('restore_return', 'read_image', ms(r.ns));
        b.add('materialize_throughput', 'read_image', r.bytesPerSec);
      },
      copy: () => b.add('materialize_throughput', 'uffdio_copy_raw', base.uffdioCopyRaw(task.size, { wp: true }).bytesPerSec),
    });
  } finally {
    fs.rmSync(file, { force: true });
  }
  return rows(task.size, b.m);
}

function rollbackBaselines(task: ScenarioTask): SampleRow[] {
  const b = new BaselineSamples();
  const m: MetricId = 'rollback_resets_per_s';
  const cal = base.forkReset(task.size, 0.01, 3);
  const iters = Math.min(5000, Math.max(5, Math.ceil((ROLLBACK_RUN_MS(task) * 1e6) / cal.nsPerIter)));
  collect(task.runs, {
    forkReset: () => b.add(m, 'fork_reset', base.forkReset(task.size, 0.01, iters).itersPerSec),
    memcpy: () => b.add(m, 'memcpy', 1e9 / base.memcpyFull(task.size).ns),  // copy the whole region back per reset
  });
  return rows(task.size, b.m);
}

function resetSmallBaselines(task: ScenarioTask): SampleRow[] {
  const b = new BaselineSamples();
  const m = resetMetric(task.size);
  const fraction = RESET_PAGES / (task.size / PAGE);
  const cal = base.forkReset(task.size, fraction, 3);
  const iters = Math.min(5000, Math.max(5, Math.ceil((ROLLBACK_RUN_MS(task) * 1e6) / cal.nsPerIter)));
  collect(task.quick ? 1 : task.runs, {
    forkReset: () => b.add(m, 'fork_reset', base.forkReset(task.size, fraction, iters).itersPerSec),
    memcpy: () => b.add(m, 'memcpy', 1e9 / base.memcpyFull(task.size).ns),
    // The kernel primitive a live-mode reset cannot do without: re-protecting the 16 written
    // 64 KiB groups, one UFFDIO_WRITEPROTECT each (resets/s if that were all a reset cost).
    wpIoctl: () => {
      const r = base.wpIoctlRaw(task.size, (100 * RESET_PAGES) / (task.size / CHUNK));
      b.add(m, 'wp_ioctl_raw', 1e9 / r.partialNs);
    },
    // And with the write faults: each saves its chunk and unprotects it on the writing thread.
    uffdReset: () => b.add(m, 'uffd_reset_raw', base.uffdResetRaw(task.size, RESET_PAGES, 2000).itersPerSec),
  });
  return rows(task.size, b.m);
}

/** The same loop in C, checkpointed by fork + an LZ4-saving child, or by a copy of the region. */
function continuousBaselines(task: ScenarioTask): SampleRow[] {
  const b = new BaselineSamples();
  const phaseMs = continuousPhaseMs(task);
  for (let r = 0; r < continuousRuns(task); r++) {
    for (const [metric, hot] of HOT) {
      for (const kind of ['fork_bgsave', 'memcpy', 'uffd_wp_raw'] as const) {
        const c = base.continuous(task.size, hot, phaseMs, PERIOD_MS, continuousBlockMs(task), kind, task.tmpDir);
        b.add(metric, kind, lossFloor(c.loss));
        if (hot === 0.01) b.add('continuous_stall_p99_1pct', kind, c.batchP99Ns / c.batchP99NsPlain);
        process.stderr.write(`${metric} ${kind}: ${(c.updatesPerSecPlain / 1e6).toFixed(0)} -> ${(c.updatesPerSec / 1e6).toFixed(0)} M updates/s, loss ${(c.loss * 100).toFixed(1)}%, p99 batch ${(c.batchP99NsPlain / 1e3).toFixed(1)} -> ${(c.batchP99Ns / 1e3).toFixed(1)} us\n`);
      }
      // The kernel primitive a live-mode snapshot cannot do without: re-protecting the hot
      // chunks, one UFFDIO_WRITEPROTECT per 64 KiB chunk; as a fraction of the period.
      b.add(metric, 'wp_ioctl_raw', base.wpIoctlRaw(task.size, hot * 100).partialNs / 1e6 / PERIOD_MS);
    }
  }
  return rows(task.size, b.m);
}

function peakMemoryBaselines(task: ScenarioTask): SampleRow[] {
  const b = new BaselineSamples();
  collect(task.runs, { fork: () => b.add('peak_extra_memory', 'fork', Math.max(base.forkPeakExtra(task.size, 'lz4').fraction, PAGE / task.size)) });
  return rows(task.size, b.m);
}

const SCENARIOS: Record<ScenarioTask['scenario'], (t: ScenarioTask) => SampleRow[] | Promise<SampleRow[]>> = {
  pause,
  pause_baselines: pauseBaselines,
  write_overhead: writeOverhead,
  write_overhead_baselines: writeOverheadBaselines,
  persist,
  persist_baselines: persistBaselines,
  restore,
  restore_baselines: restoreBaselines,
  rollback,
  rollback_baselines: rollbackBaselines,
  peak_memory: peakMemory,
  peak_memory_baselines: peakMemoryBaselines,
  first_work: firstWork,
  clones,
  remote,
  continuous,
  continuous_baselines: continuousBaselines,
  capture,
  reset_small: resetSmall,
  reset_small_baselines: resetSmallBaselines,
};

/** Remote.open options for the S3 server an env file of scripts/s3-server.sh describes. */
function s3Options(file: string): RemoteOptions {
  const v: Record<string, string> = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)="?(.*?)"?$/.exec(line);
    if (m) v[m[1]!] = m[2]!;
  }
  return { endpoint: v.AWS_ENDPOINT_URL!, region: v.AWS_REGION!, credentials: { accessKeyId: v.AWS_ACCESS_KEY_ID!, secretAccessKey: v.AWS_SECRET_ACCESS_KEY! } };
}

/**
 * remote_push_throughput: region bytes / time of store.push of one full snapshot to an empty
 * bucket; baseline raw_put: PUT of the same chunk objects' bytes with the same client and
 * concurrency (16), no hashing, no presence listing, no manifest.
 * remote_restore_return: Region.restore(remote, ...) in a fresh Remote (no cached manifest)
 * until it returns. remote_bytes_fetched_10pct: bytes downloaded while touching 10% of the
 * chunks (spread evenly, prefetch: 'none'), as a fraction of the bytes the push uploaded.
 */
async function remote(task: ScenarioTask): Promise<SampleRow[]> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const opts = s3Options(task.s3env!);
  const push: number[] = [];
  const raw: number[] = [];
  const ret: number[] = [];
  const fetched: number[] = [];
  const o = await openFilled(task, task.size, 13);
  await o.region.snapshot().persisted;
  const expected = Buffer.from(o.u8);
  o.region.close();
  const nChunks = task.size / CHUNK;
  for (let r = 0; r < task.runs; r++) {
    const url = `s3://usnap-bench-${randomBytes(6).toString('hex')}/run`;
    const pusher = await Remote.open(url, { ...opts, createBucket: true });
    await settle();
    let t0 = nowNs();
    const res = await o.store.push(pusher);
    push.push((task.size * 1e3) / msSince(t0));
    expect(res.chunksUploaded > 0, 'push uploaded nothing');
    // The same bytes, raw: one PUT per chunk object body the push sent.
    const bodies = o.store._blobIds(o.store.list().at(-1)!.id).flatMap((b) => (b.blob === null ? [] : [o.store._blob(b.blob)!.data]));
    await settle();
    t0 = nowNs();
    await forEachLimit(bodies.keys(), pusher.concurrency, (i) => pusher.put(`raw/${i}`, bodies[i]!));
    raw.push((task.size * 1e3) / msSince(t0));
    await pusher.close();
    const reader = await Remote.open(url, opts);
    await settle();
    t0 = nowNs();
    const region = await Region.restore(reader, { name: 'heap', snapshot: res.snapshots.at(-1)!.id, prefetch: 'none' });
    ret.push(msSince(t0));
    const before = reader.stats().bytesDownloaded;
    const u8 = new Uint8Array(region.buffer);
    const step = 10;
    for (let c = 0; c < nChunks; c += step) {
      expect(u8[c * CHUNK + 1] === expected[c * CHUNK + 1], 'restored memory differs from the snapshot');
    }
    fetched.push((reader.stats().bytesDownloaded - before) / res.bytesUploaded);
    region.close();
    await reader.close();
  }
  closeAll({ ...o, region: { close() {} } as Region });
  removeStore(o.file);
  return [
    { metric: 'remote_push_throughput', size: task.size, ours: push, baselines: [{ name: 'raw_put', samples: raw }] },
    { metric: 'remote_restore_return', size: task.size, ours: ret },
    { metric: 'remote_bytes_fetched_10pct', size: task.size, ours: fetched },
  ];
}

async function main(): Promise<void> {
  let msg: ScenarioMessage;
  try {
    const task = JSON.parse(process.argv[2] ?? '') as ScenarioTask;
    const fn = SCENARIOS[task.scenario];
    if (!fn) throw new Error(`unknown scenario ${task.scenario}`);
    if (!Number.isSafeInteger(task.size) || task.size <= 0 || task.size % CHUNK !== 0) throw new Error(`bad size ${task.size}`);
    msg = { ok: true, rows: await fn(task) };
  } catch (err) {
    msg = { ok: false, error: (err as Error).stack ?? String(err) };
  }
  if (process.send) {
    process.send(msg, () => process.exit(msg.ok ? 0 : 1));
  } else {
    process.stdout.write(JSON.stringify(msg) + '\n', () => process.exit(msg.ok ? 0 : 1));
  }
}

void main();
