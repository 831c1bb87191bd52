import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import * as b from '../lib/bench/baselines';

const SIZE = 8 << 20;
const PAGES = SIZE / 4096;

function positive(...xs: number[]): void {
  for (const x of xs) {
    expect(Number.isFinite(x)).toBe(true);
    expect(x).toBeGreaterThan(0);
  }
}

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

function sigCaught(): string {
  const m = /^SigCgt:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? m[1] : '';
}

function children(): string {
  return fs
    .readdirSync('/proc/self/task')
    .map((t) => {
      try {
        return fs.readFileSync(`/proc/self/task/${t}/children`, 'utf8').trim();
      } catch {
        return '';
      }
    })
    .join(' ')
    .trim();
}

describe('bench baselines', () => {
  let fds0 = 0;
  let sig0 = '';
  let kids0 = '';
  beforeAll(() => {
    fds0 = openFds();
    sig0 = sigCaught();
    kids0 = children();
  });
  afterAll(() => {
    // Nothing left behind: descriptors, signal handlers, children.
    expect(openFds()).toBe(fds0);
    expect(sigCaught()).toBe(sig0);
    expect(children()).toBe(kids0);
  });

  it('memcpyFull', () => {
    const r = b.memcpyFull(SIZE);
    positive(r.ns, r.bytesPerSec);
  });

  it('forkPause', () => {
    const r = b.forkPause(SIZE);
    positive(r.ns, r.baseNs);
  });

  it('forkWriteOverhead', () => {
    const r = b.forkWriteOverhead(SIZE);
    positive(r.forkNs, r.writeNs, r.writeNsPerPage);
    expect(r.pages).toBe(PAGES);
  });

  it('forkPeakExtra', () => {
    for (const work of ['lz4', 'read'] as const) {
      const r = b.forkPeakExtra(SIZE, work);
      positive(r.childSaveNs, r.parentWriteNs);
      expect(r.pages).toBe(PAGES);
      expect(r.extraBytes).toBe(r.extraPages * 4096);
      expect(r.fraction).toBeGreaterThanOrEqual(0);
      expect(r.fraction).toBeLessThanOrEqual(1);
      expect(r.fraction).toBeCloseTo(r.extraBytes / SIZE, 12);
    }
  });

  it('mprotectSigsegvWriteOverhead traps once per page and restores the handler', () => {
    const before = sigCaught();
    const r = b.mprotectSigsegvWriteOverhead(SIZE);
    positive(r.pauseNs, r.writeNs, r.writeNsPerPage);
    expect(r.faults).toBe(PAGES);
    expect(sigCaught()).toBe(before);
    const pauseOnly = b.mprotectSigsegvWriteOverhead(SIZE, false);
    positive(pauseOnly.pauseNs);
    expect([pauseOnly.faults, pauseOnly.writeNs]).toEqual([0, 0]);
  });

  it('wpAsyncScan finds exactly the pages written', () => {
    const r = b.wpAsyncScan(SIZE, 0.25);
    positive(r.pauseNs, r.scanNs, r.copyNs, r.protectNs, r.writeNs, r.writeNsPerPage);
    expect(r.pagesDirtied).toBe(PAGES / 4);
    expect(r.pagesFound).toBe(PAGES / 4);
    expect(r.pages).toBe(PAGES);
    const none = b.wpAsyncScan(SIZE, 0);
    expect(none.pagesFound).toBe(0);
    const all = b.wpAsyncScan(SIZE, 1);
    expect(all.pagesFound).toBe(PAGES);
  });

  it('wpIoctlRaw', () => {
    const r = b.wpIoctlRaw(SIZE, 1);
    positive(r.fullNs, r.unprotectNs, r.partialNs);
    expect(r.pages).toBe(PAGES);
    expect(r.partialIoctls).toBe(Math.round((SIZE / 65536) * 0.01) || 1);
    expect(r.partialPages).toBe(r.partialIoctls * 16);
    expect(r.partialIdleNs).toEqual([]);
    const idle = b.wpIoctlRaw(SIZE, 1, { idleMs: 5, idleSamples: 3 }).partialIdleNs;
    expect(idle.length).toBe(3);
    positive(...idle);
    const ten = b.wpIoctlRaw(SIZE, 10, { hugePages: true });
    expect(ten.partialPages).toBe(Math.round((SIZE / 65536) * 0.1) * 16);
  });

  it('lz4Raw / lz4DecodeRaw compress about 2x', () => {
    const c = b.lz4Raw(SIZE);
    positive(c.ns, c.bytesPerSec, c.compressedBytes);
    expect(c.ratio).toBeGreaterThan(1.7);
    expect(c.ratio).toBeLessThan(2.6);
    const d = b.lz4DecodeRaw(SIZE);
    positive(d.ns, d.bytesPerSec);
    expect(d.compressedBytes).toBe(c.compressedBytes);
  });

  it('uffdioCopyRaw / uffdioZeroPageRaw', () => {
    for (const wp of [false, true]) {
      const r = b.uffdioCopyRaw(SIZE, { wp });
      positive(r.ns, r.bytesPerSec);
      expect(r.ioctls).toBe(SIZE / 65536);
      expect(r.eexist).toBe(0);
    }
    const z = b.uffdioZeroPageRaw(SIZE);
    positive(z.ns, z.bytesPerSec);
    expect(z.eexist).toBe(0);
  });

  it('forkReset', () => {
    const r = b.forkReset(SIZE, 0.1, 5);
    positive(r.ns, r.itersPerSec, r.nsPerIter);
    expect(r.pagesPerIter).toBe(Math.round(PAGES * 0.1));
  });

  it('fillRealistic is deterministic and not zero', () => {
    const a = new Uint8Array(65536);
    const c = Buffer.alloc(65536);
    b.fillRealistic(a, 7);
    b.fillRealistic(c, 7);
    expect(Buffer.compare(Buffer.from(a), c)).toBe(0);
    for (let p = 0; p < 16; p++) expect(a.subarray(p * 4096, (p + 1) * 4096).some((x) => x !== 0)).toBe(true);
    b.fillRealistic(c, 8);
    expect(Buffer.compare(Buffer.from(a), c)).not.toBe(0);
  });

  it('writeImage / readImage', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-bench-'));
    try {
      const file = path.join(dir, 'image.bin');
      const w = b.writeImage(file, SIZE);
      positive(w.ns, w.bytesPerSec);
      expect(fs.statSync(file).size).toBe(SIZE);
      const r = b.readImage(file);
      positive(r.ns, r.bytesPerSec);
      expect(r.bytes).toBe(SIZE);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects bad arguments', () => {
    expect(() => b.memcpyFull(4096)).toThrow(RangeError);
    expect(() => b.wpAsyncScan(SIZE, 1.5)).toThrow(RangeError);
    expect(() => b.wpIoctlRaw(SIZE, 101)).toThrow(RangeError);
    expect(() => b.wpIoctlRaw(SIZE, 1, { idleMs: -1 })).toThrow(RangeError);
    expect(() => b.wpIoctlRaw(SIZE, 1, { idleMs: 5, idleSamples: 0 })).toThrow(RangeError);
    expect(() => b.forkReset(SIZE, 0.1, 0)).toThrow(RangeError);
  });
});
