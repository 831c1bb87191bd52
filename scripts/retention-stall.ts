// An autosave loop with retention, as a newcomer writes it: a region rewritten in part, a
// snapshot every `interval` ms into a file store opened with { keep }, and (variant "gc") an
// explicit `await store.gc({ keep })` after each persisted snapshot. Measures the main thread's
// event-loop stalls (the longest gap between 1 ms timer ticks while it waits for the next save,
// which is when retention works) with and without retention:
// retention runs on the store's writer thread, so it must add no stall (target: < 20 ms).
//   node dist/scripts/retention-stall.js [--snapshots 120] [--mib 64] [--keep 20] [--interval 50]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Region, Store } from '../lib/index';

function arg(name: string, dflt: number): number {
  const k = process.argv.indexOf(name);
  return k >= 0 ? Number(process.argv[k + 1]) : dflt;
}

interface Run {
  variant: string;
  snapshots: number;
  left: number;
  maxStallMs: number;
  p99StallMs: number;
}

async function run(variant: 'none' | 'keep option' | 'gc each time', snapshots: number, mib: number, keep: number, interval: number): Promise<Run> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-retention-'));
  const file = path.join(dir, 'autosave.usnap');
  const store = Store.open(file, variant === 'keep option' ? { keep } : {});
  const region = Region.alloc(mib << 20, { store, name: 'heap' });
  const u = new Uint32Array(region.buffer);
  const gaps: number[] = [];
  let last = performance.now();
  // Only while the program is idle between saves, which is when retention runs: the
  // program's own write faults (it rewrites a quarter of the region) are not retention's.
  let measuring = false;
  const tick = setInterval(() => {
    const now = performance.now();
    if (measuring) gaps.push(now - last - 1);
    last = now;
  }, 1);
  let x = 1;
  for (let k = 0; k < snapshots; k++) {
    // The program's work between saves: a quarter of the region changes.
    for (let i = (k % 4) * (u.length / 4), e = i + u.length / 4; i < e; i += 1024) u[i] = x++;
    const snap = region.snapshot();
    await snap.persisted;
    last = performance.now();
    measuring = true;
    if (variant === 'gc each time') await store.gc({ keep });
    await new Promise((r) => setTimeout(r, interval));
    measuring = false;
  }
  clearInterval(tick);
  region.close();
  store.close();
  const ro = Store.open(file, { readonly: true });
  const left = ro.list().length;
  ro.close();
  fs.rmSync(dir, { recursive: true, force: true });
  gaps.sort((a, b) => a - b);
  return {
    variant,
    snapshots,
    left,
    maxStallMs: Math.round(gaps[gaps.length - 1]! * 10) / 10,
    p99StallMs: Math.round(gaps[Math.floor(gaps.length * 0.99)]! * 10) / 10,
  };
}

async function main(): Promise<void> {
  const snapshots = arg('--snapshots', 120), mib = arg('--mib', 64), keep = arg('--keep', 20), interval = arg('--interval', 50);
  console.log(`autosave: ${mib} MiB region, a snapshot every ${interval} ms, ${snapshots} snapshots, keep ${keep}`);
  const rows: Run[] = [];
  for (const v of ['none', 'keep option', 'gc each time'] as const) rows.push(await run(v, snapshots, mib, keep, interval));
  console.log('retention        snapshots  left  max stall ms  p99 stall ms');
  for (const r of rows) {
    console.log(`${r.variant.padEnd(15)}  ${String(r.snapshots).padStart(9)}  ${String(r.left).padStart(4)}  ${String(r.maxStallMs).padStart(12)}  ${String(r.p99StallMs).padStart(12)}`);
  }
  const base = rows[0]!.maxStallMs;
  const worst = Math.max(...rows.slice(1).map((r) => r.maxStallMs));
  const kept = rows.slice(1).every((r) => r.left === keep);
  if (kept && worst <= 20) {
    console.log(`PASS: the event loop never stalled over 20 ms with retention (worst ${worst} ms; ${base} ms without)`);
  } else if (kept && base > 20) {
    console.log(`INCONCLUSIVE: the loop stalls ${base} ms without any retention (machine load: ${os.loadavg()[0]!.toFixed(1)}); rerun on an idle machine`);
    process.exitCode = 2;
  } else {
    console.log(`FAIL: worst stall ${worst} ms with retention (${base} ms without)${kept ? '' : ', or retention kept the wrong count'}`);
    process.exitCode = 1;
  }
}

void main();
