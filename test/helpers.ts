import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'vitest';
import { SnapshotError } from '../lib/index';

export const root = path.resolve(__dirname, '..');
export const dist = path.join(root, 'dist', 'lib', 'index.js');

export function tmpDir(prefix = 'usnap-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
export function prng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

export function fillPattern(buf: Uint8Array, seed: number, offset = 0, len = buf.length - offset): void {
  const next = prng(seed);
  for (let i = offset; i < offset + len; i += 4) {
    const v = next();
    buf[i] = v & 0xff;
    if (i + 1 < offset + len) buf[i + 1] = (v >>> 8) & 0xff;
    if (i + 2 < offset + len) buf[i + 2] = (v >>> 16) & 0xff;
    if (i + 3 < offset + len) buf[i + 3] = (v >>> 24) & 0xff;
  }
}

/** First differing offset, or -1. Faster than expect().toEqual on large buffers. */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  const n = a.length - (a.length % 8);
  const a64 = new BigUint64Array(a.buffer, a.byteOffset, n / 8);
  const b64 = new BigUint64Array(b.buffer, b.byteOffset, n / 8);
  for (let i = 0; i < a64.length; i++) {
    if (a64[i] !== b64[i]) {
      for (let j = i * 8; j < i * 8 + 8; j++) if (a[j] !== b[j]) return j;
    }
  }
  for (let j = n; j < a.length; j++) if (a[j] !== b[j]) return j;
  return -1;
}

export function expectBytesEqual(actual: Uint8Array, expected: Uint8Array, what = 'region'): void {
  const d = firstDiff(actual, expected);
  if (d !== -1) {
    throw new Error(`${what} differs at byte ${d} (page ${Math.floor(d / 4096)}): got ${actual[d]}, want ${expected[d]}`);
  }
}

export function expectCode(fn: () => unknown, code: string): SnapshotError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SnapshotError);
    expect((err as SnapshotError).code).toBe(code);
    return err as SnapshotError;
  }
  throw new Error(`expected a SnapshotError with code ${code}, but nothing was thrown`);
}

export async function expectRejectCode(p: Promise<unknown>, code: string): Promise<SnapshotError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(SnapshotError);
    expect((err as SnapshotError).code).toBe(code);
    return err as SnapshotError;
  }
  throw new Error(`expected a rejection with code ${code}`);
}

/** Runs a script in a fresh node process with the compiled package. */
export function runNode(script: string, opts: { env?: NodeJS.ProcessEnv; timeout?: number; args?: string[] } = {}) {
  return spawnSync(process.execPath, ['-e', script, ...(opts.args ?? [])], {
    cwd: root,
    encoding: 'utf8',
    timeout: opts.timeout ?? 600_000,  // a hang detector: far above any run on a loaded machine or a sanitizer build
    env: { ...process.env, ...opts.env },
  });
}

export function countThreads(): number {
  return fs.readdirSync('/proc/self/task').length;
}

export function countFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/**
 * Mappings of at least `minBytes`: with 1 MiB, a leaked region or thread stack shows, V8's 256 KiB
 * heap pages do not. glibc's malloc arenas are left out: each is a 64 MiB-aligned reservation
 * (its used part rw-p, the rest ---p), created as threads come and go, up to 8 per core.
 */
export function countMaps(minBytes = 0): number {
  const arena = 64n << 20n;
  return fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+)/.exec(l);
    if (!m) return false;
    const start = BigInt(`0x${m[1]}`), end = BigInt(`0x${m[2]}`);
    if (m[3] === '---p' && end % arena === 0n) return false;
    if (m[3] === 'rw-p' && start % arena === 0n && l.trimEnd().endsWith(' 0')) return false;
    return end - start >= BigInt(minBytes);
  }).length;
}

/**
 * Waits until `done()` holds (threads and workers are torn down asynchronously), polling; gives
 * up after `capMs` so the assertion that follows reports the real numbers. The cap is far above
 * any teardown time, so a slow machine or a sanitizer build cannot trip it.
 */
export async function until(done: () => boolean, capMs = 60_000): Promise<void> {
  for (const end = Date.now() + capMs; !done() && Date.now() < end;) await new Promise((r) => setTimeout(r, 20));
}
