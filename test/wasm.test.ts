// WebAssembly.Memory regions: a real wasm program (examples/wasm/world.wat) rolled back and
// moved to a new instance, snapshots across memory.grow(), and a shared memory written by
// worker threads while it is snapshotted.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import wabt from 'wabt';
import { describe, expect, it } from 'vitest';
import { Region, Store } from '../lib/index';
import { expectBytesEqual, expectCode, fillPattern, root } from './helpers';

const PAGE = 65536;
const BATCH = 20_000;

type World = { init(seed: number): void; run(n: number): number; steps(): number };

let compiled: Promise<WebAssembly.Module> | undefined;
function worldModule(): Promise<WebAssembly.Module> {
  compiled ??= (async () => {
    const file = path.join(root, 'examples', 'wasm', 'world.wat');
    const bin = (await wabt()).parseWat(file, fs.readFileSync(file, 'utf8')).toBinary({}).buffer;
    return new WebAssembly.Module(bin);
  })();
  return compiled;
}

async function instance(initial = 2): Promise<{ memory: WebAssembly.Memory; world: World }> {
  const memory = new WebAssembly.Memory({ initial, maximum: 1024 });
  const world = new WebAssembly.Instance(await worldModule(), { env: { memory } }).exports as unknown as World;
  return { memory, world };
}

const runBatches = (w: World, n: number) => Array.from({ length: n }, () => w.run(BATCH) >>> 0);

/** The memory equals `ref` where both have bytes; any part beyond `ref` is zero. */
function expectMemory(memory: WebAssembly.Memory, ref: Uint8Array, what: string): void {
  const bytes = new Uint8Array(memory.buffer);
  expect(bytes.length).toBeGreaterThanOrEqual(ref.length);
  expectBytesEqual(bytes.subarray(0, ref.length), ref, what);
  const z = bytes.subarray(ref.length).findIndex((b) => b !== 0);
  if (z !== -1) throw new Error(`${what}: byte ${ref.length + z} beyond the reference is ${bytes[ref.length + z]}, want 0`);
}

describe('a wasm program', () => {
  it('continues after a restore exactly as the uninterrupted run, in place and in a new instance', async () => {
    // Reference: one uninterrupted run, no region involved.
    const ref = await instance();
    ref.world.init(99);
    const refOut = runBatches(ref.world, 12);
    const refMemAt = new Map<number, Uint8Array>();
    {
      const again = await instance();
      again.world.init(99);
      for (let b = 1; b <= 12; b++) {
        again.world.run(BATCH);
        if (b === 3 || b === 7 || b === 12) refMemAt.set(b, new Uint8Array(again.memory.buffer).slice());
      }
    }
    expect(ref.memory.buffer.byteLength / PAGE).toBeGreaterThan(20);  // the program grew its memory

    const store = Store.open(':memory:');
    const { memory, world } = await instance();
    const region = Region.attach(memory, { store, name: 'world' });
    world.init(99);
    expect(runBatches(world, 3)).toEqual(refOut.slice(0, 3));
    const at3 = region.snapshot({ label: 'batch 3' });
    const pagesAt3 = memory.buffer.byteLength / PAGE;
    expect(runBatches(world, 4)).toEqual(refOut.slice(3, 7));
    const at7 = region.snapshot({ label: 'batch 7' });
    expect(memory.buffer.byteLength / PAGE).toBeGreaterThan(pagesAt3);  // grew between the snapshots
    expect(runBatches(world, 5)).toEqual(refOut.slice(7, 12));
    await Promise.all([at3.persisted, at7.persisted]);

    // Out of order: back to 3, forward to 7, back to 3; each time the continuation matches.
    region.restore(at3);
    expect(world.steps()).toBe(3 * BATCH);
    expectMemory(memory, refMemAt.get(3)!, 'memory after restoring batch 3');
    expect(runBatches(world, 4)).toEqual(refOut.slice(3, 7));
    region.restore(at7);
    expectMemory(memory, refMemAt.get(7)!, 'memory after restoring batch 7');
    expect(runBatches(world, 5)).toEqual(refOut.slice(7, 12));
    expectMemory(memory, refMemAt.get(12)!, 'memory after continuing from batch 7');
    region.restore(at3);
    expect(runBatches(world, 9)).toEqual(refOut.slice(3, 12));
    region.close();

    // A new instance of the same module with a fresh (smaller) memory.
    const fresh = await instance();
    const r2 = Region.attach(fresh.memory, { store, name: 'world' });
    r2.restore(at7.id);
    expect(fresh.memory.buffer.byteLength).toBe(refMemAt.get(7)!.length);  // grown to the snapshot's size
    expectMemory(fresh.memory, refMemAt.get(7)!, 'fresh memory after restore');
    expect(runBatches(fresh.world, 5)).toEqual(refOut.slice(7, 12));
    r2.close();
    store.close();
  });
});

