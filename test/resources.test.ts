// Resources: 1,000 alloc/snapshot/close cycles (in-memory and file stores, lazy restores) leak
// no file descriptors, threads or mappings, and a closed region's memory goes back to the OS;
// write faults in a steady workload reuse their capture buffers.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Region, Store } from '../lib/index';
import { countFds, countMaps, countThreads, fillPattern, tmpDir, until } from './helpers';

const MiB = 1 << 20;
const dir = tmpDir('usnap-res-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function rssBytes(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return Number(m![1]) * 1024;
}

/** Lets threads that were asked to stop finish exiting (worker teardown is asynchronous). */
async function settle(ms = 50): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, ms / 5));
}

describe('resources', () => {
  it('1,000 alloc/snapshot/close cycles leak no fds, threads or mappings', async () => {
    const store = Store.open(':memory:');
    const cycle = async (i: number) => {
      const r = Region.alloc(MiB, { store, name: `leak${i % 3}` });
      const b = new Uint8Array(r.buffer);
      b.fill(i & 255, 0, 70_000);
      const s1 = r.snapshot();
      b[500_000] = 1;                 // a write fault while s1 may still be saving
      const s2 = r.snapshot();
      r.close();
      await Promise.all([s1.persisted, s2.persisted]);
      await store.delete(s1.id);
      await store.delete(s2.id);
    };
    for (let i = 0; i < 20; i++) await cycle(i);
    await settle();
    const fds = countFds(), threads = countThreads(), maps = countMaps(1 << 20);
    for (let i = 0; i < 1000; i++) await cycle(i);
    await until(() => countFds() === fds && countThreads() <= threads);
    expect(countFds()).toBe(fds);
    expect(countThreads()).toBe(threads);
    expect(countMaps(1 << 20)).toBeLessThanOrEqual(maps + 4);
    store.close();
  });

  it('file stores with lazy restores (writer and reader workers): 30 cycles leak nothing', async () => {
    const file = path.join(dir, 'cycles.usnap');
    const cycle = async (i: number) => {
      const store = Store.open(file);
      const r = Region.alloc(2 * MiB, { store, name: 'x' });
      fillPattern(new Uint8Array(r.buffer), i, 0, 300_000);
      const s = r.snapshot();
      r.close();
      await s.persisted;
      const back = Region.restore(store, { name: 'x', snapshot: s.id });
      await back.ready;
      back.close();
      store.close();
    };
    // Worker threads are torn down asynchronously and V8 keeps some mappings for reuse: the
    // counts plateau after a few cycles (measured), so measure after a warm-up and settle.
    for (let i = 0; i < 20; i++) await cycle(i);
    await settle(500);
    // V8 grows its heap 256 KiB at a time as it likes: count mappings a leaked region (2 MiB)
    // or thread stack (8 MiB) would add.
    const fds = countFds(), threads = countThreads(), maps = countMaps(1 << 20);
    for (let i = 0; i < 30; i++) await cycle(i);
    await until(() => countFds() === fds && countThreads() <= threads && countMaps(1 << 20) <= maps + 4);
    expect(countFds()).toBe(fds);
    expect(countThreads()).toBeLessThanOrEqual(threads);
    expect(countMaps(1 << 20)).toBeLessThanOrEqual(maps + 4);
  });

  it('RSS is returned after close', async () => {
    const store = Store.open(':memory:');
    const before = rssBytes();
    const regions = [];
    for (let i = 0; i < 4; i++) {
      const r = Region.alloc(64 * MiB, { store, name: `rss${i}` });
      new Uint8Array(r.buffer).fill(1);  // 256 MiB resident in total
      await r.snapshot().persisted;      // the captured copies are released when persisted
      regions.push(r);
    }
    const peak = rssBytes();
    expect(peak - before).toBeGreaterThan(200 * MiB);
    for (const r of regions) r.close();
    await until(() => rssBytes() - before < 64 * MiB, 10_000);
    const after = rssBytes();
    // Generous: the allocator and SQLite's page cache may keep some; the regions are gone.
    expect(after - before).toBeLessThan(64 * MiB);
    store.close();
  });

  it('write faults in a steady workload reuse their capture buffers: no fresh pages on the fault path', async () => {
    const region = Region.alloc(64 * MiB, { faults: 'signal' });
    const u8 = new Uint8Array(region.buffer);
    u8.fill(1);
    await region.snapshot().persisted;
    const minorFaults = () => Number(fs.readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[7]);
    let captures = 0;
    let pageFaults = 0;
    for (let period = 0; period < 6; period++) {
      const s = region.snapshot();  // protects the 256 chunks the last period wrote: each write below captures one
      const st0 = region.stats();
      const f0 = minorFaults();
      for (let c = 0; c < 256; c++) u8[c * 2 * 65536]!++;
      if (period >= 2) {
        pageFaults += minorFaults() - f0;
        captures += region.stats().faults - st0.faults;
      }
      await s.persisted;
      await settle(20);
    }
    expect(captures).toBe(4 * 256);
    // A fresh 64 KiB copy buffer costs 16 page faults once the allocator gave the last ones back.
    expect(pageFaults).toBeLessThan(captures);
    region.close();
  });
});
