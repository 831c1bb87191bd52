// Fuzzing-style reset: run a target over a region, then roll the region back to a base
// snapshot, thousands of times. In pause mode the target's writes never trap, and a reset
// copies back only the pages it wrote.
import { Region } from '../lib/index';

const MiB = 1 << 20;
const SIZE = 64 * MiB;

// The "target": parses a random input and scribbles over its state, like a real program
// would (a few % of the region), and sometimes "crashes" half-way. It expects a clean state.
function target(words: Uint32Array, input: number): void {
  if (words[0] !== 0x5eed) throw new Error(`state not reset: header is ${words[0]!.toString(16)}`);
  words[0] = 0xdead;
  let x = input | 1;
  const writes = 32 + (input % 64);  // 32-95 scattered writes of 1 KiB: up to ~3% of the chunks
  for (let i = 0; i < writes; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    const at = ((x >>> 0) % (SIZE / 4 - 256)) & ~255;
    words.fill(x, at, at + 256);
    if ((x & 1023) === 0) return;  // a crash: the state is left half-written
  }
}

async function main(): Promise<void> {
  const region = Region.alloc(SIZE, { mode: 'pause' });
  const words = new Uint32Array(region.buffer);
  for (let i = 1; i < words.length; i++) words[i] = Math.imul(i, 0x9e3779b1) >>> 0;  // warm state
  words[0] = 0x5eed;
  const base = region.snapshot({ label: 'base' });
  await base.persisted;
  const baseCopy = new Uint32Array(words);  // only to check the result below

  // Resets to the head are served from a cache of its chunks, filled as the runs touch them:
  // pages rewritten per reset are counted over the last whole 100 runs, when it is warm.
  const t0 = performance.now();
  let runs = 0;
  let resetMs = 0;
  let windowStart = 0;
  let pagesPerReset = 0;
  while (performance.now() - t0 < 1500 || runs < 300) {
    target(words, runs * 2654435761);
    const t = performance.now();
    region.restore(base);
    resetMs += performance.now() - t;
    runs++;
    if (runs % 100 === 0) {
      const pages = region.stats().pagesRestored;
      pagesPerReset = (pages - windowStart) / 100;
      windowStart = pages;
    }
  }
  const secs = (performance.now() - t0) / 1000;
  console.log(`${runs} runs of the target, each followed by a reset to snapshot ${base.id}`);
  console.log(`resets/s: ${Math.round(runs / secs)} (${((secs * 1000) / runs).toFixed(3)} ms per run + reset, of which the reset ${(resetMs / runs).toFixed(3)} ms), ` +
    `${pagesPerReset.toFixed(0)} of ${SIZE / 4096} pages rewritten per reset`);

  let diff = -1;
  for (let i = 0; i < words.length && diff < 0; i++) if (words[i] !== baseCopy[i]) diff = i * 4;
  console.log(diff < 0 ? `after the last reset the region equals the base, all ${SIZE / MiB} MiB` : `region DIFFERS from the base at byte ${diff}`);

  // For comparison: resetting by copying the whole 64 MiB back.
  const t1 = performance.now();
  for (let i = 0; i < 20; i++) {
    target(words, i);
    words.set(baseCopy);
  }
  console.log(`full-copy reset for comparison: ${Math.round(20 / ((performance.now() - t1) / 1000))} resets/s`);
  region.close();
  if (diff >= 0) process.exit(1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