describe('memory.grow()', () => {
  it('snapshots across grows restore byte-exact; a pre-grow snapshot gives the old bytes and zeros', async () => {
    const store = Store.open(':memory:');
    const memory = new WebAssembly.Memory({ initial: 4, maximum: 64 });
    const region = Region.attach(memory, { store, name: 'grow' });
    const view = () => new Uint8Array(memory.buffer);

    fillPattern(view(), 1);
    const s1 = region.snapshot();
    const e1 = view().slice();
    expect(s1.chunks).toBe(4);

    memory.grow(3);                          // 7 pages
    fillPattern(view(), 2, 4 * PAGE);        // the grown part
    fillPattern(view(), 3, PAGE + 100, 5000);  // and a bit of the old part
    const s2 = region.snapshot();
    const e2 = view().slice();
    expect(region.size).toBe(7 * PAGE);
    expect(s2.chunks).toBe(4);               // the 3 new chunks and the one rewritten

    memory.grow(5);                          // 12 pages, the new ones left partly zero
    view().fill(0x77, 9 * PAGE, 10 * PAGE + 10);
    view().fill(0x11, 0, 100);
    const s3 = region.snapshot();
    const e3 = view().slice();
    expect(s3.chunks).toBe(6);               // the 5 grown chunks (they joined untracked) and chunk 0

    for (const [s, e] of [[s1, e1], [s3, e3], [s2, e2], [s1, e1], [s3, e3]] as const) {
      region.restore(s);
      expect(memory.buffer.byteLength).toBe(12 * PAGE);  // memory cannot shrink
      expectMemory(memory, e, `after restoring snapshot ${s.id}`);
    }
    await Promise.all([s1.persisted, s2.persisted, s3.persisted]);
    region.restore(s2);
    expectMemory(memory, e2, 'after restoring persisted s2');
    // History continues from the restored snapshot, and grows again.
    memory.grow(1);
    view().fill(0x42, 12 * PAGE, 13 * PAGE);
    const s4 = region.snapshot();
    expect(s4.parent).toBe(s2.id);
    const e4 = view().slice();
    region.restore(s1);
    expectMemory(memory, e1, 'after restoring s1 into 13 pages');
    region.restore(s4);
    expectMemory(memory, e4, 'after restoring s4');
    await s4.persisted;
    region.close();

    // Into a fresh memory: grown to the snapshot's size; with too small a maximum, a clear error.
    const fresh = new WebAssembly.Memory({ initial: 1, maximum: 64 });
    const r2 = Region.attach(fresh, { store, name: 'grow' });
    r2.restore(s3);
    expect(fresh.buffer.byteLength).toBe(12 * PAGE);
    expectBytesEqual(new Uint8Array(fresh.buffer), e3, 'fresh memory after restoring s3');
    r2.close();
    const small = new WebAssembly.Memory({ initial: 1, maximum: 8 });
    const r3 = Region.attach(small, { store, name: 'grow' });
    const err = expectCode(() => r3.restore(s3), 'REGION_MISMATCH');
    expect(err.hint).toMatch(/maximum/);
    expect(small.buffer.byteLength).toBe(PAGE);
    r3.close();
    store.close();
  });
});

// Each worker owns SLOTS slots of SLOT bytes (interleaved with the other worker's, straddling
// chunk boundaries). Generation g of a slot is written in order: begin word = g, the payload
// words f(w, s, g, i), end word = g; a worker rewrites its slots 0..SLOTS-1 for g = 1, 2, ...
// A snapshot is a real instant only if, for each worker, it holds a prefix of that stream.
const SLOTS = 24;
const SLOT = 20 * 1024;
const WORDS = SLOT / 4;
const HEAP = PAGE;  // slots start after the control page
const PAYLOAD = '(w, s, g, i) => (Math.imul(g, 0x9e3779b1) ^ Math.imul(i, 0x85ebca6b) ^ (w << 28) ^ (s << 20)) | 0';
const payload = new Function(`return ${PAYLOAD}`)() as (w: number, s: number, g: number, i: number) => number;
const WORKER = `
const { workerData } = require('node:worker_threads');
const { buffer, w, SLOTS, WORDS, HEAP, SLOT } = workerData;
const ctrl = new Int32Array(buffer, 0, 16);
const f = ${PAYLOAD};
Atomics.store(ctrl, 4 + w, 1);  // started
for (let g = 1; Atomics.load(ctrl, 0) === 0; g++) {
  Atomics.store(ctrl, 8 + w, g);  // the generation being written
  for (let s = 0; s < SLOTS; s++) {
    const slot = new Int32Array(buffer, HEAP + (s * 2 + w) * SLOT, WORDS);
    Atomics.store(slot, 0, g);
    for (let i = 1; i < WORDS - 1; i++) slot[i] = f(w, s, g, i);
    Atomics.store(slot, WORDS - 1, g);
  }
}
`;


