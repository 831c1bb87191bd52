// Many threads writing while snapshots are taken and saved. Writers own slots of several
// chunks; every round a writer stores its round number into the first word of each page of a
// slot, first page to last (see native/testing/testing.cc). At any single instant a slot reads
// r, ..., r, r-1, ..., r-1 (non-increasing, first - last <= 1). A snapshot that mixed instants
// (one chunk captured before a round, a later one after, or the reverse) breaks that, and so
// does a lost write (a page older than the round the last page already shows).
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { Region, Store, type Snapshot } from '../lib/index';
import { expectBytesEqual, fillPattern, tmpDir } from './helpers';
import { snapshotImage } from './image-helper';
import { testing } from './testing-addon';
import * as fs from 'node:fs';

const MiB = 1 << 20, PAGE = 4096, SLOT = 256 * 1024;  // 4 chunks per slot
const dir = tmpDir('usnap-conc-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Checks the slot invariant over [from, to) of an image; returns the slots' first-page rounds. */
function checkSlots(img: Uint8Array, from: number, to: number, what: string): number[] {
  const v = new DataView(img.buffer, img.byteOffset, img.byteLength);
  const firsts: number[] = [];
  for (let s = from; s + SLOT <= to; s += SLOT) {
    const first = v.getUint32(s, true);
    let prev = first;
    for (let p = s + PAGE; p < s + SLOT; p += PAGE) {
      const x = v.getUint32(p, true);
      if (x > prev || first - x > 1) {
        throw new Error(`${what}: slot at ${s} is not point-in-time: page ${(p - s) / PAGE} holds round ${x} after ${prev} (first page ${first})`);
      }
      prev = x;
    }
    firsts.push(first);
  }
  return firsts;
}

/** Rounds never go backwards from one snapshot to the next. */
function checkMonotonic(prev: number[] | undefined, cur: number[], what: string): void {
  if (!prev) return;
  for (let i = 0; i < cur.length; i++) if (cur[i]! < prev[i]!) throw new Error(`${what}: slot ${i} went back from round ${prev[i]} to ${cur[i]}`);
}

/** Every snapshot point-in-time and no slot going back; the last one byte-exact. */
async function checkHistory(store: Store, snaps: Snapshot[], last: Snapshot, final: Uint8Array): Promise<void> {
  await Promise.all([...snaps, last].map((s) => s.persisted));
  let prev: number[] | undefined;
  for (const s of snaps) {
    const firsts = checkSlots(snapshotImage(store, s.id), 0, 16 * MiB, `snapshot ${s.id}`);
    checkMonotonic(prev, firsts, `snapshot ${s.id}`);
    prev = firsts;
  }
  expectBytesEqual(snapshotImage(store, last.id), final, 'final snapshot');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('concurrent writers', () => {
  it('4 native threads: every snapshot is point-in-time, nothing is lost', async () => {
    const t = testing();
    const store = Store.open(path.join(dir, 'native.usnap'));
    const region = Region.alloc(16 * MiB, { store, name: 'n' });
    const bytes = new Uint8Array(region.buffer);
    const w = t.writers_start(bytes, SLOT, 4);
    const snaps: Snapshot[] = [];
    for (let i = 0; i < 40; i++) {
      await sleep(i % 3 === 0 ? 0 : 15);
      snaps.push(region.snapshot());
    }
    const rounds = t.writers_stop(w);
    expect(Math.min(...rounds)).toBeGreaterThan(0);  // every writer ran during the snapshots (how far depends on the machine)
    const last = region.snapshot();
    const final = bytes.slice();
    await checkHistory(store, snaps, last, final);
    const st = region.stats();
    expect(st.faults).toBeGreaterThan(0);
    region.close();
    store.close();
  });

  it('2 worker threads + 2 native threads on a shared WebAssembly.Memory (Region.attach)', async () => {
    const t = testing();
    const memory = new WebAssembly.Memory({ initial: 256, maximum: 256, shared: true });  // 16 MiB
    const store = Store.open(path.join(dir, 'wasm.usnap'));
    const region = Region.attach(memory, { store, name: 'w' });
    const half = 8 * MiB;
    const stop = new Int32Array(new SharedArrayBuffer(16));
    const workerCode = `
      const { workerData, parentPort } = require('node:worker_threads');
      const { memory, stop, index, n, from, to, slot } = workerData;
      const i32 = new Int32Array(memory.buffer);
      let round = 1;
      parentPort.postMessage('started');
      while (Atomics.load(stop, 0) === 0) {
        for (let s = from + index * slot; s + slot <= to; s += n * slot)
          for (let p = s; p < s + slot; p += 4096) Atomics.store(i32, p >> 2, round);
        Atomics.store(stop, 1 + index, round);  // not read: rounds are checked from memory
        round++;
      }
      parentPort.postMessage(round - 1);`;
    const workers = [0, 1].map(
      (index) => new Worker(workerCode, { eval: true, workerData: { memory, stop, index, n: 2, from: 0, to: half, slot: SLOT } }),
    );
    await Promise.all(workers.map((wk) => new Promise((r) => wk.once('message', r))));
    const w = t.writers_start(new Uint8Array(memory.buffer, half, half), SLOT, 2);
    const snaps: Snapshot[] = [];
    for (let i = 0; i < 30; i++) {
      await sleep(10);
      snaps.push(region.snapshot());
    }
    Atomics.store(stop, 0, 1);
    const done = await Promise.all(workers.map((wk) => new Promise<number>((r) => wk.once('message', r))));
    expect(Math.min(...done)).toBeGreaterThan(0);
    t.writers_stop(w);
    await Promise.all(workers.map((wk) => wk.terminate()));
    const last = region.snapshot();
    const final = new Uint8Array(memory.buffer).slice();
    await checkHistory(store, snaps, last, final);
    region.close();
    store.close();
  });

  it('snapshots while a lazy restore prefetch runs, with writers faulting chunks in', async () => {
    const t = testing();
    const store = Store.open(path.join(dir, 'prefetch.usnap'));
    const size = 32 * MiB;
    const src = Region.alloc(size, { store, name: 'p' });
    fillPattern(new Uint8Array(src.buffer), 77);
    const original = new Uint8Array(src.buffer).slice();
    const s0 = src.snapshot();
    await s0.persisted;
    src.close();
    const region = Region.restore(store, { name: 'p', snapshot: s0.id });
    const bytes = new Uint8Array(region.buffer);
    const slotsEnd = 8 * MiB;
    const w = t.writers_start(bytes.subarray(0, slotsEnd), SLOT, 2, 0x40000000);
    const snaps: Snapshot[] = [];
    let readyBefore = 0;
    let ready = false;
    void region.ready.then(() => (ready = true));
    for (let i = 0; i < 12; i++) {
      if (!ready) readyBefore++;
      snaps.push(region.snapshot());
      await sleep(5);
    }
    await region.ready;
    t.writers_stop(w);
    const last = region.snapshot();
    const final = bytes.slice();
    await Promise.all([...snaps, last].map((s) => s.persisted));
    expect(readyBefore).toBeGreaterThan(0);
    const BASE = 0x40000000;
    for (const s of snaps) {
      const img = snapshotImage(store, s.id);
      // Pages the writers never reached keep the snapshot they were restored from; a written
      // page's first word is a round. Rebuild the expected image and a rounds-only image.
      const expected = original.slice();
      const v = new DataView(img.buffer), ev = new DataView(expected.buffer);
      const rounds = new Uint8Array(slotsEnd);
      const rv = new DataView(rounds.buffer);
      for (let p = 0; p < slotsEnd; p += PAGE) {
        const x = v.getUint32(p, true);
        if (x === ev.getUint32(p, true)) continue;  // never written: round 0
        if (x < BASE || x > BASE + 100_000_000) throw new Error(`snapshot ${s.id}: page ${p / PAGE} holds neither the restored word nor a round`);
        ev.setUint32(p, x, true);
        rv.setUint32(p, x - BASE + 1, true);
      }
      expectBytesEqual(img, expected, `snapshot ${s.id}`);
      checkSlots(rounds, 0, slotsEnd, `snapshot ${s.id}`);
    }
    expectBytesEqual(snapshotImage(store, last.id), final, 'final snapshot');
    region.close();
    store.close();
  });

  it('two regions snapshotted together, each consistent', async () => {
    const t = testing();
    const store = Store.open(path.join(dir, 'two.usnap'));
    const a = Region.alloc(8 * MiB, { store, name: 'a' });
    const b = Region.alloc(8 * MiB, { store, name: 'b' });
    const wa = t.writers_start(new Uint8Array(a.buffer), SLOT, 2);
    const wb = t.writers_start(new Uint8Array(b.buffer), SLOT, 2);
    const pairs: [Snapshot, Snapshot][] = [];
    for (let i = 0; i < 25; i++) {
      await sleep(8);
      pairs.push([a.snapshot(), b.snapshot()]);
    }
    t.writers_stop(wa);
    t.writers_stop(wb);
    const la = a.snapshot(), lb = b.snapshot();
    const fa = new Uint8Array(a.buffer).slice(), fb = new Uint8Array(b.buffer).slice();
    await Promise.all([...pairs.flat(), la, lb].map((s) => s.persisted));
    for (const [sa, sb] of pairs) {
      checkSlots(snapshotImage(store, sa.id), 0, 8 * MiB, `a ${sa.id}`);
      checkSlots(snapshotImage(store, sb.id), 0, 8 * MiB, `b ${sb.id}`);
    }
    expectBytesEqual(snapshotImage(store, la.id), fa, 'a final');
    expectBytesEqual(snapshotImage(store, lb.id), fb, 'b final');
    a.close();
    b.close();
    store.close();
  });
});
