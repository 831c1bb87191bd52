// Working-set prefetch: a lazy restore records the order chunks are first touched in, and the
// next restore of that snapshot fetches those chunks first, in that order.
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Region, Store } from '../lib/index';
import Database from 'better-sqlite3';
import { expectBytesEqual, expectCode, fillPattern, tmpDir } from './helpers';

const CHUNK = 64 * 1024;
const CHUNKS = 64;
const SIZE = CHUNKS * CHUNK;

let open: { close(): void }[] = [];
afterEach(() => {
  for (const x of open.reverse()) x.close();
  open = [];
});

/** A snapshot whose chunks all hold data except 40..43 (zero), and the bytes it holds. */
async function makeSnapshot(store: Store): Promise<{ id: number; bytes: Uint8Array }> {
  const r = Region.alloc(SIZE, { store, name: 'heap' });
  const mem = new Uint8Array(r.buffer);
  fillPattern(mem, 9);
  mem.fill(0, 40 * CHUNK, 44 * CHUNK);
  const s = r.snapshot();
  await s.persisted;
  const bytes = mem.slice();
  r.close();
  return { id: s.id, bytes };
}

/** A fixed order, not by address: every third chunk from the end, some twice, a zero one. */
const TOUCHES = [50, 7, 33, 7, 61, 0, 41, 12, 50, 25, 3];
const RECORDED = [50, 7, 33, 61, 0, 41, 12, 25, 3];  // first touches only

for (const kind of ['file', 'memory'] as const) {
  describe(`working-set prefetch (${kind} store)`, () => {
    const openStore = () => {
      const s = Store.open(kind === 'file' ? path.join(tmpDir('usnap-prefetch-'), 'p.usnap') : ':memory:');
      open.push(s);
      return s;
    };

    it('records the first-touch order exactly, and the next restore prefetches it first, then by address', async () => {
      const store = openStore();
      const { id, bytes } = await makeSnapshot(store);
      // prefetch 'none': nothing but the touches brings chunks in, so the order is exact.
      const first = Region.restore(store, { name: 'heap', snapshot: id, prefetch: 'none' });
      const view = new Uint8Array(first.buffer);
      let sum = 0;
      for (const c of TOUCHES) sum += view[c * CHUNK + 123]!;
      expect(sum).toBeGreaterThanOrEqual(0);
      expect(first._restoreTrace()!.faultOrder).toEqual(RECORDED);
      expect(first._restoreTrace()!.prefetchLog).toEqual([]);
      first.close();
      expect(Array.from(store._workingSet(id)!)).toEqual(RECORDED);

      // Default: 'recorded'. Nothing touches the memory until it is all in.
      const second = Region.restore(store, { name: 'heap', snapshot: id });
      await second.ready;
      const log = second._restoreTrace()!.prefetchLog;
      // A file store's reader serves the recording before it knows which chunks are zero (41
      // is mapped as zero then); the memory store knows first and skips zero chunks.
      const served = kind === 'file' ? RECORDED : RECORDED.filter((c) => c < 40 || c > 43);
      const rest = Array.from({ length: CHUNKS }, (_, c) => c).filter((c) => !served.includes(c) && (c < 40 || c > 43));
      expect(log).toEqual([...served, ...rest]);
      expect(second._restoreTrace()!.faultOrder).toEqual([]);
      expectBytesEqual(new Uint8Array(second.buffer), bytes);
      second.close();
      // Nothing new was touched: the recording stays.
      expect(Array.from(store._workingSet(id)!)).toEqual(RECORDED);

      // 'address' ignores it.
      const third = Region.restore(store, { name: 'heap', snapshot: id, prefetch: 'address' });
      await third.ready;
      expect(third._restoreTrace()!.prefetchLog).toEqual(Array.from({ length: CHUNKS }, (_, c) => c).filter((c) => c < 40 || c > 43));
      expectBytesEqual(new Uint8Array(third.buffer), bytes);
      third.close();
    });

    it('the default restore of a snapshot without a recording records one: background fetching waits while the program touches chunks', async () => {
      const store = openStore();
      const { id, bytes } = await makeSnapshot(store);
      // 'address' prefetches at once: what the program touches first is mostly in already,
      // so its faults are no recording, and none is kept.
      const plain = Region.restore(store, { name: 'heap', snapshot: id, prefetch: 'address' });
      await plain.ready;
      plain.close();
      expect(store._workingSet(id)).toBeNull();

      const r = Region.restore(store, { name: 'heap', snapshot: id });
      const view = new Uint8Array(r.buffer);
      // A program that works 3 ms between touches (less than the 50 ms quiet time).
      for (const c of TOUCHES) {
        expect(view[c * CHUNK + 123]).toBe(bytes[c * CHUNK + 123]);
        for (const until = performance.now() + 3; performance.now() < until; );
      }
      expect(r._restoreTrace()!.faultOrder).toEqual(RECORDED);
      await r.ready;  // the program went quiet: the rest came in by address
      const log = r._restoreTrace()!.prefetchLog;
      expect(log).toEqual(Array.from({ length: CHUNKS }, (_, c) => c).filter((c) => !RECORDED.includes(c) && (c < 40 || c > 43)));
      expectBytesEqual(view, bytes);
      r.close();
      expect(Array.from(store._workingSet(id)!)).toEqual(RECORDED);
    });

    it("prefetch 'none' brings in only what is touched until the region must be complete", async () => {
      const store = openStore();
      const { id, bytes } = await makeSnapshot(store);
      const r = Region.restore(store, { name: 'heap', snapshot: id, prefetch: 'none', as: 'lazy' });
      open.push(r);
      const view = new Uint8Array(r.buffer);
      expect(view[5 * CHUNK]).toBe(bytes[5 * CHUNK]);
      expect(r._restoreTrace()!.prefetchLog).toEqual([]);
      // A rollback needs every chunk: the rest is fetched now, and ready resolves.
      r.restore(id);
      await r.ready;
      expectBytesEqual(view, bytes);
      expectCode(() => Region.restore(store, { name: 'heap', snapshot: id, prefetch: 'first' as never }), 'INVALID_ARGUMENT');
    });
  });
}

