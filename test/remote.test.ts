// The object-storage tier against a real S3 server (Ceph RGW; see scripts/s3-server.sh).
import { beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Region, Remote, SnapshotError, Store } from '../lib/index';
import { expectBytesEqual, expectRejectCode, fillPattern, root, tmpDir } from './helpers';
import { freshUrl, openRemote, s3ChildEnv } from './remote-helpers';

const MiB = 1 << 20;

/** A region with a chain of `n` snapshots, each rewriting some chunks; returns the images. */
async function chain(store: Store, name: string, size: number, n: number, seed: number): Promise<{ ids: number[]; images: Buffer[] }> {
  const region = Region.alloc(size, { store, name });
  const mem = new Uint8Array(region.buffer);
  const ids: number[] = [];
  const images: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    if (i === 0) fillPattern(mem, seed, 0, size / 2);  // the upper half stays zero
    else for (let c = i; c < size / 65536; c += 7) fillPattern(mem, seed * 100 + i * 1000 + c, c * 65536 + 4096, 8192);
    const s = region.snapshot({ label: `s${i}` });
    await s.persisted;
    ids.push(s.id);
    images.push(Buffer.from(mem));
  }
  region.close();
  return { ids, images };
}

/** Pulls everything into a new store and checks each region's newest snapshot against its image. */
async function expectPulled(remote: Remote, file: string, images: Record<string, Uint8Array>): Promise<void> {
  const store = Store.open(file);
  await store.pull(remote);
  for (const [name, image] of Object.entries(images)) {
    const region = Region.restore(store, { name, snapshot: store.list({ region: name }).at(-1)!.id });
    await region.ready;
    expectBytesEqual(new Uint8Array(region.buffer), image);
    region.close();
  }
  store.close();
}

