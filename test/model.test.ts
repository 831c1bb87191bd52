// Model-based test: the region against a plain shadow copy across random writes, snapshots,
// persists and restores.
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { Region, Store } from '../lib/index';
import { expectBytesEqual } from './helpers';

const SIZE = 2 << 20;  // 32 chunks: small enough that chunks collide often
const OPS = 2000;

type Op =
  | { t: 'write'; off: number; len: number; val: number }
  | { t: 'snap' }
  | { t: 'restore'; pick: number }
  | { t: 'persist' }
  | { t: 'check' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 12, arbitrary: fc.record({ t: fc.constant('write' as const), off: fc.nat(SIZE - 1), len: fc.integer({ min: 1, max: 200_000 }), val: fc.nat(255) }) },
  { weight: 3, arbitrary: fc.constant({ t: 'snap' as const }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('restore' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ t: 'persist' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'check' as const }) },
);

async function run(ops: Op[], faultAround: number, file: string, mode: 'live' | 'pause' = 'live', faults: 'thread' | 'signal' = 'thread'): Promise<void> {
  const store = Store.open(file);
  const region = Region.alloc(SIZE, { store, name: 'model', faultAround, mode, ...(mode === 'live' ? { faults } : {}) });
  const bytes = new Uint8Array(region.buffer);
  const shadow = new Uint8Array(SIZE);
  const snaps: { id: number; image: Uint8Array; persisted: Promise<unknown> }[] = [];
  try {
    for (const op of ops) {
      switch (op.t) {
        case 'write': {
          const end = Math.min(SIZE, op.off + op.len);
          for (let i = op.off; i < end; i++) {
            const v = (op.val + i) & 0xff;
            bytes[i] = v;
            shadow[i] = v;
          }
          break;
        }
        case 'snap': {
          const s = region.snapshot();
          snaps.push({ id: s.id, image: shadow.slice(), persisted: s.persisted });
          break;
        }
        case 'restore': {
          if (!snaps.length) break;
          const s = snaps[op.pick % snaps.length]!;
          region.restore(s.id);
          shadow.set(s.image);
          expectBytesEqual(bytes, shadow, `after restore of ${s.id}`);
          break;
        }
        case 'persist':
          if (snaps.length) await snaps[snaps.length - 1]!.persisted;
          break;
        case 'check':
          expectBytesEqual(bytes, shadow);
          break;
      }
    }
    expectBytesEqual(bytes, shadow, 'at the end');
    await Promise.all(snaps.map((s) => s.persisted));
    // Every snapshot, now read back from the store, still matches its image.
    for (const s of snaps.slice(-10)) {
      region.restore(s.id);
      expectBytesEqual(bytes, s.image, `persisted snapshot ${s.id}`);
    }
  } finally {
    region.close();
    store.close();
  }
}

describe('model: region vs shadow copy', () => {
  it(`matches the shadow across ${OPS} random ops per seed (memory store)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: OPS, maxLength: OPS }), fc.constantFrom(1, 4, 16, 32), (ops, fa) => run(ops, fa, ':memory:')),
      { numRuns: 4, seed: 42, endOnFailure: true },
    );
  });

  it(`matches the shadow across ${OPS} random ops per seed (faults served by signal)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: OPS, maxLength: OPS }), fc.constantFrom(1, 16, 64), (ops, fa) => run(ops, fa, ':memory:', 'live', 'signal')),
      { numRuns: 3, seed: 1414, endOnFailure: true },
    );
  });

  it(`matches the shadow across ${OPS} random ops per seed (pause mode)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: OPS, maxLength: OPS }), (ops) => run(ops, 16, ':memory:', 'pause')),
      { numRuns: 2, seed: 99, endOnFailure: true },
    );
  });

  it(`matches the shadow across ${OPS} random ops per seed (file store)`, async () => {
    const { tmpDir } = await import('./helpers');
    const dir = tmpDir();
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: OPS, maxLength: OPS }), fc.constantFrom(1, 16, 64), (ops, fa) => run(ops, fa, `${dir}/model-${n++}.usnap`)),
      { numRuns: 2, seed: 7, endOnFailure: true },
    );
  });
});
