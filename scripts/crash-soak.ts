// Crash soak: SIGKILLs a child persisting a large changing region, again and again, and checks
// the store after each kill (see scripts/crash-lib.ts).
//   npm run soak:crash -- [kills=100] [sizeMiB=128] [store path]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { crashRound, type Reported } from './crash-lib';

async function main(): Promise<void> {
  const kills = Number(process.argv[2] ?? 100);
  const sizeMiB = Number(process.argv[3] ?? 128);
  const file = process.argv[4] ?? path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-soak-')), 'soak.usnap');
  let x = (Date.now() >>> 0) || 1;
  const seed = x;
  const random = () => ((x ^= x << 13), (x >>>= 0), (x ^= x >>> 17), (x ^= x << 5), (x >>>= 0), x / 2 ** 32);
  console.log(`crash soak: ${kills} kills, ${sizeMiB} MiB region, store ${file}, rng seed ${seed}`);
  let last: Reported | undefined;
  const t0 = Date.now();
  for (let i = 0; i < kills; i++) {
    const r = await crashRound({ file, sizeMiB, perStep: 256, minDelayMs: 150, maxDelayMs: 4000, extraChecks: 2, random }, i, last);
    last = r.lastReported;
    console.log(`kill ${i + 1}/${kills} at ${r.delayMs} ms: ${r.reportedThisRound} persisted this run, ${r.snapshots} in store, checked ${r.checked.join(',') || '-'} ok`);
  }
  console.log(`crash soak passed: ${kills} kills in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

main().catch((err) => {
  console.error(String(err));
  process.exit(1);
});