describe('push, list, pull', () => {
  let dir: string;
  beforeAll(() => {
    dir = tmpDir('usnap-remote-');
  });

  it('pushes a chain, lists it, re-pushes nothing, pulls it back byte-exact', async () => {
    const store = Store.open(path.join(dir, 'a.db'));
    const { ids, images } = await chain(store, 'app', 4 * MiB, 3, 7);
    const remote = await openRemote(freshUrl());
    const r1 = await store.push(remote);
    expect(r1.snapshots.map((s) => s.local)).toEqual(ids);
    expect(r1.chunksUploaded).toBeGreaterThan(0);
    expect(r1.chunksPresent).toBe(0);
    const list = await remote.list();
    expect(list.map((s) => s.id).sort()).toEqual(r1.snapshots.map((s) => s.id).sort());
    const byId = new Map(list.map((s) => [s.id, s]));
    for (let i = 0; i < ids.length; i++) {
      const info = byId.get(r1.snapshots[i]!.id)!;
      expect(info.region).toBe('app');
      expect(info.label).toBe(`s${i}`);
      expect(info.regionSize).toBe(4 * MiB);
      expect(info.parent).toBe(i === 0 ? null : r1.snapshots[i - 1]!.id);
      expect(info.chunks).toBe(store.info(ids[i]!).chunks);
    }
    // Again: same ids, nothing uploaded but the requests to find that out.
    const r2 = await store.push(remote);
    expect(r2.snapshots).toEqual(r1.snapshots);
    expect(r2.chunksUploaded).toBe(0);
    expect(r2.bytesUploaded).toBe(0);
    // Pull into a fresh store and read the images back.
    const other = Store.open(path.join(dir, 'b.db'));
    const pulled = await other.pull(remote);
    expect(pulled.snapshots.map((s) => s.id)).toEqual(r1.snapshots.map((s) => s.id));
    for (let i = 0; i < ids.length; i++) {
      const region = Region.restore(other, { name: 'app', snapshot: pulled.snapshots[i]!.local });
      await region.ready;
      expectBytesEqual(new Uint8Array(region.buffer), images[i]!, `pulled snapshot ${i}`);
      region.close();
    }
    expect(other.verify().ok).toBe(true);
    // A second pull adds nothing.
    const again = await other.pull(remote);
    expect(again.chunksFetched).toBe(0);
    expect(again.snapshots).toEqual(pulled.snapshots);
    expect(other.list().length).toBe(ids.length);
    // Pushing what was pulled gives the same remote ids.
    const back = await other.push(remote);
    expect(back.snapshots.map((s) => s.id)).toEqual(r1.snapshots.map((s) => s.id));
    expect(back.chunksUploaded).toBe(0);
    other.close();
    store.close();
    await remote.close();
  });

  it('two stores pushing to one remote share chunks and keep their snapshots apart', async () => {
    const url = freshUrl();
    const a = Store.open(path.join(dir, 'two-a.db'));
    const b = Store.open(path.join(dir, 'two-b.db'));
    const ca = await chain(a, 'app', 2 * MiB, 2, 11);
    const cb = await chain(b, 'app', 2 * MiB, 2, 11);  // same contents, other store
    const ra = await openRemote(url);
    const rb = await openRemote(url);
    const [pa, pb] = await Promise.all([a.push(ra), b.push(rb)]);
    // Equal chunks are stored once: the two pushes together upload each distinct chunk once
    // (or, racing on the same chunk, twice at most).
    const distinct = (await (ra as unknown as { listKeys(p: string): Promise<unknown[]> }).listKeys('chunks/')).length;
    expect(pa.chunksUploaded + pb.chunksUploaded).toBeGreaterThanOrEqual(distinct);
    expect(pa.chunksUploaded + pb.chunksUploaded).toBeLessThanOrEqual(2 * distinct);
    expect(Math.min(pa.chunksUploaded, pb.chunksUploaded) + Math.max(pa.chunksPresent, pb.chunksPresent)).toBeGreaterThan(0);
    const all = await ra.list();
    // Snapshots taken at different times are different snapshots, even with equal contents.
    const ids = new Set([...pa.snapshots, ...pb.snapshots].map((s) => s.id));
    expect(all.length).toBe(ids.size);
    // A third push from b after a's: everything is present.
    const pc = await b.push(await openRemote(url));
    expect(pc.chunksUploaded).toBe(0);
    // Each store's chain restores from the remote via pull.
    const c = Store.open(path.join(dir, 'two-c.db'));
    await c.pull(ra, { snapshot: pb.snapshots[1]!.id });
    const region = Region.restore(c, { name: 'app', snapshot: c.list().at(-1)!.id });
    await region.ready;
    expectBytesEqual(new Uint8Array(region.buffer), cb.images[1]!);
    region.close();
    for (const s of [a, b, c]) s.close();
    expect(ca.ids.length).toBe(2);
    await ra.close();
    await rb.close();
  });

  it('delete and gc: chunks only the deleted snapshot used go, the rest stay', async () => {
    const store = Store.open(path.join(dir, 'gc.db'));
    const { images } = await chain(store, 'app', 2 * MiB, 3, 21);
    const remote = await openRemote(freshUrl());
    const pushed = await store.push(remote);
    const [s0, s1, s2] = pushed.snapshots.map((s) => s.id);
    await expectRejectCode(remote.delete(s1!), 'SNAPSHOT_IN_USE');
    await remote.delete(s2!);
    expect((await remote.list()).map((s) => s.id).sort()).toEqual([s0, s1].sort());
    expect((await remote.gc()).deletedChunks).toBe(0);  // young: kept by the grace period
    const g = await remote.gc({ graceMs: 0 });
    expect(g.deletedChunks).toBeGreaterThan(0);
    expect((await remote.gc({ graceMs: 0 })).deletedChunks).toBe(0);
    await expectPulled(remote, path.join(dir, 'gc2.db'), { app: images[1]! });
    store.close();
    await remote.close();
  });

  it('a push after a gc elsewhere uploads again what the gc deleted, though its Remote had listed it', async () => {
    const store = Store.open(path.join(dir, 'relist.db'));
    const { ids, images } = await chain(store, 'app', 2 * MiB, 2, 41);
    const url = freshUrl();
    const pusher = await openRemote(url);
    const first = await store.push(pusher, { snapshot: ids[0]! });
    const admin = await openRemote(url);
    await admin.delete(first.snapshots[0]!.id);
    const g = await admin.gc({ graceMs: 0 });
    expect(g.deletedChunks).toBe(first.chunksUploaded);
    // The same Remote pushes the snapshot again, with its child: every chunk the gc took goes up again.
    const second = await store.push(pusher, { snapshot: ids[1]! });
    expect(second.chunksPresent).toBe(0);
    expect(second.chunksUploaded).toBeGreaterThan(g.deletedChunks);
    expect(await admin.verify()).toMatchObject({ ok: true, snapshots: 2, problems: [] });
    await expectPulled(admin, path.join(dir, 'relist2.db'), { app: images[1]! });
    store.close();
    await pusher.close();
    await admin.close();
  });

  it('gc and delete wait for no push: REMOTE_LOCKED while one is in flight, nothing deleted', async () => {
    const store = Store.open(path.join(dir, 'lock.db'));
    const { ids, images } = await chain(store, 'app', 2 * MiB, 2, 51);
    const url = freshUrl();
    const remote = await openRemote(url);
    const first = await store.push(remote, { snapshot: ids[0]! });
    const admin = await openRemote(url);
    let during: Promise<unknown>[] = [];
    const pushed = await store.push(remote, {
      snapshot: ids[1]!,
      onProgress: (done) => {
        if (done === 1) during = [admin.gc({ graceMs: 0 }), admin.delete(first.snapshots[0]!.id)].map((p) => p.catch((e: unknown) => e));
      },
    });
    expect(during.length).toBe(2);
    for (const err of await Promise.all(during)) {
      expect(err).toBeInstanceOf(SnapshotError);
      // Held by the push, or by the other of the two (they also exclude each other).
      expect(err).toMatchObject({ code: 'REMOTE_LOCKED', message: expect.stringMatching(/a (push|gc|delete [0-9a-f]+) \(process \d+ on /) });
    }
    expect(await admin.verify()).toMatchObject({ ok: true, snapshots: 2, problems: [] });
    // Two pushes share the remote; with both done, gc and delete run.
    const other = Store.open(path.join(dir, 'lock2.db'));
    const c = await chain(other, 'other', 1 * MiB, 1, 52);
    await Promise.all([store.push(remote), other.push(admin)]);
    await admin.delete(pushed.snapshots[1]!.id);
    expect((await admin.gc({ graceMs: 0 })).deletedChunks).toBeGreaterThan(0);
    expect(await remote.listKeys('locks/')).toEqual([]);
    await expectPulled(admin, path.join(dir, 'lock3.db'), { app: images[0]!, other: c.images[0]! });
    for (const s of [store, other]) s.close();
    await remote.close();
    await admin.close();
  });

  it('a push while gc holds the remote is REMOTE_LOCKED and uploads nothing; a dead holder\'s lock goes stale', async () => {
    const store = Store.open(path.join(dir, 'stale.db'));
    const { ids } = await chain(store, 'app', 1 * MiB, 1, 61);
    const url = freshUrl();
    const remote = await openRemote(url, { lockStaleMs: 2000 });
    // What a gc killed mid-way leaves behind.
    await remote.put(`${remote.prefix}locks/exclusive-0123456789abcdef01234567`, Buffer.from(JSON.stringify({ kind: 'exclusive', host: 'elsewhere', pid: 4242, what: 'gc' })));
    const before = remote.stats().bytesUploaded;
    const err = await expectRejectCode(store.push(remote), 'REMOTE_LOCKED');
    expect(err.message).toMatch(/a gc \(process 4242 on elsewhere, lock locks\/exclusive-/);
    expect(err.hint).toMatch(/push again/);
    expect((await remote.listKeys('chunks/')).length).toBe(0);
    expect(remote.stats().bytesUploaded - before).toBeLessThan(1024);  // the lock objects alone
    await new Promise((r) => setTimeout(r, 3500));  // the server's clock counts whole seconds
    const r = await store.push(remote);
    expect(r.snapshots.map((s) => s.local)).toEqual(ids);
    await remote.gc();  // an exclusive holder removes locks gone stale
    expect(await remote.listKeys('locks/')).toEqual([]);
    await expectRejectCode(openRemote(url, { lockStaleMs: 999 }), 'INVALID_ARGUMENT');
    store.close();
    await remote.close();
  });

  it('errors name the fix: wrong credentials, missing bucket, bad URL, unknown snapshot', async () => {
    const url = freshUrl();
    const remote = await openRemote(url);
    const { s3 } = await import('./remote-helpers');
    const o = s3().options;
    await expectRejectCode(Remote.open(url, { ...o, credentials: { accessKeyId: o.credentials!.accessKeyId, secretAccessKey: 'wrong' } }), 'REMOTE_AUTH');
    await expectRejectCode(Remote.open(url, { ...o, credentials: { accessKeyId: 'nobody', secretAccessKey: 'wrong' } }), 'REMOTE_AUTH');
    await expectRejectCode(Remote.open(freshUrl(), o), 'REMOTE_NO_BUCKET');
    await expect(Remote.open('http://x/y', o)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expectRejectCode(remote.info('0'.repeat(32)), 'NOT_FOUND');
    await remote.close();
  });

  it('CLI: push, list, info, verify, pull and restore -o with an s3:// URL; --json; an encrypted remote needs --key-file', async () => {
    const file = path.join(dir, 'cli.db');
    const store = Store.open(file);
    const { images } = await chain(store, 'heap', 1 * MiB, 2, 31);
    store.close();
    const url = freshUrl('cli');
    const usnap = (...args: string[]) => {
      const r = spawnSync(process.execPath, [path.join(root, 'dist', 'lib', 'cli', 'main.js'), ...args], { cwd: dir, encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...s3ChildEnv(), NO_COLOR: '1' } });
      return { status: r.status, stdout: r.stdout, stderr: r.stderr, json: () => JSON.parse(r.stdout) };
    };
    const pushed = usnap('--json', 'push', file, url, '--create-bucket').json();
    expect(pushed.snapshots.map((s: { local: number }) => s.local)).toEqual([1, 2]);
    expect(pushed.chunksUploaded).toBeGreaterThan(0);
    expect(usnap('--json', 'push', file, url, '2').json()).toMatchObject({ chunksUploaded: 0, bytesUploaded: 0 });
    const listed = usnap('--json', 'list', url).json();
    expect(listed.snapshots.map((s: { id: string }) => s.id)).toEqual(pushed.snapshots.map((s: { id: string }) => s.id));
    const id = pushed.snapshots[1].id as string;
    expect(usnap('--json', 'info', url, id).json()).toMatchObject({ id, region: 'heap', parent: pushed.snapshots[0].id, chain: [id, pushed.snapshots[0].id] });
    expect(usnap('--json', 'verify', url).json()).toMatchObject({ ok: true, snapshots: 2 });
    const restored = usnap('--json', 'restore', url, id, '-o', 'img.bin', '--verify').json();
    expect(restored).toMatchObject({ snapshot: id, verified: true });
    expectBytesEqual(fs.readFileSync(path.join(dir, 'img.bin')), images[1]!);
    const pulled = usnap('--json', 'pull', url, 'pulled.db').json();
    expect(pulled.snapshots.length).toBe(2);
    // Usage and remote errors: codes on stderr, exit 1 or 2.
    const wrongId = usnap('info', url, '2');
    expect(wrongId.status).toBe(2);
    expect(wrongId.stderr).toContain('[USAGE]');
    const keyFile = path.join(dir, 'key');
    fs.writeFileSync(keyFile, randomBytes(32).toString('hex'));
    const encUrl = freshUrl('clienc');
    expect(usnap('--key-file', keyFile, 'push', file, encUrl, '--create-bucket').status).toBe(0);
    const noKey = usnap('list', encUrl);
    expect(noKey.status).toBe(1);
    expect(noKey.stderr).toContain('[REMOTE_KEY]');
  });
});
