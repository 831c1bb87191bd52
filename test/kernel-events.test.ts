// Kernel events on region memory: fork(), mremap(), madvise(MADV_DONTNEED). The reference is the
// kernel's own selftests (tools/testing/selftests/mm/uffd-unit-tests.c: wp-fork, wp-unpopulated,
// events-wp), restated here against the library's guarantees.
import { describe, expect, it } from 'vitest';
import { Region, Store } from '../lib/index';
import { expectBytesEqual, expectCode, expectRejectCode, fillPattern } from './helpers';
import { snapshotImage } from './image-helper';
import { testing } from './testing-addon';

const KiB = 1024, MiB = 1 << 20, CHUNK = 64 * KiB;

async function image(store: Store, _name: string, id: number): Promise<Uint8Array> {
  return snapshotImage(store, id);
}

describe('fork()', () => {
  it("a child's writes never reach the parent's snapshots, even mid-snapshot", async () => {
    const t = testing();
    const store = Store.open(':memory:');
    const region = Region.alloc(8 * MiB, { store, name: 'f' });
    const bytes = new Uint8Array(region.buffer);
    fillPattern(bytes, 1);
    const s1 = region.snapshot();            // its chunks are still being saved
    const want1 = bytes.slice();
    // The child writes everywhere (protected or not) and checks its writes stuck: without
    // UFFD_FEATURE_EVENT_FORK it inherits no registration, so it never blocks (wp-fork).
    const pid = t.fork_write(bytes, 0, bytes.length, 0xee, 100);
    fillPattern(bytes, 2, 3 * MiB, 200 * KiB);  // the parent keeps writing meanwhile
    const s2 = region.snapshot();
    const want2 = bytes.slice();
    expect(t.wait_child(pid)).toBe(0);
    fillPattern(bytes, 3, 0, 100 * KiB);
    const s3 = region.snapshot();
    const want3 = bytes.slice();
    await Promise.all([s1.persisted, s2.persisted, s3.persisted]);
    expectBytesEqual(await image(store, 'f', s1.id), want1, 's1');
    expectBytesEqual(await image(store, 'f', s2.id), want2, 's2');
    expectBytesEqual(await image(store, 'f', s3.id), want3, 's3');
    region.restore(s1);
    expectBytesEqual(bytes, want1, 'in-place s1');
    region.close();
    store.close();
  });

  it('a child forked from a lazily restored region sees the snapshot and cannot hang', async () => {
    const t = testing();
    const store = Store.open(':memory:');
    const a = Region.alloc(2 * MiB, { store, name: 'lz' });
    fillPattern(new Uint8Array(a.buffer), 9);
    const want = new Uint8Array(a.buffer).slice();
    const s = a.snapshot();
    await s.persisted;
    a.close();
    const r = Region.restore(store, { name: 'lz', snapshot: s.id });
    await r.ready;
    const pid = t.fork_write(new Uint8Array(r.buffer), 0, 2 * MiB, 1, 0);
    expect(t.wait_child(pid)).toBe(0);
    expectBytesEqual(new Uint8Array(r.buffer), want, 'parent after fork');
    r.close();
    store.close();
  });
});

describe('mremap()', () => {
  it('moving the memory and back: later writes never block, the next use fails clearly', async () => {
    const t = testing();
    const region = Region.alloc(MiB);
    const bytes = new Uint8Array(region.buffer);
    bytes.fill(7);
    await region.snapshot().persisted;
    expect(t.mremap_roundtrip(bytes, true)).toBe(0);
    bytes[5] = 1;                                     // protected page: must not hang
    bytes[700_000] = 2;
    const err = expectCode(() => region.snapshot(), 'REGION_MISMATCH');
    expect(err.message).toMatch(/mremap/);
    expect(err.hint).toMatch(/mremap/);
    expectCode(() => region.restore(1), 'REGION_MISMATCH');
    expectCode(() => region.unprotect(0, 4096), 'REGION_MISMATCH');
    region.close();                                   // still closes cleanly
  });

  it('moving the memory away for good: clear error, clean close', async () => {
    const t = testing();
    const region = Region.alloc(MiB);
    const bytes = new Uint8Array(region.buffer);
    bytes.fill(3);
    await region.snapshot().persisted;
    expect(t.mremap_roundtrip(bytes, false)).toBe(0);
    expectCode(() => region.snapshot(), 'REGION_MISMATCH');
    region.close();
  });
});

describe('madvise(MADV_DONTNEED)', () => {
  it('discarding saved pages is recorded: the next snapshot stores the zeros', async () => {
    const t = testing();
    const store = Store.open(':memory:');
    const region = Region.alloc(MiB, { store, name: 'd' });
    const bytes = new Uint8Array(region.buffer);
    bytes.fill(7);
    await region.snapshot().persisted;
    expect(t.madvise_dontneed(bytes, CHUNK, 2 * CHUNK)).toBe(0);
    expect(bytes[CHUNK]).toBe(0);
    const s2 = region.snapshot();
    expect(s2.chunks).toBe(2);
    bytes[CHUNK + 3] = 9;                             // a write after the discard is tracked too
    const s3 = region.snapshot();
    expect(s3.chunks).toBe(1);
    const want = bytes.slice();
    await Promise.all([s2.persisted, s3.persisted]);
    expectBytesEqual(await image(store, 'd', s3.id), want, 's3');
    region.close();
    store.close();
  });

  it('discarding a pending capture fails that snapshot; the next one is full and correct', async () => {
    const t = testing();
    const store = Store.open(':memory:');
    const region = Region.alloc(32 * MiB, { store, name: 'p' });
    const bytes = new Uint8Array(region.buffer);
    fillPattern(bytes, 5);                            // incompressible: saving takes a while
    await region.snapshot().persisted;
    fillPattern(bytes, 6);
    const s2 = region.snapshot();                     // every chunk pending, saved in order
    const s3 = region.snapshot();                     // stands on s2
    expect(t.madvise_dontneed(bytes, 32 * MiB - CHUNK, CHUNK)).toBe(0);  // the last one saved
    const e = await expectRejectCode(s2.persisted, 'SNAPSHOT_FAILED');
    expect(e.message).toMatch(/discarded/);
    await expectRejectCode(s3.persisted, 'SNAPSHOT_FAILED');
    const s4 = region.snapshot();
    expect(s4.parent).toBeNull();                    // a new baseline
    const want = bytes.slice();
    await s4.persisted;
    expectBytesEqual(await image(store, 'p', s4.id), want, 's4');
    region.close();
    store.close();
  });

  it('a lazily restored region: discarded pages read as zero (no refault loop) and are saved', async () => {
    const t = testing();
    const store = Store.open(':memory:');
    const a = Region.alloc(MiB, { store, name: 'r' });
    new Uint8Array(a.buffer).fill(7);
    const s = a.snapshot();
    await s.persisted;
    a.close();
    const r = Region.restore(store, { name: 'r', snapshot: s.id });
    await r.ready;
    const v = new Uint8Array(r.buffer);
    expect(t.madvise_dontneed(v, 0, CHUNK)).toBe(0);
    expect(v[0]).toBe(0);
    v[1] = 9;
    const s2 = r.snapshot();
    const want = v.slice();
    await s2.persisted;
    r.close();
    expectBytesEqual(await image(store, 'r', s2.id), want, 's2');
    store.close();
  });
});
