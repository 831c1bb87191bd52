// The savers and the store writer run on spare CPU only (SCHED_IDLE); the fault handler does not.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect, it } from 'vitest';
import { Region, Store } from '../lib/index';
import { tmpDir } from './helpers';

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
