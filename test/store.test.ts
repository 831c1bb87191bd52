import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Region, Store } from '../lib/index';
import { applyStep, imageAt, stepChunks } from '../scripts/workload';
import { dist, expectBytesEqual, expectCode, root, runNode, tmpDir } from './helpers';

const MiB = 1 << 20;
const workload = JSON.stringify(path.join(root, 'dist', 'scripts', 'workload.js'));

function expectRestores(store: Store, name: string, id: number, image: Uint8Array): void {
  const r = Region.restore(store, { name, snapshot: id });
  try {
    expectBytesEqual(new Uint8Array(r.buffer), image, `snapshot ${id}`);
  } finally {
    r.close();
  }
}

/** A file store with `n` snapshots (steps 0..n-1 of the workload) of region "r", persisted. */
async function history(n: number, size = 8 * MiB, perStep = 20, seed = 3) {
  const file = `${tmpDir()}/h.usnap`;
  const store = Store.open(file);
  const region = Region.alloc(size, { store, name: 'r' });
  const bytes = new Uint8Array(region.buffer);
  const snaps = [];
  for (let k = 0; k < n; k++) {
    applyStep(bytes, seed, k, perStep);
    snaps.push(region.snapshot({ label: `k${k}` }));
  }
  await Promise.all(snaps.map((s) => s.persisted));
  const ids = snaps.map((s) => s.id);
  const images = Array.from({ length: n }, (_, k) => imageAt(seed, k, size, perStep));
  return { file, store, region, bytes, ids, images };
}

