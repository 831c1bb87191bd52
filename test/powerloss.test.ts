// Power loss: scripts/powerloss-child runs under the test/fixtures/iorecord.c LD_PRELOAD shim,
// which records the store's writes and fsyncs; crash states are built from the recording and
// opened (scripts/powerloss-lib.ts). `npm run test:powerloss` runs thousands of states.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from '../lib/index';
import { FILE, OP, Replay, buildShim, checkCrashStates, commitSyncs, isCommitFrame, recordRun, writeState, type IoEvent } from '../scripts/powerloss-lib';
import { rng } from '../scripts/workload';
import { tmpDir } from './helpers';

let work: string;
let shim: string;
beforeAll(() => {
  work = tmpDir('usnap-powerloss-');
  shim = buildShim(work);
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

async function record(seed: number, steps: number, durability: 'power' | 'process'): Promise<IoEvent[]> {
  const dir = path.join(work, `${durability}-${seed}`);
  fs.mkdirSync(dir);
  return recordRun(dir, shim, seed, steps, durability);
}

/** For each `persisted` marker: its index, the snapshot id, and which ids a read-only open lists from only the fsynced bytes. */
function fsyncedAtMarkers(events: IoEvent[]): { at: number; id: number; listed: number[] }[] {
  const replay = new Replay();
  const out: { at: number; id: number; listed: number[] }[] = [];
  events.forEach((e, i) => {
    replay.apply(e);
    if (e.op !== OP.mark || !e.data!.toString().startsWith('persisted')) return;
    const id = Number(e.data!.toString().split(' ')[1]);
    const db = path.join(work, 'fsynced', `m${i}`, 'store.db');
    const files = replay.crashFiles(rng(1), 'fsynced');
    let listed: number[] = [];
    if (files.has(FILE.db)) {
      writeState(files, db);
      try {
        const store = Store.open(db, { readonly: true });
        listed = store.list().map((s) => s.id);
        store.close();
      } catch {
        listed = [];
      }
    }
    fs.rmSync(path.dirname(db), { recursive: true, force: true });
    out.push({ at: i, id, listed });
  });
  return out;
}

describe('durability', () => {
  it("Store.open accepts durability 'power' and 'process' and rejects anything else", () => {
    for (const durability of ['power', 'process'] as const) {
      const store = Store.open(path.join(work, `opt-${durability}.usnap`), { durability });
      store.close();
    }
    Store.open(':memory:', { durability: 'process' }).close();
    expect(() => Store.open(path.join(work, 'opt-bad.usnap'), { durability: 'disk' as never })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT', message: "Expected 'power' or 'process' for durability but received \"disk\" (string)" }),
    );
  });

  it("'power' (default): the WAL is fsynced after the commit that completes a snapshot and before its persisted resolves", async () => {
    const events = await record(3, 12, 'power');
    const syncs = commitSyncs(events);
    const markers = fsyncedAtMarkers(events);
    expect(markers.length).toBe(12);
    for (const m of markers) {
      // A commit frame was written, then the WAL fsynced, before the marker...
      const sync = syncs.filter((f) => f < m.at).at(-1);
      expect(sync, `no synced commit before snapshot ${m.id} resolved`).toBeDefined();
      expect(events.slice(0, sync).some(isCommitFrame)).toBe(true);
      // ...and the fsynced bytes alone already hold the snapshot.
      expect(m.listed, `snapshot ${m.id} not durable when persisted resolved`).toContain(m.id);
    }
    // One synced commit per completing batch at most: batches in between are not synced.
    const commits = events.filter(isCommitFrame).length;
    expect(syncs.length).toBeLessThanOrEqual(12);
    expect(commits).toBeGreaterThan(syncs.length);
  }, 300_000);

  it("'process': no WAL fsync outside checkpoints, and persisted resolves before the snapshot is durable", async () => {
    const events = await record(3, 12, 'process');
    expect(commitSyncs(events)).toEqual([]);
    const markers = fsyncedAtMarkers(events);
    expect(markers.length).toBe(12);
    // At least one snapshot had resolved while only in the page cache (a checkpoint made later ones durable).
    expect(markers.filter((m) => !m.listed.includes(m.id)).length).toBeGreaterThan(0);
    // The snapshot's data did reach the WAL file before the marker (it survives a process crash).
    expect(events.filter((e) => e.op === OP.write && e.file === FILE.wal).length).toBeGreaterThan(0);
  }, 300_000);

  it('power loss: 240 crash states from two recorded runs all open, keep every persisted snapshot, and restore byte-exact', async () => {
    let states = 0, restores = 0;
    const failures: string[] = [];
    for (const seed of [1, 2]) {
      const events = await record(seed, 16, 'power');
      const r = await checkCrashStates(events, { states: 120, seed, dir: path.join(work, `states-${seed}`) });
      states += r.states;
      restores += r.restores;
      failures.push(...r.failures);
      // Every persisted marker got its fsynced-only state; fsync points were crash points.
      expect(r.byVariant.fsynced).toBe(16);
      expect(r.fsyncPoints).toBeGreaterThan(10);
    }
    expect(failures.slice(0, 5)).toEqual([]);
    expect(states).toBe(240);
    expect(restores).toBeGreaterThan(240);
  }, 600_000);
});
