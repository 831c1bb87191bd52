// The remote tier when things go wrong: a push killed midway, encryption (no plaintext, wrong
// key), damaged and missing objects, and a server that stops answering mid-restore.
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as net from 'node:net';
import * as path from 'node:path';
import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { Region, Remote, Store } from '../lib/index';
import { dist, expectBytesEqual, root, runNode, tmpDir } from './helpers';
import { freshUrl, openRemote, s3, s3ChildEnv } from './remote-helpers';

const MiB = 1 << 20;
const CHUNK = 65536;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function rawClient(): S3Client {
  const o = s3().options;
  return new S3Client({ endpoint: o.endpoint!, region: o.region!, forcePathStyle: true, credentials: o.credentials! });
}

function bucketOf(url: string): string {
  return /^s3:\/\/([^/]+)/.exec(url)![1]!;
}

async function objects(url: string): Promise<{ key: string; body: Buffer }[]> {
  const c = rawClient();
  const out: { key: string; body: Buffer }[] = [];
  const r = await c.send(new ListObjectsV2Command({ Bucket: bucketOf(url) }));
  for (const o of r.Contents ?? []) {
    const g = await c.send(new GetObjectCommand({ Bucket: bucketOf(url), Key: o.Key! }));
    out.push({ key: o.Key!, body: Buffer.from(await g.Body!.transformToByteArray()) });
  }
  c.destroy();
  return out;
}

async function putRaw(url: string, key: string, body: Buffer | null): Promise<void> {
  const c = rawClient();
  if (body) await c.send(new PutObjectCommand({ Bucket: bucketOf(url), Key: key, Body: body }));
  else await c.send(new DeleteObjectCommand({ Bucket: bucketOf(url), Key: key }));
  c.destroy();
}

/** A store with one snapshot of `size` random bytes (plus `marker` written across it). */
async function oneSnapshot(file: string, size: number, marker?: string): Promise<Buffer> {
  const store = Store.open(file);
  const region = Region.alloc(size, { store, name: 'app' });
  const mem = new Uint8Array(region.buffer);
  for (let o = 0; o < size; o += MiB) mem.set(randomBytes(Math.min(MiB, size - o)), o);
  if (marker) for (let o = 100; o + marker.length < size; o += 8192) mem.set(Buffer.from(marker), o);
  await region.snapshot(marker ? { label: `label ${marker}` } : {}).persisted;
  const image = Buffer.from(mem);
  region.close();
  store.close();
  return image;
}

/**
 * A TCP proxy to the S3 server on 127.0.0.1 that can be cut: from then on it accepts
 * connections and never answers (the nastiest outage: nothing is refused, nothing arrives).
 */