describe('store', () => {
  it('three incremental snapshots of 64 MiB persisted by a child process reopen complete, verified, byte-exact', () => {
    const file = `${tmpDir()}/three.usnap`;
    const SEED = 41, PER_STEP = 100, SIZE = 64 * MiB;
    const r = runNode(`
      const { Region, Store } = require(${JSON.stringify(dist)});
      const { applyStep } = require(${workload});
      (async () => {
        const store = Store.open(${JSON.stringify(file)});
        const region = Region.alloc(${SIZE}, { store, name: 'heap' });
        const bytes = new Uint8Array(region.buffer);
        const out = [];
        for (let k = 0; k < 3; k++) {
          applyStep(bytes, ${SEED}, k, ${PER_STEP});
          const s = region.snapshot({ label: 'step' + k });
          const info = await s.persisted;
          out.push({ id: s.id, parent: s.parent, chunks: info.chunks });
        }
        console.log(JSON.stringify(out));
        process.exit(0);  // no close(): what is persisted must stay persisted
      })();
    `);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const child = JSON.parse(r.stdout) as { id: number; parent: number | null; chunks: number }[];
    const store = Store.open(file);
    const list = store.list();
    expect(list.map((s) => [s.id, s.parent, s.label, s.complete, s.region])).toEqual([
      [child[0]!.id, null, 'step0', true, 'heap'],
      [child[1]!.id, child[0]!.id, 'step1', true, 'heap'],
      [child[2]!.id, child[1]!.id, 'step2', true, 'heap'],
    ]);
    // Incremental: each later snapshot stores exactly the chunks its step wrote.
    for (const k of [1, 2]) {
      expect(list[k]!.chunks).toBe(new Set(stepChunks(SEED, k, SIZE / 65536, PER_STEP)).size);
      expect(list[k]!.rawBytes).toBe(list[k]!.chunks * 65536);
    }
    expect(list[0]!.full).toBe(true);
    expect(list.map((s) => s.chunks)).toEqual(child.map((c) => c.chunks));
    const v = store.verify();
    expect(v).toMatchObject({ ok: true, snapshots: 3, problems: [] });
    expect(v.chunks).toBe(list.reduce((n, s) => n + s.chunks, 0));
    for (let k = 0; k < 3; k++) expectRestores(store, 'heap', child[k]!.id, imageAt(SEED, k, SIZE, PER_STEP));
    store.close();
  });

  it('deleting the first, then a middle snapshot keeps every later one byte-exact', async () => {
    const h = await history(5);
    await h.region.snapshot().persisted;  // the region now stands on a 6th snapshot
    const [s1, s2, s3, s4, s5] = h.ids as [number, number, number, number, number];
    const blobsBefore = h.store.stats().blobs;
    await h.store.delete(s1);
    expect(h.store.info(s2)).toMatchObject({ parent: null, full: true });
    expect(h.store.verify().ok).toBe(true);
    await h.store.delete(s3);
    expect(h.store.info(s4).parent).toBe(s2);
    expect(h.store.list({ region: 'r' }).map((s) => s.id)).toEqual([s2, s4, s5, s5 + 1]);
    expect(h.store.verify()).toMatchObject({ ok: true, problems: [] });
    expectCode(() => h.store.info(s1), 'NOT_FOUND');
    expectCode(() => Region.restore(h.store, { name: 'r', snapshot: s3 }), 'NOT_FOUND');
    // Nothing a survivor needs was freed; chunks overwritten in both were.
    expect(h.store.stats().blobs).toBeLessThanOrEqual(blobsBefore);
    h.region.close();
    for (const [i, id] of [[1, s2], [3, s4], [4, s5]] as const) expectRestores(h.store, 'r', id, h.images[i]!);
    h.store.close();
    // And after a reopen.
    const again = Store.open(h.file);
    expect(again.verify().ok).toBe(true);
    expectRestores(again, 'r', s4, h.images[3]!);
    again.close();
  });

  it('gc({ keep }) keeps the newest snapshots of each region, restorable, and frees the rest', async () => {
    const h = await history(6);
    h.region.close();
    const before = h.store.stats();
    const g = await h.store.gc({ keep: 2 });
    expect(g.deletedSnapshots).toEqual(h.ids.slice(0, 4));
    expect(g.freedBlobs).toBeGreaterThan(0);
    expect(g.freedBytes).toBeGreaterThan(0);
    expect(h.store.stats().blobs).toBe(before.blobs - g.freedBlobs);
    expect(h.store.list().map((s) => s.id)).toEqual(h.ids.slice(4));
    expect(h.store.verify().ok).toBe(true);
    expectRestores(h.store, 'r', h.ids[4]!, h.images[4]!);
    expectRestores(h.store, 'r', h.ids[5]!, h.images[5]!);
    expect((await h.store.gc({ keep: 2 })).deletedSnapshots).toEqual([]);
    expect(await h.store.gc()).toMatchObject({ deletedSnapshots: [], freedBlobs: 0 });
    h.store.close();
  });

  it('history is a tree: restore k, write, snapshot gives parent k; both branches restore, even after k is deleted', async () => {
    const h = await history(3);
    const [, s2, s3] = h.ids as [number, number, number];
    h.region.restore(s2);
    // Two chunks apart (adjacent ones would be one sequential run, saved with fault-around growth).
    h.bytes.fill(0xab, 65536 * 7, 65536 * 8);
    h.bytes.fill(0xab, 65536 * 9, 65536 * 10);
    const branch = h.region.snapshot({ label: 'branch' });
    expect(branch.parent).toBe(s2);
    expect(branch.chunks).toBe(2);
    const branchImage = h.bytes.slice();
    expect((await branch.persisted).parent).toBe(s2);
    expect(h.store.list().filter((s) => s.parent === s2).map((s) => s.id)).toEqual([s3, branch.id]);
    h.region.restore(s3);
    expectBytesEqual(h.bytes, h.images[2]!, 'trunk after in-place restore');
    h.region.restore(branch);
    expectBytesEqual(h.bytes, branchImage, 'branch after in-place restore');
    h.region.close();
    await h.store.delete(s2);  // the fork point: both children take its chunks
    expect(h.store.verify().ok).toBe(true);
    expectRestores(h.store, 'r', s3, h.images[2]!);
    expectRestores(h.store, 'r', branch.id, branchImage);
    h.store.close();
  });

  it('a second process sees committed snapshots read-only while the writer is live; a second writer gets STORE_LOCKED', async () => {
    const h = await history(2);
    await h.region.snapshot({ label: 'k2' }).persisted;
    const committed = h.store.list().map((s) => s.id);
    const r = runNode(`
      const { Store } = require(${JSON.stringify(dist)});
      (async () => {
        const out = {};
        const ro = Store.open(${JSON.stringify(h.file)}, { readonly: true });
        out.ids = ro.list().map((s) => s.id);
        out.ok = ro.verify().ok;
        try { await ro.delete(out.ids[0]); } catch (e) { out.roDelete = e.code; }
        ro.close();
        try { Store.open(${JSON.stringify(h.file)}); out.writer = 'opened'; }
        catch (e) { out.writer = e.code; out.hint = e.hint; }
        console.log(JSON.stringify(out));
      })();
    `);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ ids: committed, ok: true, roDelete: 'STORE_READONLY', writer: 'STORE_LOCKED' });
    expect(out.hint).toMatch(new RegExp(`process ${process.pid}.*readonly`));
    // In this process too.
    expect(expectCode(() => Store.open(h.file), 'STORE_LOCKED').hint).toMatch(/readonly/);
    // The writer carries on, and the reader's view did not disturb it.
    h.bytes[0] ^= 1;
    expect((await h.region.snapshot().persisted).complete).toBe(true);
    h.store.close();
    // Once the writer is gone, a new one may open.
    Store.open(h.file).close();
  });
});
