// A short model-based soak (npm run soak runs 10,000 ops per seed).
import { describe, expect, it } from 'vitest';
import { soak } from '../scripts/soak';

describe('soak', () => {
  it('2,000 random ops against a shadow model: no mismatch', async () => {
    const r = await soak(42, 2000);
    expect(r.mismatches).toEqual([]);
    expect(r.counts.restore ?? 0).toBeGreaterThan(50);
    expect(r.counts.reopen ?? 0).toBeGreaterThan(5);
  });
});
