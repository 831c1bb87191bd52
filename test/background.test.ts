// The savers and the store writer run on spare CPU only (SCHED_IDLE); the fault handler does not.
// A snapshot parks them while it write-protects and while the program's write faults follow it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { expect, it } from 'vitest';
import { native } from '../core/native';
import { Region, Store } from '../lib/index';
import { root, tmpDir, until } from './helpers';

const SCHED_IDLE = 5;

function threads(): { comm: string; policy: number }[] {
  return fs.readdirSync('/proc/self/task').flatMap((tid) => {
    try {
      const comm = fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
      const policy = Number(/^policy\s*:\s*(\d+)/m.exec(fs.readFileSync(`/proc/self/task/${tid}/sched`, 'utf8'))?.[1]);
      return [{ comm, policy }];
    } catch {
      return [];  // the thread ended meanwhile
    }
  });
}

it('savers and the store writer are SCHED_IDLE; the fault handler and the program are not', async () => {
  const before = threads().filter((t) => t.policy === SCHED_IDLE).length;
  const store = Store.open(path.join(tmpDir(), 'bg.usnap'));
  const region = Region.alloc(1 << 20, { store, name: 'bg', saverThreads: 2 });
  new Uint8Array(region.buffer).fill(1);
  await region.snapshot().persisted;
  const now = threads();
  expect(now.filter((t) => t.comm === 'usnap-saver').map((t) => t.policy)).toEqual([SCHED_IDLE, SCHED_IDLE]);
  expect(now.filter((t) => t.comm === 'usnap-faults').map((t) => t.policy)).toEqual([0]);
  // The writer worker's thread: one more idle thread besides the two savers.
  expect(now.filter((t) => t.policy === SCHED_IDLE).length - before).toBe(3);
  expect(Number(/^policy\s*:\s*(\d+)/m.exec(fs.readFileSync(`/proc/self/task/${process.pid}/sched`, 'utf8'))?.[1])).toBe(0);
  region.close();
  store.close();
});

it('a snapshot parks a busy background thread through its protects and the write faults after it', async () => {
  // A worker thread registered as the store writer is (SCHED_IDLE, parked by a signal), counting.
  const code = `
    const { workerData } = require('node:worker_threads');
    const shared = new Int32Array(workerData.shared);
    require(workerData.addon).thread_set_background();
    while (Atomics.load(shared, 1) === 0) Atomics.add(shared, 0, 1);
  `;
  const shared = new Int32Array(new SharedArrayBuffer(8));
  // The addon the tests use (npm run test:sanitize points USNAP_ADDON at the sanitized build).
  const addon = process.env.USNAP_ADDON ?? path.join(root, 'build', 'Release', 'uffd_snapshot.node');
  const worker = new Worker(code, { eval: true, workerData: { shared: shared.buffer, addon } });
  const region = Region.alloc(64 << 20, { faults: 'signal' });  // in-memory store: no writer thread
  const u8 = new Uint8Array(region.buffer);
  u8.fill(1);
  await region.snapshot().persisted;
  const counted = () => Atomics.load(shared, 0);
  const spinning = async () => {
    const from = counted();
    await until(() => counted() > from);
  };
  await spinning();
  const before = native().background_park_stats();
  const counts: number[] = [];
  let bursts = 0;
  // A park ends 1 ms after the last fault, so a burst in which this thread stopped that long
  // (preempted: the tests run in parallel, under ASan too) proves nothing and is taken again.
  while (counts.length < 5 && bursts < 40) {
    bursts++;
    await new Promise((r) => setTimeout(r, 40));  // parks take at most half the background's time
    await spinning();
    for (let c = 0; c < u8.length; c += 2 << 16) u8[c]++;  // 512 runs of written pages
    region.snapshot();
    let from = 0;
    let last = performance.now();
    let longestGap = 0;
    for (let c = 0, n = 0; n < 32; c += 2 << 16, n++) {
      u8[c]++;  // write faults
      const now = performance.now();
      longestGap = Math.max(longestGap, now - last);
      last = now;
      if (n === 8) from = counted();
    }
    if (longestGap < 0.8) counts.push(counted() - from);
  }
  Atomics.store(shared, 1, 1);
  await worker.terminate();
  expect(native().background_park_stats().signalsSent - before.signalsSent).toBe(bursts);
  expect(counts.length, `only ${counts.length} of ${bursts} bursts ran without a 0.8 ms stop`).toBe(5);
  // Between the 8th and the 32nd write fault after each snapshot, the worker counted nothing.
  expect(counts.filter((n) => n === 0).length, `counts ${counts.join(', ')}`).toBeGreaterThanOrEqual(4);
  region.close();
});

it('snapshots back to back under continuous write faults still let the background persist', async () => {
  // Each snapshot parks the background until its fault burst ends; here the bursts never end.
  const store = Store.open(path.join(tmpDir(), 'busy.usnap'));
  const region = Region.alloc(64 << 20, { store, name: 'busy', faults: 'signal' });
  const u8 = new Uint8Array(region.buffer);
  u8.fill(1);
  await region.snapshot().persisted;
  let firstPersisted = 0;  // when the first of them persisted (0: not yet)
  const start = performance.now();
  let snapshots = 0;
  let chunk = 0;
  let first: Promise<unknown> | undefined;
  while (performance.now() - start < 10_000 && !firstPersisted) {
    for (let i = 0; i < 4; i++, chunk = (chunk + 7) % 1024) u8[chunk * 65536]!++;
    const s = region.snapshot();
    snapshots++;
    if (!first) first = s.persisted.then(() => (firstPersisted = performance.now()), () => {});
    await new Promise((r) => setImmediate(r));
  }
  // Parks take at most half of the background's time: the first snapshot persists while the
  // program goes on (nothing is waited for at the end).
  expect(firstPersisted, JSON.stringify({ snapshots, park: native().background_park_stats(), stats: region.stats() })).toBeGreaterThan(0);
  expect(snapshots).toBeGreaterThan(20);
  region.close();
  store.close();
});
