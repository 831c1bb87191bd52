// Lazy restore from a remote in a fresh process with no local store (Ceph RGW; scripts/s3-server.sh).
import { createHash, randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Region, Store, type Remote } from '../lib/index';
import { dist, expectBytesEqual, runNode, tmpDir } from './helpers';
import { freshUrl, openRemote, s3ChildEnv } from './remote-helpers';

const MiB = 1 << 20;
const CHUNK = 65536;
const SIZE = 64 * MiB;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Runs `body` in a fresh node process that opens the remote from the AWS_* variables only. */
function child(url: string, body: string) {
  const script = `
    const { Region, Remote, Store } = require(${JSON.stringify(dist)});
    const { createHash } = require('node:crypto');
    const sha = (b) => createHash('sha256').update(b).digest('hex');
    const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
    (async () => {
      const remote = await Remote.open(${JSON.stringify(url)});
      ${body}
      await remote.close();
    })().catch((e) => { console.error(String(e && e.stack || e), e && e.code); process.exit(3); });`;
  const r = runNode(script, { env: { ...s3ChildEnv(), AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' }, timeout: 90_000 });
  if (r.status !== 0) throw new Error(`child failed (status ${r.status}, signal ${r.signal}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

describe('lazy restore from a remote', () => {
  let dir: string;
  let url: string;
  let remote: Remote;
  const images: Buffer[] = [];
  let ids: string[] = [];

  beforeAll(async () => {
    dir = tmpDir('usnap-remote-restore-');
    url = freshUrl('lazy');
    // A 64 MiB region (random, so nothing compresses or dedups) and a chain of 5 snapshots.
    const store = Store.open(path.join(dir, 'src.db'));
    const region = Region.alloc(SIZE, { store, name: 'app' });
    const mem = new Uint8Array(region.buffer);
    for (let i = 0; i < 5; i++) {
      if (i === 0) for (let o = 0; o < SIZE; o += MiB) mem.set(randomBytes(MiB), o);
      else for (let c = i * 3; c < SIZE / CHUNK; c += 37) mem.set(randomBytes(4096), c * CHUNK + i * 4096);
      await region.snapshot({ label: `s${i}` }).persisted;
      images.push(Buffer.from(mem));
    }
    region.close();
    remote = await openRemote(url);
    const pushed = await store.push(remote);
    ids = pushed.snapshots.map((s) => s.id);
    expect(ids.length).toBe(5);
    store.close();
  }, 300_000);

  afterAll(async () => {
    await remote?.close();
  });

  it('a fresh process with no local store restores the 5th snapshot byte-exact; touching 10% of chunks fetches at most 20% of the image; a cache keeps it', () => {
    const cache = path.join(dir, 'cache.db');
    const r = child(
      url,
      `
      const id = ${JSON.stringify(ids[4])};
      // 1: only what is touched. One byte in every 10th chunk: 10% of the chunks.
      const lazy = await Region.restore(remote, { name: 'app', snapshot: id, prefetch: 'none' });
      const afterReturn = remote.stats();
      const mem = new Uint8Array(lazy.buffer);
      const touched = [];
      for (let c = 0; c < ${SIZE / CHUNK}; c += 10) touched.push(sha(mem.subarray(c * 65536, (c + 1) * 65536)));
      await new Promise((r) => setTimeout(r, 300));  // a prefetch would show up here
      const afterTouch = remote.stats();
      lazy.close();
      // 2: everything, into a cache store, then byte-exact.
      const cache = Store.open(${JSON.stringify(cache)});
      const full = await Region.restore(remote, { name: 'app', snapshot: id, cache });
      await full.ready;
      const image = sha(new Uint8Array(full.buffer));
      // The next snapshot stands on the restored one: only what changed.
      new Uint8Array(full.buffer)[12345] ^= 0xff;
      const next = full.snapshot();
      await next.persisted;
      const info = full.store.info(next.id);
      full.close();
      cache.close();
      out({ afterReturn, afterTouch, touched, image, next: { chunks: info.chunks, parent: info.parent, full: info.full } });
      `,
    );
    expect(r.afterReturn.chunksFetched).toBe(0);
    const want = images[4]!;
    expect(r.touched).toEqual(Array.from({ length: Math.ceil(SIZE / CHUNK / 10) }, (_, i) => sha(want.subarray(i * 10 * CHUNK, (i * 10 + 1) * CHUNK))));
    expect(r.afterTouch.chunksFetched).toBe(r.touched.length);
    expect(r.afterTouch.bytesDownloaded).toBeLessThanOrEqual(0.2 * SIZE);
    expect(r.image).toBe(sha(want));
    expect(r.next).toEqual({ chunks: 1, parent: expect.any(Number), full: false });
    // Another process restoring from that cache: no request at all.
    const again = child(
      url,
      `
      const cache = Store.open(${JSON.stringify(cache)});
      const before = remote.stats();
      const region = await Region.restore(remote, { name: 'app', snapshot: ${JSON.stringify(ids[4])}, cache });
      await region.ready;
      const image = sha(new Uint8Array(region.buffer));
      region.close();
      cache.close();
      const after = remote.stats();
      out({ image, requests: after.requests - before.requests });`,
    );
    expect(again).toEqual({ image: sha(want), requests: 0 });
  });

  describe('a small chain', () => {
    const small: Buffer[] = [];
    let sids: string[] = [];
    beforeAll(async () => {
      const store = Store.open(':memory:');
      const region = Region.alloc(4 * MiB, { store, name: 'small' });
      const mem = new Uint8Array(region.buffer);
      for (let i = 0; i < 3; i++) {
        mem.set(randomBytes(i === 0 ? 2 * MiB : 64 * 1024), i * 100_000);
        await region.snapshot().persisted;
        small.push(Buffer.from(mem));
      }
      region.close();
      sids = (await store.push(remote)).snapshots.map((s) => s.id);
      store.close();
    });

    it('every snapshot of the chain restores byte-exact', async () => {
      for (let i = 0; i < 3; i++) {
        const region = await Region.restore(remote, { name: 'small', snapshot: sids[i]! });
        await region.ready;
        expectBytesEqual(new Uint8Array(region.buffer), small[i]!, `snapshot ${i}`);
        region.close();
      }
    });

    it('restores twice at once from one remote, and a region closed before ready rejects ready with CLOSED', async () => {
      const [a, b] = await Promise.all([
        Region.restore(remote, { name: 'small', snapshot: sids[1]! }),
        Region.restore(remote, { name: 'small', snapshot: sids[2]! }),
      ]);
      const c = await Region.restore(remote, { name: 'small', snapshot: sids[2]!, prefetch: 'none' });
      c.close();
      await expect(c.ready).rejects.toMatchObject({ code: 'CLOSED' });
      await Promise.all([a.ready, b.ready]);
      expectBytesEqual(new Uint8Array(a.buffer), small[1]!, 'snapshot 1');
      expectBytesEqual(new Uint8Array(b.buffer), small[2]!, 'snapshot 2');
      a.close();
      b.close();
    });

    it('closing the remote mid-restore rejects ready with CLOSED, and a touch of a missing chunk then stops the process', async () => {
      const own = await openRemote(url);
      const region = await Region.restore(own, { name: 'small', snapshot: sids[0]!, prefetch: 'none' });
      await own.close();
      await expect(region.ready).rejects.toMatchObject({ code: 'CLOSED' });
      region.close();
      const r = runNode(
        `
        const { Region, Remote } = require(${JSON.stringify(dist)});
        (async () => {
          const remote = await Remote.open(${JSON.stringify(url)});
          const region = await Region.restore(remote, { name: 'small', snapshot: ${JSON.stringify(sids[0])}, prefetch: 'none' });
          await remote.close();
          await region.ready.catch((e) => console.log('ready:', e.code));
          console.log('touched', new Uint8Array(region.buffer)[0]);
        })();`,
        { env: { ...s3ChildEnv(), AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' } },
      );
      expect(r.stdout).toContain('ready: CLOSED');
      expect(r.stdout).not.toContain('touched');
      expect(r.signal).toBe('SIGABRT');
      expect(r.stderr).toMatch(/chunk 0\).*CLOSED/);
    });
  });

  it('argument errors', async () => {
    await expect(Region.restore(remote, { name: 'other', snapshot: ids[0]! })).rejects.toMatchObject({ code: 'REGION_MISMATCH' });
    await expect(Region.restore(remote, { name: 'app', snapshot: 'nope' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(Region.restore(remote, { name: 'app', snapshot: '0'.repeat(32) })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(Region.restore(remote, { name: 'app', snapshot: ids[0]!, prefetch: 'some' as 'all' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