describe('working sets in the store', () => {
  it('a restore that used a recording appends the chunks it missed; deleting the snapshot drops it', async () => {
    const store = Store.open(path.join(tmpDir('usnap-prefetch-'), 'w.usnap'));
    open.push(store);
    const { id } = await makeSnapshot(store);
    expect(store._workingSet(id)).toBeNull();
    expect(store._recordWorkingSet(id, Uint32Array.from([3, 1]))).toBe(true);
    expect(store._recordWorkingSet(9999, Uint32Array.from([3]))).toBe(false);
    const { nextRecording } = await import('../lib/prefetch');
    expect(Array.from(nextRecording(Uint32Array.from([3, 1]), 'append', Uint32Array.from([5, 3, 9]))!)).toEqual([3, 1, 5, 9]);
    expect(nextRecording(Uint32Array.from([3, 1]), 'append', Uint32Array.from([1]))).toBeNull();
    expect(Array.from(nextRecording(Uint32Array.from([3, 1]), 'afresh', Uint32Array.from([8]))!)).toEqual([8]);
    expect(nextRecording(Uint32Array.from([3, 1]), 'no', Uint32Array.from([8]))).toBeNull();
    expect(nextRecording(null, 'afresh', new Uint32Array(0))).toBeNull();
    expect(nextRecording(null, 'afresh', new Uint32Array(5000).map((_, i) => i))!.length).toBe(4096);
    const r = Region.alloc(SIZE, { store, name: 'other' });
    const s = r.snapshot();
    await s.persisted;
    r.close();
    await store.delete(id);
    expect(store._workingSet(id)).toBeNull();
  });

  it('a version-2 store (before working sets) opens read-only as it is, and is migrated by a writable open', async () => {
    const file = path.join(tmpDir('usnap-prefetch-'), 'v2.usnap');
    let store = Store.open(file);
    const { id, bytes } = await makeSnapshot(store);
    store.close();
    const db = new Database(file);
    db.exec("DROP TABLE working_sets; UPDATE meta SET value = '2' WHERE key = 'schema_version'");
    db.close();
    store = Store.open(file, { readonly: true });
    const r = Region.restore(store, { name: 'heap', snapshot: id });
    await r.ready;
    expectBytesEqual(new Uint8Array(r.buffer), bytes);
    r.close();
    expect(store._workingSet(id)).toBeNull();
    store.close();
    store = Store.open(file);
    open.push(store);
    const v = new Database(file, { readonly: true });
    expect(v.prepare("SELECT value FROM meta WHERE key = 'schema_version'").pluck().get()).toBe('3');
    v.close();
    expect(store._recordWorkingSet(id, Uint32Array.from([1, 2]))).toBe(true);
  });
});
