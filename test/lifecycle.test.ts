import * as fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Region, Store } from '../lib/index';
import { countFds, countMaps, countThreads, dist, expectBytesEqual, fillPattern, runNode, tmpDir, until } from './helpers';

const MiB = 1 << 20;

describe('lifecycle', () => {
  it('close() while a save is in flight completes the snapshot', async () => {
    const region = Region.alloc(64 * MiB);
    const bytes = new Uint8Array(region.buffer);
    fillPattern(bytes, 3);
    const s = region.snapshot();
    bytes[0] ^= 1;  // a fault mid-save
    region.close();
    const info = await s.persisted;
    expect(info.chunks).toBe(1024);
    expect(info.complete).toBe(true);
  });

  it('close() of a file store mid-save leaves a complete, restorable snapshot', async () => {
    const file = `${tmpDir()}/close.usnap`;
    const store = Store.open(file);
    const region = Region.alloc(32 * MiB, { store, name: 'heap' });
    const bytes = new Uint8Array(region.buffer);
    fillPattern(bytes, 11);
    const image = bytes.slice();
    const s = region.snapshot();
    store.close();  // closes the region too
    expect(region.closed).toBe(true);
    expect((await s.persisted).complete).toBe(true);
    const again = Store.open(file);
    expect(again.list().map((x) => x.id)).toEqual([s.id]);
    expect(again.verify().ok).toBe(true);
    const r2 = Region.restore(again, { name: 'heap', snapshot: s.id });
    expectBytesEqual(new Uint8Array(r2.buffer), image);
    again.close();
  });

  it('a process that exits without close() exits 0 with no signal', () => {
    const file = `${tmpDir()}/exit.usnap`;
    for (const ending of ['', 'process.exit(0);']) {
      const r = runNode(`
        const { Region, Store } = require(${JSON.stringify(dist)});
        const store = Store.open(${JSON.stringify(file)});
        const region = Region.alloc(16 << 20, { store, name: 'r' + Date.now() });
        const b = new Uint8Array(region.buffer);
        for (let i = 0; i < b.length; i += 4096) b[i] = i & 255;
        region.snapshot();
        for (let i = 0; i < b.length; i += 8192) b[i] = 1;  // faults while the saver runs
        region.snapshot();
        const m = Region.alloc(1 << 20);
        new Uint8Array(m.buffer).fill(1);
        m.snapshot();
        ${ending}
      `);
      expect(r.stderr).toBe('');
      expect(r.signal).toBeNull();
      expect(r.status).toBe(0);
    }
    // Whatever was committed is consistent.
    const store = Store.open(file);
    expect(store.verify().ok).toBe(true);
    store.close();
  });

  it('a region in a worker thread is cleaned up when the worker exits', async () => {
    const threads = countThreads();
    const code = `
      const { workerData } = require('node:worker_threads');
      const { Region } = require(workerData);
      const r = Region.alloc(8 << 20);
      new Uint8Array(r.buffer).fill(7);
      r.snapshot();
      new Uint8Array(r.buffer).fill(8, 0, 1 << 20);
    `;
    for (let i = 0; i < 3; i++) {
      const w = new Worker(code, { eval: true, workerData: dist });
      await new Promise<void>((resolve, reject) => {
        w.on('error', reject);
        w.on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`worker exit ${c}`))));
      });
    }
    await until(() => countThreads() <= threads + 1);
    expect(countThreads()).toBeLessThanOrEqual(threads + 1);  // + libuv threads that may start lazily
  });

  it('alloc/snapshot/close cycles leak no fds, threads or mappings', async () => {
    const store = Store.open(':memory:');
    const cycle = async () => {
      const r = Region.alloc(MiB, { store, name: 'leak' });
      new Uint8Array(r.buffer).fill(1, 0, 100_000);
      const s = r.snapshot();
      r.close();
      await s.persisted;
    };
    for (let i = 0; i < 20; i++) await cycle();
    const fds = countFds(), threads = countThreads(), maps = countMaps(1 << 20);
    for (let i = 0; i < 200; i++) await cycle();
    expect(countFds()).toBe(fds);
    expect(countThreads()).toBe(threads);
    expect(countMaps(1 << 20)).toBeLessThanOrEqual(maps + 4);
    store.close();
  });

  it('creates store files with mode 0600', () => {
    const file = `${tmpDir()}/mode.usnap`;
    Store.open(file).close();
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });
});
