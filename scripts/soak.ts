// Model-based soak: random writes, snapshots, deletes, gc, in-place restores, restores into new
// regions and store reopens against a shadow copy of memory and of every live snapshot.
//   node dist/scripts/soak.js [ops=10000] [seeds=1,2,3]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Region, SnapshotError, Store } from '../lib/index';
import { forEachChunkAt } from '../store/image';
import { rng } from './workload';

export interface SoakResult {
  seed: number;
  ops: number;
  mismatches: string[];
  counts: Record<string, number>;
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return 0;
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0
    ? -1
    : a.findIndex((v, i) => v !== b[i]);
}

function image(store: Store, id: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  forEachChunkAt(store, id, (c, d) => d && out.set(d, c * 65536));
  return out;
}

// The op running now, for the watchdog of the command-line run.
let lastOp = 'start';
let lastOpAt = Date.now();

export async function soak(seed: number, ops: number, size = 1 << 20): Promise<SoakResult> {
  const rand = rng(seed);
  const int = (n: number) => Math.floor(rand() * n);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-soak-'));
  const file = path.join(dir, 'soak.usnap');
  const mismatches: string[] = [];
  const counts: Record<string, number> = {};
  let store = Store.open(file);
  let region = Region.alloc(size, { store, name: 'soak' });
  let bytes = new Uint8Array(region.buffer);
  let shadow = new Uint8Array(size);
  const snaps = new Map<number, { image: Uint8Array; persisted: Promise<unknown> }>();
  const check = (what: string) => {
    const d = firstDiff(bytes, shadow);
    if (d !== -1) mismatches.push(`op ${what}: memory differs from the model at byte ${d}`);
  };
  const pickSnap = (): number | undefined => {
    const ids = [...snaps.keys()];
    return ids.length ? ids[int(ids.length)] : undefined;
  };
  try {
    for (let op = 0; op < ops; op++) {
      const r = rand();
      const kind = r < 0.5 ? 'write' : r < 0.7 ? 'snapshot' : r < 0.77 ? 'delete' : r < 0.8 ? 'gc' : r < 0.92 ? 'restore' : r < 0.97 ? 'restore-new' : r < 0.99 ? 'reopen' : 'verify';
      counts[kind] = (counts[kind] ?? 0) + 1;
      const at = `${op} (${kind}, seed ${seed})`;
      lastOp = at;
      lastOpAt = Date.now();
      switch (kind) {
        case 'write': {
          const off = int(size), len = Math.min(size - off, 1 + int(r < 0.1 ? 200_000 : 5000));
          const v = int(256);
          if (rand() < 0.5) {
            bytes.fill(v, off, off + len);
            shadow.fill(v, off, off + len);
          } else {
            for (let i = off; i < off + len; i++) bytes[i] = shadow[i] = (v + i * 31) & 255;
          }
          break;
        }
        case 'snapshot': {
          const s = region.snapshot();
          snaps.set(s.id, { image: shadow.slice(), persisted: s.persisted });
          break;
        }
        case 'delete': {
          const id = pickSnap();
          if (id === undefined || id === region.head) break;
          await snaps.get(id)!.persisted;
          try {
            await store.delete(id);
            snaps.delete(id);
          } catch (e) {
            if (!(e instanceof SnapshotError) || !['NOT_PERSISTED', 'SNAPSHOT_IN_USE'].includes(e.code)) throw e;
          }
          break;
        }
        case 'gc': {
          await Promise.all([...snaps.values()].map((s) => s.persisted));
          const res = await store.gc(rand() < 0.5 ? { keep: 3 + int(5) } : {});
          for (const id of res.deletedSnapshots) snaps.delete(id);
          break;
        }
        case 'restore': {
          const id = pickSnap();
          if (id === undefined) break;
          region.restore(id);
          shadow = snaps.get(id)!.image.slice();
          check(at);
          break;
        }
        case 'restore-new':
        case 'reopen': {
          const id = pickSnap();
          if (id === undefined) break;
          await Promise.all([...snaps.values()].map((s) => s.persisted));
          region.close();
          if (kind === 'reopen') {
            store.close();
            store = Store.open(file);
            for (const [sid, s] of snaps) {
              const d = firstDiff(image(store, sid, size), s.image);
              if (d !== -1) mismatches.push(`op ${at}: stored snapshot ${sid} differs from the model at byte ${d}`);
            }
          }
          region = Region.restore(store, { name: 'soak', snapshot: id });
          if (rand() < 0.5) await region.ready;  // otherwise pages fault in while we go on
          bytes = new Uint8Array(region.buffer);
          shadow = snaps.get(id)!.image.slice();
          check(at);
          break;
        }
        case 'verify': {
          await Promise.all([...snaps.values()].map((s) => s.persisted));
          const v = store.verify();
          if (!v.ok) mismatches.push(`op ${at}: verify: ${v.problems.map((p) => p.message).join('; ')}`);
          break;
        }
      }
      if (mismatches.length > 10) break;
    }
    check('end');
    await Promise.all([...snaps.values()].map((s) => s.persisted));
    for (const [sid, s] of snaps) {
      const d = firstDiff(image(store, sid, size), s.image);
      if (d !== -1) mismatches.push(`end: stored snapshot ${sid} differs from the model at byte ${d}`);
    }
  } finally {
    region.close();
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return { seed, ops, mismatches, counts };
}

if (require.main === module) {
  // A hang must fail the run and say where, not wait forever: an op that takes minutes is one.
  const HANG_MS = 180_000;
  setInterval(() => {
    if (Date.now() - lastOpAt > HANG_MS) {
      console.error(`soak: op ${lastOp} has not finished after ${HANG_MS / 1000} s: a hang`);
      process.exit(3);
    }
  }, 10_000).unref();
  const ops = Number(process.argv[2] ?? 10_000);
  const seeds = (process.argv[3] ?? '1,2,3').split(',').map(Number);
  void (async () => {
    let bad = 0;
    for (const seed of seeds) {
      const t0 = Date.now();
      const r = await soak(seed, ops);
      bad += r.mismatches.length;
      console.log(`seed ${seed}: ${ops} ops in ${((Date.now() - t0) / 1000).toFixed(1)} s, ${r.mismatches.length} mismatches`, JSON.stringify(r.counts));
      for (const m of r.mismatches) console.log('  ' + m);
    }
    process.exitCode = bad ? 1 : 0;
  })();
}
