// Hostile stores: a small sample of scripts/fuzz-store.ts (npm run fuzz:store runs >= 1,000).
// Every case must end in a clear SnapshotError, a verify failure or a byte-exact restore, with
// no crash; the documented abort (a lazily restored page that fails its checksum is touched)
// is classified separately. One case of every kind of damage per run.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MUTATIONS, buildBase, runCase } from '../scripts/fuzz-store';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-hostile-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('hostile stores', () => {
  const base = buildBase(dir);
  const kinds = MUTATIONS;
  it(`${kinds.length} mutated stores, one of each kind: no crash, no wrong bytes`, () => {
    const outcomes = [];
    for (let i = 0; i < kinds.length; i++) outcomes.push(runCase(base, dir, kinds[i]!, 1000 + i));
    const failures = outcomes.filter((o) => o.verdict === 'crash' || o.verdict === 'wrong');
    expect(failures.map((o) => `${o.mutation}#${o.seed}: ${o.verdict}: ${o.detail}`)).toEqual([]);
    // Something was actually detected: most mutations must produce errors, not silence.
    expect(outcomes.filter((o) => Object.values(o.results).some((v) => v.startsWith('error:') || v === 'problems')).length).toBeGreaterThan(kinds.length / 2);
  });
});