async function proxy(target: string): Promise<{ endpoint: string; forwarded: () => number; cut: () => void; close: () => Promise<void> }> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<net.Socket>();
  let cut = false;
  let forwarded = 0;
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    if (cut) return;  // accepted, never answered
    const up = net.connect(Number(port), hostname);
    sockets.add(up);
    up.on('close', () => sockets.delete(up));
    up.on('error', () => client.destroy());
    client.on('error', () => up.destroy());
    up.on('data', (d) => (forwarded += d.length));
    client.pipe(up);
    up.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as net.AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${addr.port}`,
    forwarded: () => forwarded,
    cut: () => {
      cut = true;
      for (const s of sockets) s.destroy();
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

describe('remote faults', () => {
  const dir = tmpDir('usnap-remote-faults-');

  it('a push killed by SIGKILL leaves no snapshot visible, and the next push completes it', async () => {
    const file = path.join(dir, 'kill.db');
    const image = await oneSnapshot(file, 16 * MiB);
    const url = freshUrl('kill');
    const remote = await openRemote(url);
    const script = `
      const { Remote, Store } = require(${JSON.stringify(dist)});
      (async () => {
        const store = Store.open(${JSON.stringify(file)}, { readonly: true });
        const remote = await Remote.open(${JSON.stringify(url)}, { concurrency: 2 });
        // Slowed down, so that the kill lands mid-push however fast the server is.
        const put = remote.putChunk.bind(remote);
        remote.putChunk = async (...a) => (await new Promise((r) => setTimeout(r, 20)), put(...a));
        await store.push(remote);
        console.log('finished');
      })();`;
    const child = spawn(process.execPath, ['-e', script], { cwd: root, env: { ...process.env, ...s3ChildEnv() }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, signal) => r(signal)));
    // Kill it once some of its chunks are up.
    for (let i = 0; i < 600; i++) {
      const n = (await objects(url)).filter((o) => o.key.includes('/chunks/')).length;
      if (n >= 20) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    expect(stdout).not.toContain('finished');
    const uploaded = (await objects(url)).filter((o) => o.key.includes('/chunks/')).length;
    expect(uploaded).toBeGreaterThanOrEqual(20);
    expect(uploaded).toBeLessThan(256);
    expect(await remote.list()).toEqual([]);
    // The next push skips what is there and finishes.
    const store = Store.open(file, { readonly: true });
    const r = await store.push(await openRemote(url));
    expect(r.chunksPresent).toBeGreaterThanOrEqual(uploaded - 2);  // a PUT cut by the kill may or may not have landed
    expect(r.chunksUploaded + r.chunksPresent).toBe(256);
    store.close();
    const list = await remote.list();
    expect(list.map((s) => s.id)).toEqual([r.snapshots[0]!.id]);
    const region = await Region.restore(remote, { name: 'app', snapshot: list[0]!.id });
    await region.ready;
    expectBytesEqual(new Uint8Array(region.buffer), image);
    region.close();
    await remote.close();
  });

  it('encryption: no object holds plaintext or a content hash; a wrong or missing key is refused; a tampered object is STORE_CORRUPT', async () => {
    const marker = `USNAP-PLAINTEXT-MARKER-${randomBytes(8).toString('hex')}`;
    const file = path.join(dir, 'enc.db');
    const image = await oneSnapshot(file, 2 * MiB, marker);
    const key = randomBytes(32);
    const encUrl = freshUrl('enc');
    const plainUrl = freshUrl('plain');
    const store = Store.open(file, { readonly: true });
    const enc = await openRemote(encUrl, { encryptionKey: key });
    const plain = await openRemote(plainUrl);
    const pushed = await store.push(enc);
    await store.push(plain);
    store.close();
    const chunkShas = new Set<string>();
    for (let o = 0; o < image.length; o += CHUNK) chunkShas.add(sha(image.subarray(o, o + CHUNK)));
    // The control: without a key the marker and the hashes are there to be seen.
    const plainObjects = await objects(plainUrl);
    expect(plainObjects.some((o) => o.body.includes(marker))).toBe(true);
    expect(plainObjects.some((o) => chunkShas.has(o.key.split('/').pop()!))).toBe(true);
    // Listed while a lock is held: its host and pid are sealed too.
    const encObjects = await enc._withLock('push', 'test', () => objects(encUrl));
    expect(encObjects.filter((o) => o.key.includes('/chunks/')).length).toBe(32);
    expect(encObjects.filter((o) => o.key.includes('/locks/push-')).length).toBe(1);
    for (const o of encObjects) {
      expect(o.body.includes(`"host":"${hostname()}"`), o.key).toBe(false);
      expect(o.body.includes(marker), o.key).toBe(false);
      expect(o.body.includes(Buffer.from(marker).subarray(0, 16)), o.key).toBe(false);
      expect(chunkShas.has(o.key.split('/').pop()!), o.key).toBe(false);
      for (const h of chunkShas) expect(o.body.includes(h)).toBe(false);
    }
    // Wrong key, no key: refused at open, naming the fix.
    await expect(openRemote(encUrl, { encryptionKey: randomBytes(32) })).rejects.toMatchObject({ code: 'REMOTE_KEY' });
    await expect(openRemote(encUrl)).rejects.toMatchObject({ code: 'REMOTE_KEY' });
    await expect(openRemote(plainUrl, { encryptionKey: key })).rejects.toMatchObject({ code: 'REMOTE_KEY' });
    // The right key restores it.
    const id = pushed.snapshots[0]!.id;
    expect((await enc.list())[0]).toMatchObject({ id, label: `label ${marker}`, region: 'app' });
    const region = await Region.restore(enc, { name: 'app', snapshot: id });
    await region.ready;
    expectBytesEqual(new Uint8Array(region.buffer), image);
    region.close();
    // One flipped bit in a chunk object: authentication fails, `ready` rejects, no bytes handed out.
    const victim = encObjects.find((o) => o.key.includes('/chunks/'))!;
    const bad = Buffer.from(victim.body);
    bad[bad.length >> 1]! ^= 1;
    await putRaw(encUrl, victim.key, bad);
    const fresh = await openRemote(encUrl, { encryptionKey: key });
    const damaged = await Region.restore(fresh, { name: 'app', snapshot: id });
    await expect(damaged.ready).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    damaged.close();
    await expect(Store.open(':memory:').pull(fresh)).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    // A manifest sealed under the key, swapped for another: STORE_CORRUPT, not another snapshot.
    const manifest = encObjects.find((o) => o.key.includes('/snapshots/'))!;
    await putRaw(encUrl, manifest.key, Buffer.concat([manifest.body.subarray(0, 40), Buffer.alloc(8), manifest.body.subarray(48)]));
    await expect((await openRemote(encUrl, { encryptionKey: key })).list()).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    for (const r of [enc, plain, fresh]) await r.close();
  });

  it('damaged and missing objects: STORE_CORRUPT from pull and restore; touching such a chunk stops the process with the reason', async () => {
    const file = path.join(dir, 'dmg.db');
    const image = await oneSnapshot(file, 1 * MiB);
    const url = freshUrl('dmg');
    const store = Store.open(file, { readonly: true });
    const remote = await openRemote(url);
    const id = (await store.push(remote)).snapshots[0]!.id;
    store.close();
    const chunkKey = (c: number) => `${remote.prefix}chunks/${sha(image.subarray(c * CHUNK, (c + 1) * CHUNK))}`;
    // Chunk 3 holds chunk 4's bytes: a well-formed object, but not the one the manifest names.
    const all = await objects(url);
    await putRaw(url, chunkKey(3), all.find((o) => o.key === chunkKey(4))!.body);
    await expect(Store.open(':memory:').pull(remote)).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    const r1 = await Region.restore(remote, { name: 'app', snapshot: id });
    await expect(r1.ready).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    r1.close();
    // Chunk 7 missing.
    await putRaw(url, chunkKey(3), all.find((o) => o.key === chunkKey(3))!.body);
    await putRaw(url, chunkKey(7), null);
    const r2 = await Region.restore(remote, { name: 'app', snapshot: id });
    const err = await r2.ready.catch((e) => e);
    expect(err).toMatchObject({ code: 'STORE_CORRUPT' });
    expect(err.message).toContain('missing');
    r2.close();
    // A process touching the missing chunk is stopped with the reason instead of reading wrong bytes.
    const child = runNode(
      `
      const { Region, Remote } = require(${JSON.stringify(dist)});
      (async () => {
        const remote = await Remote.open(${JSON.stringify(url)});
        const region = await Region.restore(remote, { name: 'app', snapshot: ${JSON.stringify(id)}, prefetch: 'none' });
        const mem = new Uint8Array(region.buffer);
        console.log('chunk 0', mem[0]);
        console.log('chunk 7', mem[7 * 65536]);
      })();`,
      { env: s3ChildEnv() },
    );
    expect(child.signal).toBe('SIGABRT');
    expect(child.stdout).toContain(`chunk 0 ${image[0]}`);
    expect(child.stdout).not.toContain('chunk 7');
    expect(child.stderr).toMatch(/STORE_CORRUPT: remote .*snapshot .*page 112 \(chunk 7\).*missing/);
    // A damaged manifest.
    await putRaw(url, `${remote.prefix}snapshots/${id}`, Buffer.from('not a manifest'));
    await expect((await openRemote(url)).list()).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    await remote.close();
  });

  it('a server that stops answering mid-restore: ready rejects with REMOTE_UNAVAILABLE after bounded retries; no hang', async () => {
    const file = path.join(dir, 'net.db');
    await oneSnapshot(file, 16 * MiB);
    const url = freshUrl('net');
    const store = Store.open(file, { readonly: true });
    const direct = await openRemote(url);
    const id = (await store.push(direct)).snapshots[0]!.id;
    store.close();
    const p = await proxy(s3().options.endpoint!);
    const remote = await Remote.open(url, { ...s3().options, endpoint: p.endpoint, maxAttempts: 2, requestTimeout: 1000, concurrency: 4 });
    const region = await Region.restore(remote, { name: 'app', snapshot: id });
    while (p.forwarded() < 1 * MiB) await new Promise((r) => setTimeout(r, 5));
    p.cut();
    const err = await region.ready.catch((e) => e);
    expect(err).toMatchObject({ code: 'REMOTE_UNAVAILABLE' });
    expect(err.hint).toMatch(/endpoint/);
    expect(remote.stats().chunksFetched).toBeLessThan(256);
    region.close();
    // A touched chunk that can never arrive stops the process, naming the cause. The child
    // talks to S3 through its own proxy, which it closes before touching anything.
    const child = runNode(
      `
      const { Region, Remote } = require(${JSON.stringify(dist)});
      const net = require('node:net');
      (async () => {
        const sockets = new Set();
        const server = net.createServer((c) => {
          const up = net.connect(${new URL(s3().options.endpoint!).port}, '127.0.0.1');
          for (const s of [c, up]) { sockets.add(s); s.on('error', () => {}); }
          c.pipe(up); up.pipe(c);
        });
        await new Promise((r) => server.listen(0, '127.0.0.1', r));
        const remote = await Remote.open(${JSON.stringify(url)}, { endpoint: 'http://127.0.0.1:' + server.address().port, maxAttempts: 2, requestTimeout: 1000 });
        const region = await Region.restore(remote, { name: 'app', snapshot: ${JSON.stringify(id)}, prefetch: 'none' });
        console.log('restored');
        server.close();
        for (const s of sockets) s.destroy();
        setTimeout(() => console.log('touched', new Uint8Array(region.buffer)[0]), 50);
      })();`,
      { env: s3ChildEnv() },
    );
    expect(child.signal).toBe('SIGABRT');
    expect(child.stdout).not.toContain('touched');
    expect(child.stderr).toMatch(/REMOTE_UNAVAILABLE/);
    expect(child.stdout).toContain('restored');
    await p.close();
    await remote.close();
    await direct.close();
  });
});
