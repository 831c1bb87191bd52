import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Store } from '../lib/index';
import { crashRound, type Reported } from '../scripts/crash-lib';
import { prng, tmpDir } from './helpers';

describe('crash safety', () => {
  it('survives SIGKILL at random moments of a large persist: reopens, verifies, last persisted is byte-exact', async () => {
    const file = `${tmpDir()}/crash.usnap`;
    const next = prng(Number(process.env.CRASH_SEED ?? 20240611));
    const random = () => next() / 2 ** 32;
    let last: Reported | undefined;
    const delays: number[] = [];
    let reports = 0;
    for (let i = 0; i < 10; i++) {
      const r = await crashRound(
        // Every third round counts its delay from the first persisted report, so some kills land
        // after a persist however slow the machine is (a sanitizer build is 2-3x slower).
        { file, sizeMiB: 128, perStep: 256, minDelayMs: 150, maxDelayMs: 2500, extraChecks: i % 3 === 2 ? 1 : 0, afterFirstPersisted: i % 3 === 1, random },
        i,
        last,
      );
      delays.push(r.delayMs);
      reports += r.reportedThisRound;
      if (r.lastReported) expect(r.checked[0]).toBe(r.lastReported.id);
      last = r.lastReported;
    }
    // The kills spread over the child's life: before the first commit, and mid-stream.
    expect(Math.min(...delays)).toBeLessThan(900);
    expect(Math.max(...delays)).toBeGreaterThan(1500);
    expect(reports).toBeGreaterThan(0);
    expect(last).toBeDefined();
    // After all the kills the store is whole, and no WAL is left behind once closed.
    const store = Store.open(file);
    expect(store.verify().ok).toBe(true);
    expect(store.list().every((s) => s.complete)).toBe(true);
    store.close();
    expect(fs.existsSync(`${file}-wal`)).toBe(false);
  }, 600_000);
});