/** Checks the memory is a consistent instant; returns each worker's generation (begin word of slot 0) and torn slots. */
function checkConsistent(buffer: SharedArrayBuffer, what: string): { gens: number[]; torn: number } {
  const gens: number[] = [];
  let torn = 0;
  for (let w = 0; w < 2; w++) {
    const begins: number[] = [];
    for (let s = 0; s < SLOTS; s++) {
      const slot = new Int32Array(buffer, HEAP + (s * 2 + w) * SLOT, WORDS);
      const b = slot[0]!;
      const e = slot[WORDS - 1]!;
      begins.push(b);
      if (b !== e) {
        torn++;
        if (b !== e + 1) throw new Error(`${what}: worker ${w} slot ${s} begins generation ${b} but ends ${e}`);
      }
      for (let i = 1; i < WORDS - 1; i++) {
        const v = slot[i]!;
        // Generation 0 is the memory before the worker's first write: zero.
        if (v !== (b && payload(w, s, b, i)) && (b === e || v !== (e && payload(w, s, e, i)))) {
          throw new Error(`${what}: worker ${w} slot ${s} (generation ${b}/${e}) word ${i} holds another generation's payload`);
        }
      }
    }
    // A prefix of the worker's writes: generation g in the first slots, g-1 after them.
    for (let s = 1; s < SLOTS; s++) {
      if (begins[s]! > begins[s - 1]! || begins[s]! < begins[0]! - 1) {
        throw new Error(`${what}: worker ${w} slots hold generations ${begins.join(',')}: not an instant of its writes`);
      }
    }
    gens.push(begins[0]!);
  }
  return { gens, torn };
}

describe('a shared WebAssembly.Memory written by worker threads', () => {
  it('snapshots are consistent instants of both writers', async () => {
    const pages = Math.ceil((HEAP + 2 * SLOTS * SLOT) / PAGE);
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    const buffer = memory.buffer as unknown as SharedArrayBuffer;
    const ctrl = new Int32Array(buffer, 0, 16);
    const region = Region.attach(memory, { name: 'shared' });
    const workers = [0, 1].map((w) => new Worker(WORKER, { eval: true, workerData: { buffer, w, SLOTS, WORDS, HEAP, SLOT } }));
    const exited = workers.map((wk) => new Promise<number>((resolve, reject) => { wk.on('exit', resolve); wk.on('error', reject); }));
    try {
      while (Atomics.load(ctrl, 4) === 0 || Atomics.load(ctrl, 5) === 0) await new Promise((r) => setTimeout(r, 1));
      const snaps = [];
      for (let k = 0; k < 16; k++) {
        await new Promise((r) => setTimeout(r, 10 + (k % 4) * 5));
        // The generation each worker is writing, read just before and just after: a snapshot's
        // slot 0 holds one from that range (bytes from another time would fall outside it).
        const before = [Atomics.load(ctrl, 8), Atomics.load(ctrl, 9)];
        const s = region.snapshot({ label: `k${k}` });
        const after = [Atomics.load(ctrl, 8), Atomics.load(ctrl, 9)];
        snaps.push({ s, before, after });
      }
      Atomics.store(ctrl, 0, 1);  // stop
      expect(await Promise.all(exited)).toEqual([0, 0]);
      const final = region.snapshot({ label: 'stopped' });
      const finalBytes = new Uint8Array(buffer).slice();
      await Promise.all([...snaps.map((x) => x.s.persisted), final.persisted]);

      let torn = 0;
      const gens: number[][] = [];
      for (const { s, before, after } of snaps) {
        region.restore(s);
        const c = checkConsistent(buffer, `snapshot ${s.id}`);
        torn += c.torn;
        gens.push(c.gens);
        for (let w = 0; w < 2; w++) {
          // Slot 0 holds the generation being written, or the one before if the snapshot came
          // between the worker publishing it and writing slot 0.
          expect(c.gens[w]).toBeGreaterThanOrEqual(before[w]! - 1);
          expect(c.gens[w]).toBeLessThanOrEqual(after[w]!);
        }
      }
      // The workers made progress while the snapshots were taken, and the snapshots show it.
      for (let w = 0; w < 2; w++) expect(gens.at(-1)![w]).toBeGreaterThan(gens[0]![w]!);
      // The check catches a state that never existed: one chunk of the last snapshot mixed into the first.
      const last = new Uint8Array(buffer).slice();
      region.restore(snaps[0]!.s);
      const chunk = HEAP + 3 * PAGE;
      new Uint8Array(buffer).set(last.subarray(chunk, chunk + PAGE), chunk);
      expect(() => checkConsistent(buffer, 'mixed')).toThrow(/mixed: worker/);
      region.restore(final);
      expectBytesEqual(new Uint8Array(buffer), finalBytes, 'after restoring the final snapshot');
      checkConsistent(buffer, 'final snapshot');
      console.log(`shared memory: ${snaps.length} snapshots under 2 writers, generations ${gens[0]} -> ${gens.at(-1)}, ${torn} slots caught mid-write, all consistent`);
    } finally {
      Atomics.store(ctrl, 0, 1);
      await Promise.all(exited).catch(() => {});
      region.close();
    }
  });
});
