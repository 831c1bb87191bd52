// store.read and `usnap cat`: a snapshot's bytes without a region, checked like a restore.
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Region, Store } from '../lib/index';
import { expectBytesEqual, expectCode, fillPattern, prng, root, tmpDir } from './helpers';

const CLI = path.join(root, 'dist', 'lib', 'cli', 'main.js');
const CHUNK = 64 * 1024;
const SIZE = 4 << 20;

function usnap(args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { cwd: root, timeout: 30_000, maxBuffer: 64 << 20, env: { ...process.env, NO_COLOR: '1' } });
}

/** expectBytesEqual on copies: views at any offset (it compares 8 bytes at a time). */
function same(actual: Uint8Array, expected: Uint8Array, what: string): void {
  expect(actual.length, what).toBe(expected.length);
  if (!Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(expected)) expectBytesEqual(actual.slice(), expected.slice(), what);
}

let dir: string, file: string, ids: number[];

beforeAll(async () => {
  dir = tmpDir('usnap-read-');
  file = path.join(dir, 'r.usnap');
  const store = Store.open(file);
  const region = Region.alloc(SIZE, { store, name: 'heap' });
  const bytes = new Uint8Array(region.buffer);
  // Data, zero chunks and a chain: each snapshot rewrites some chunks of the one before.
  fillPattern(bytes, 1, 0, SIZE / 2);
  const snaps = [region.snapshot()];
  fillPattern(bytes, 2, 3 * CHUNK + 100, 5 * CHUNK);
  bytes.fill(0, 20 * CHUNK, 22 * CHUNK);
  snaps.push(region.snapshot());
  fillPattern(bytes, 3, SIZE - CHUNK - 7, CHUNK + 7);
  snaps.push(region.snapshot());
  await Promise.all(snaps.map((s) => s.persisted));
  ids = snaps.map((s) => s.id);
  store.close();
});

describe('store.read', () => {
  it('matches `usnap restore -o` byte for byte at random offsets and lengths, and so does `usnap cat`', () => {
    const store = Store.open(file, { readonly: true });
    try {
      for (const id of ids) {
        const img = path.join(dir, `img-${id}.bin`);
        const r = usnap(['restore', file, String(id), '-o', img]);
        expect(r.status, r.stderr.toString()).toBe(0);
        const image = fs.readFileSync(img);
        expect(image.length).toBe(SIZE);
        same(store.read(id, 0, SIZE), image, `snapshot ${id}`);
        const next = prng(id);
        for (let k = 0; k < 200; k++) {
          // Unaligned, within a chunk, across chunk boundaries, up to several chunks, empty.
          const off = next() % SIZE;
          const len = k % 4 === 0 ? next() % 64 : next() % Math.min(SIZE - off + 1, 3 * CHUNK + 5);
          same(store.read(id, off, len), image.subarray(off, off + len), `snapshot ${id} [${off}, +${len})`);
        }
        expect(store.read(id, SIZE, 0).length).toBe(0);
        if (id !== ids[2]) continue;
        for (const [off, len] of [[CHUNK - 3, 10], [SIZE - 1, 1], [12345, 3 * CHUNK]] as const) {
          const c = usnap(['cat', file, String(id), '--offset', String(off), '--length', String(len)]);
          expect(c.status, c.stderr.toString()).toBe(0);
          same(c.stdout, image.subarray(off, off + len), `usnap cat ${id} ${off} ${len}`);
        }
      }
      const whole = usnap(['cat', file, String(ids[1])]);
      same(whole.stdout, fs.readFileSync(path.join(dir, `img-${ids[1]}.bin`)), 'usnap cat (whole)');
      const tail = usnap(['cat', file, String(ids[1]), '--offset', '4032K']);
      expect(tail.stdout.length).toBe(SIZE - 4032 * 1024);
    } finally {
      store.close();
    }
  });

  it('bounds and arguments: INVALID_ARGUMENT; unknown snapshot: NOT_FOUND', () => {
    const store = Store.open(file, { readonly: true });
    try {
      expectCode(() => store.read(ids[0]!, SIZE - 1, 2), 'INVALID_ARGUMENT');
      expectCode(() => store.read(ids[0]!, SIZE + 1, 0), 'INVALID_ARGUMENT');
      expectCode(() => store.read(ids[0]!, -1, 2), 'INVALID_ARGUMENT');
      expectCode(() => store.read(ids[0]!, 0, 1.5), 'INVALID_ARGUMENT');
      expectCode(() => store.read(0, 0, 1), 'INVALID_ARGUMENT');
      expectCode(() => store.read(9999, 0, 1), 'NOT_FOUND');
      const r = usnap(['cat', file, String(ids[0]), '--offset', String(SIZE - 1), '--length', '2']);
      expect(r.status).toBe(1);
      expect(r.stdout.length).toBe(0);
      expect(r.stderr.toString()).toMatch(/\[INVALID_ARGUMENT\]/);
    } finally {
      store.close();
    }
  });

  it('a damaged chunk: STORE_CORRUPT for a read that covers it, exact bytes for one that does not', () => {
    const copy = path.join(dir, 'damaged.usnap');
    fs.copyFileSync(file, copy);
    const db = new Database(copy);
    // A chunk row of the last snapshot: the one near the end of the region.
    const row = db.prepare('SELECT c.chunk, c.blob_id AS blob FROM chunks c WHERE c.snapshot_id = ? AND c.blob_id IS NOT NULL ORDER BY c.chunk DESC LIMIT 1').get(ids[2]) as { chunk: number; blob: number };
    const { data } = db.prepare('SELECT data FROM blobs WHERE id = ?').get(row.blob) as { data: Buffer };
    data[data.length >> 1] ^= 0x40;
    db.prepare('UPDATE blobs SET data = ? WHERE id = ?').run(data, row.blob);
    db.close();
    const store = Store.open(copy, { readonly: true });
    try {
      expectCode(() => store.read(ids[2]!, row.chunk * CHUNK + 10, 1), 'STORE_CORRUPT');
      expectCode(() => store.read(ids[2]!, 0, SIZE), 'STORE_CORRUPT');
      const good = Store.open(file, { readonly: true });
      same(store.read(ids[2]!, 0, CHUNK * 4), good.read(ids[2]!, 0, CHUNK * 4), 'undamaged part');
      good.close();
    } finally {
      store.close();
    }
    const r = usnap(['cat', copy, String(ids[2]), '--offset', String(row.chunk * CHUNK), '--length', '100']);
    expect(r.status).toBe(1);
    expect(r.stdout.length).toBe(0);
    expect(r.stderr.toString()).toMatch(/\[STORE_CORRUPT\]/);
  });
});
