// faults: 'signal': write faults served on the writing thread in a SIGBUS handler.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Region, Store } from '../lib/index';
import { expectBytesEqual, expectCode, fillPattern } from './helpers';

const MiB = 1 << 20;
const CHUNK = 64 * 1024;

describe("faults: 'signal'", () => {
  it('snapshots and rolls back byte-exact, one fault per 64 KiB chunk, no thread woken', async () => {
    const store = Store.open(':memory:');
    const region = Region.alloc(8 * MiB, { store, name: 'sig', faults: 'signal' });
    const bytes = new Uint8Array(region.buffer);
    fillPattern(bytes, 1, 0, bytes.length);
    const s1 = region.snapshot();
    const want1 = bytes.slice();
    const before = region.stats().faults;
    // One write in each of 20 chunks two apart: no sequential growth, one fault each.
    for (let c = 0; c < 40; c += 2) bytes[c * CHUNK + 100] ^= 0xff;
    expect(region.stats().faults - before).toBe(20);
    const s2 = region.snapshot();
    expect(s2.chunks).toBe(20);
    const want2 = bytes.slice();
    fillPattern(bytes, 9, MiB, 3 * MiB);
    region.restore(s1);
    expectBytesEqual(bytes, want1, 'after restore of s1');
    region.restore(s2.id);
    expectBytesEqual(bytes, want2, 'after restore of s2');
    await Promise.all([s1.persisted, s2.persisted]);
    region.close();
    store.close();
  });

  it('two regions at once; closing one leaves the other served', async () => {
    const a = Region.alloc(2 * MiB, { faults: 'signal' });
    const b = Region.alloc(2 * MiB, { faults: 'signal' });
    const ba = new Uint8Array(a.buffer);
    const bb = new Uint8Array(b.buffer);
    ba.fill(1);
    bb.fill(2);
    const sa = a.snapshot();
    const sb = b.snapshot();
    ba.fill(3);
    bb.fill(4);
    a.close();
    b.restore(sb);
    expect(bb.every((v) => v === 2)).toBe(true);
    bb.fill(5);
    expect(b.snapshot().chunks).toBe(32);
    await sa.persisted;
    b.close();
  });

  it('a kernel write into a protected page fails with EFAULT and changes nothing; unprotect() lets it in', async () => {
    const region = Region.alloc(MiB, { faults: 'signal' });
    expect(region.kernelWritesTrap).toBe(false);
    const bytes = new Uint8Array(region.buffer);
    bytes.fill(7);
    const s1 = region.snapshot();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-sig-'));
    const data = path.join(dir, 'data');
    fs.writeFileSync(data, Buffer.alloc(8192, 0xab));
    const fd = fs.openSync(data, 'r');
    try {
      expect(() => fs.readSync(fd, bytes, 4096, 8192, 0)).toThrow(expect.objectContaining({ code: 'EFAULT' }));
      expect(bytes[4096]).toBe(7);
      region.unprotect(4096, 8192);
      expect(fs.readSync(fd, bytes, 4096, 8192, 0)).toBe(8192);
      expect(bytes[4096]).toBe(0xab);
      const s2 = region.snapshot();
      expect(s2.chunks).toBe(1);
      region.restore(s1);
      expect(bytes.every((v) => v === 7)).toBe(true);
    } finally {
      fs.closeSync(fd);
      fs.rmSync(dir, { recursive: true, force: true });
      region.close();
    }
  });

  it('rejects a bad value, and pause mode, with INVALID_ARGUMENT', () => {
    expectCode(() => Region.alloc(MiB, { faults: 'sigbus' as never }), 'INVALID_ARGUMENT');
    expectCode(() => Region.alloc(MiB, { faults: 'signal', mode: 'pause' }), 'INVALID_ARGUMENT');
  });

  it('a SIGBUS that is not ours still ends the process with SIGBUS', () => {
    const lib = path.resolve(__dirname, '../dist/lib/index.js');
    const child = spawnSync(process.execPath, ['-e', `
      const { Region } = require(${JSON.stringify(lib)});
      const r = Region.alloc(1 << 20, { faults: 'signal' });
      new Uint8Array(r.buffer).fill(1);
      r.snapshot();
      new Uint8Array(r.buffer)[0] = 2;  // ours: served
      process.kill(process.pid, 'SIGBUS');
      setTimeout(() => console.log('survived'), 2000);
    `], { encoding: 'utf8', timeout: 30_000 });
    expect(child.stdout).not.toContain('survived');
    expect(child.signal).toBe('SIGBUS');
  });
});
