// Clones: one snapshot opened as several regions at once, each a branch of its own.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Region, Store, type Snapshot } from '../lib/index';
import { dist, expectBytesEqual, expectCode, fillPattern, root, runNode, tmpDir } from './helpers';

const CHUNK = 64 * 1024;
const SIZE = 4 << 20;
const CLI = path.join(root, 'dist', 'lib', 'cli', 'main.js');

let open: { close(): void }[] = [];
afterEach(() => {
  for (const x of open.reverse()) x.close();
  open = [];
});

/** The region's image at snapshot `id`, restored into a fresh region (lazily, then waited for). */
async function restoredImage(store: Store, name: string, id: number, as?: string): Promise<Uint8Array> {
  const r = Region.restore(store, { name, snapshot: id, ...(as ? { as } : {}) });
  try {
    await r.ready;
    return new Uint8Array(r.buffer).slice();
  } finally {
    r.close();
  }
}

describe('clones', () => {
  it('two clones of one snapshot, open at once, written and snapshotted differently: all branches restore byte-exact', async () => {
    const file = path.join(tmpDir('usnap-clones-'), 'c.usnap');
    const store = Store.open(file);
    open.push(store);
    const heap = Region.alloc(SIZE, { store, name: 'heap' });
    const mem = new Uint8Array(heap.buffer);
    const want = new Map<number, Uint8Array>();
    const snap = (r: Region, label?: string): Snapshot => {
      const s = r.snapshot(label ? { label } : {});
      want.set(s.id, new Uint8Array(r.buffer).slice());
      return s;
    };
    fillPattern(mem, 1, 0, SIZE / 2);
    const base = snap(heap, 'warm');
    fillPattern(mem, 2, 10 * CHUNK, 4 * CHUNK);
    const later = snap(heap);
    await Promise.all([base.persisted, later.persisted]);
    const blobsBefore = store.stats().blobs;

    const c1 = Region.restore(store, { name: 'heap', snapshot: base, as: 'c1' });
    const c2 = Region.restore(store, { name: 'heap', snapshot: base.id, as: 'c2' });
    expect([c1.name, c2.name, c1.head, c2.head]).toEqual(['c1', 'c2', base.id, base.id]);
    expectCode(() => Region.restore(store, { name: 'heap', snapshot: base, as: 'c1' }), 'REGION_IN_USE');
    expectCode(() => Region.restore(store, { name: 'c1', snapshot: base, as: 'c3' }), 'REGION_MISMATCH');
    expectCode(() => Region.restore(store, { name: 'heap', snapshot: base, as: '' }), 'INVALID_ARGUMENT');
    // Both read the snapshot while the original goes on.
    expectBytesEqual(new Uint8Array(c1.buffer), want.get(base.id)!, 'clone 1');
    expectBytesEqual(new Uint8Array(c2.buffer), want.get(base.id)!, 'clone 2');
    const m1 = new Uint8Array(c1.buffer), m2 = new Uint8Array(c2.buffer);
    fillPattern(m1, 11, 3 * CHUNK, CHUNK);          // one chunk
    fillPattern(m2, 12, SIZE - 2 * CHUNK, 2 * CHUNK);  // two other chunks
    const a1 = snap(c1, 'c1-a'), a2 = snap(c2, 'c2-a');
    fillPattern(m1, 13, 0, 100);
    const b1 = snap(c1, 'c1-b');
    fillPattern(mem, 3, 0, CHUNK);
    const next = snap(heap);
    await Promise.all([a1, a2, b1, next].map((s) => s.persisted));
    expect([a1.region, a1.parent, a2.region, a2.parent, b1.parent]).toEqual(['c1', base.id, 'c2', base.id, a1.id]);
    // Incremental against the snapshot they were opened from; unchanged chunks are not stored again.
    expect([a1.chunks, a2.chunks, b1.chunks]).toEqual([1, 2, 1]);
    expect(store.stats().blobs - blobsBefore).toBe(1 + 2 + 1 + 1);
    expect(store.info(a1.id).full).toBe(false);
    // In place: back to the snapshot it was opened from, and forward again.
    c1.restore(base);
    expectBytesEqual(new Uint8Array(c1.buffer), want.get(base.id)!, 'clone 1 rolled back to its origin');
    c1.restore(b1);
    expectBytesEqual(new Uint8Array(c1.buffer), want.get(b1.id)!, 'clone 1 forward again');
    expectCode(() => c1.restore(a2), 'REGION_MISMATCH');  // another branch
    c1.close();
    c2.close();
    heap.close();

    const check = async () => {
      for (const [id, bytes] of want) {
        if (!store.list().some((s) => s.id === id)) continue;
        const region = store.info(id).region;
        expectBytesEqual(await restoredImage(store, region, id), bytes, `snapshot ${id} of ${region}`);
        expectBytesEqual(store.read(id, 0, SIZE), bytes, `store.read of snapshot ${id}`);
      }
    };
    await check();
    // A clone of a clone's snapshot.
    expectBytesEqual(await restoredImage(store, 'c1', b1.id, 'c1-copy'), want.get(b1.id)!, 'clone of a clone');

    const tree = spawnSync(process.execPath, [CLI, 'list', file, '--tree'], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
    expect(tree.status, tree.stderr).toBe(0);
    const lines = tree.stdout.trim().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^${base.id} heap "warm"`));
    expect(tree.stdout).toMatch(new RegExp(`[├└]─ ${a1.id} c1 branch "c1" from "heap" "c1-a"`));
    expect(tree.stdout).toMatch(new RegExp(`[├└]─ ${a2.id} c2 branch "c2" from "heap" "c2-a"`));
    expect(tree.stdout).toMatch(new RegExp(`^│? *${b1.id} c1 "c1-b"`, 'm'));
    const table = spawnSync(process.execPath, [CLI, 'list', file], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
    expect(table.stdout).toMatch(new RegExp(`${a1.id} +│? *c1 +│? *${base.id} \\(heap\\)`));

    // Deleting the original's later snapshots, then the one the clones stand on: the clones
    // keep their contents (the chunks move to the snapshots standing on it), and gc keeps them.
    await store.delete(next.id);
    await store.delete(later.id);
    await store.delete(base.id);
    await store.gc();
    want.delete(next.id);
    want.delete(later.id);
    want.delete(base.id);
    expect(store.verify().ok).toBe(true);
    await check();
  }, 120_000);

  it('in another process: a clone opened from a read-only handle while this process writes the store', async () => {
    const file = path.join(tmpDir('usnap-clones-'), 'x.usnap');
    const store = Store.open(file);
    open.push(store);
    const heap = Region.alloc(SIZE, { store, name: 'heap' });
    fillPattern(new Uint8Array(heap.buffer), 5, 0, SIZE);
    const base = heap.snapshot();
    await base.persisted;
    const mine = Region.restore(store, { name: 'heap', snapshot: base, as: 'here' });
    open.push(mine);
    fillPattern(new Uint8Array(mine.buffer), 6, 0, CHUNK);
    const script = `
      const { Region, Store } = require(${JSON.stringify(dist)});
      const store = Store.open(${JSON.stringify(file)}, { readonly: true });
      const r = Region.restore(store, { name: 'heap', snapshot: ${base.id}, as: 'there' });
      const m = new Uint8Array(r.buffer);
      const sum = (b) => require('node:crypto').createHash('sha256').update(b).digest('hex');
      const at = sum(m);
      m.fill(9, 0, 1 << 20);
      r.restore(${base.id});  // a test farm resets to the snapshot between runs
      const again = sum(m);
      let code = 'none';
      try { r.snapshot(); } catch (e) { code = e.code; }
      r.close();
      store.close();
      console.log(JSON.stringify({ at, again, code }));
    `;
    const out = runNode(script);
    expect(out.status, out.stderr).toBe(0);
    const got = JSON.parse(out.stdout.trim().split('\n').at(-1)!);
    const { createHash } = await import('node:crypto');
    const expected = createHash('sha256').update(store.read(base, 0, SIZE)).digest('hex');
    expect(got).toEqual({ at: expected, again: expected, code: 'STORE_READONLY' });
    // This process's clone was untouched by the other one.
    const s = mine.snapshot();
    await s.persisted;
    expect(s.chunks).toBe(1);
  }, 60_000);
});
