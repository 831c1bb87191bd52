// The savers and the store writer run on spare CPU only (SCHED_IDLE); the fault handler does not.
// A snapshot parks them while it write-protects and while the program's write faults follow it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { expect, it } from 'vitest';
import { native } from '../core/native';
import { Region, Store } from '../lib/index';
import { root, tmpDir } from './helpers';

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
  // A worker thread registered as the store writer is, spinning and recording each
  // stall of its loop over 0.5 ms (in absolute ms: each thread has its own timeOrigin).
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    const flags = new Int32Array(workerData.flags);
    require(workerData.addon).thread_set_background();
    Atomics.store(flags, 0, 1);
    const stalls = [];
    let last = performance.timeOrigin + performance.now();
    while (Atomics.load(flags, 1) === 0) {
      const now = performance.timeOrigin + performance.now();
      if (now - last > 0.5) stalls.push([last, now]);
      last = now;
    }
    parentPort.postMessage(stalls);
  `;
  const flags = new Int32Array(new SharedArrayBuffer(8));
  const addon = path.join(root, 'build', 'Release', 'uffd_snapshot.node');
  const worker = new Worker(code, { eval: true, workerData: { flags: flags.buffer, addon } });
  const stallsP = new Promise<[number, number][]>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const region = Region.alloc(64 << 20, { faults: 'signal' });
  const u8 = new Uint8Array(region.buffer);
  u8.fill(1);
  await region.snapshot().persisted;
  while (Atomics.load(flags, 0) === 0) await new Promise((r) => setTimeout(r, 5));
  const before = native().background_park_stats();
  const now = () => performance.timeOrigin + performance.now();
  const bursts: { protected: number; lastFault: number }[] = [];
  for (let i = 0; i < 5; i++) {
    for (let c = 0; c < u8.length; c += 2 << 16) u8[c]++;  // 512 runs of written pages
    region.snapshot();
    const protectedAt = now();
    for (let c = 0; c < u8.length; c += 2 << 16) u8[c]++;  // 512 write faults
    bursts.push({ protected: protectedAt, lastFault: now() });
    await new Promise((r) => setTimeout(r, 30));
  }
  Atomics.store(flags, 1, 1);
  const stalls = await stallsP;
  await worker.terminate();
  const after = native().background_park_stats();
  expect(after.signalsSent - before.signalsSent).toBeGreaterThanOrEqual(5);
  // Parked before the protects ended, and still parked after the last fault of the burst (or
  // until the park's 20 ms cap).
  for (const b of bursts) expect(stalls.some(([from, to]) => from <= b.protected && to >= Math.min(b.lastFault, b.protected + 19))).toBe(true);
  region.close();
});
