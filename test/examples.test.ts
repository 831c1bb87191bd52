// Runs each compiled example as a user would (node dist/examples/x.js) and checks its output.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { root } from './helpers';

const EXAMPLES = ['checkpoint', 'undo', 'fuzz-reset', 'wasm'];

function run(name: string): { out: string; lines: string[] } {
  const r = spawnSync(process.execPath, [path.join(root, 'dist', 'examples', `${name}.js`)], { cwd: root, encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`examples/${name} exited with ${r.status ?? r.signal}\n${r.stdout}\n${r.stderr}`);
  expect(r.stderr).toBe('');
  return { out: r.stdout, lines: r.stdout.trimEnd().split('\n') };
}

beforeAll(() => {
  // `npm test` compiles first; when vitest runs alone, compile if an example is newer than its build.
  const stale = EXAMPLES.some((n) => {
    const js = path.join(root, 'dist', 'examples', `${n}.js`);
    return !fs.existsSync(js) || fs.statSync(js).mtimeMs < fs.statSync(path.join(root, 'examples', `${n}.ts`)).mtimeMs;
  });
  if (stale) {
    const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: root, encoding: 'utf8' });
    if (tsc.status !== 0) throw new Error(`tsc failed:\n${tsc.stdout}${tsc.stderr}`);
  }
});

describe('examples', () => {
  it('checkpoint: restores the persisted snapshot in a second process, byte-exact', () => {
    const { out, lines } = run('checkpoint');
    expect(lines[0]).toMatch(/^\[pid (\d+)\] wrote 32 MiB, snapshot 1 persisted: 512 chunks, [\d.]+ MiB on disk$/);
    const pids = [...out.matchAll(/^\[pid (\d+)\]/gm)].map((m) => m[1]);
    expect(new Set(pids).size).toBe(2);  // the restore ran in another process
    const digests = [...out.matchAll(/sha256 of the region: (\w+)/g)].map((m) => m[1]);
    expect(digests).toHaveLength(2);
    expect(digests[1]).toBe(digests[0]);
    expect(out).toMatch(/restored snapshot 1 of .*state\.usnap: 32 MiB, 0 words wrong/);
    expect(lines.at(-1)).toMatch(/the new process restored the same bytes$/);
  });

  it('undo: every undo/redo jump gives the exact document', () => {
    const { lines } = run('undo');
    expect(lines[0]).toMatch(/^400 edits on a 0\.84 MiB document, a snapshot after each: [\d.]+ chunks/);
    expect(lines[1]).toMatch(/^the whole history \(401 snapshots\) takes [\d.]+ MiB in the store$/);
    // The edits are seeded, so the document lengths are exact.
    expect(lines.slice(2, 7)).toEqual([
      "restored step 400 ('edit 400'): 860255 bytes, matches",
      "restored step 399 ('edit 399'): 860244 bytes, matches",
      "restored step 200 ('edit 200'): 871542 bytes, matches",
      "restored step 0 ('opened'): 884107 bytes, matches",
      "restored step 400 ('edit 400'): 860255 bytes, matches",
    ]);
    expect(lines[7]).toMatch(/^300 undo\/redo jumps checked byte-exact; slowest restore [\d.]+ ms$/);
    expect(lines[8]).toBe('branched after step 100 (snapshot 402, parent 101); step 400 still restores: true; branch restores: true');
  });

  it('fuzz-reset: resets hundreds of times and ends equal to the base', () => {
    const { out } = run('fuzz-reset');
    const runs = Number(/^(\d+) runs of the target, each followed by a reset to snapshot 1$/m.exec(out)?.[1]);
    expect(runs).toBeGreaterThan(20);
    const m = /^resets\/s: (\d+) \([\d.]+ ms per run \+ reset, of which the reset [\d.]+ ms\), (\d+) of 16384 pages rewritten per reset$/m.exec(out);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(0);
    // The target writes its header page and at most 95 1 KiB spots, each inside one page: once
    // the cache is warm only those pages are copied back.
    expect(Number(m![2])).toBeGreaterThanOrEqual(1);
    expect(Number(m![2])).toBeLessThanOrEqual(96);
    expect(out).toContain('after the last reset the region equals the base, all 64 MiB\n');
    expect(out).toMatch(/^full-copy reset for comparison: \d+ resets\/s$/m);
  });

  it('wasm: after a rollback and in a new instance the program continues identically', () => {
    const { lines } = run('wasm');
    const after = ['step 100000: hash 8de2ef68', 'step 125000: hash 04e15e96', 'step 150000: hash 056048f9', 'step 175000: hash 128fcfd2'].map((l) => `  ${l}`);
    expect(lines.slice(0, 3)).toEqual(['step 25000: hash 1f22c475', 'step 50000: hash 221f296a', 'step 75000: hash c4ad35d0']);
    expect(lines[3]).toMatch(/^checkpoint 1 at step 75000: 11 chunks, memory 11 pages, pause [\d.]+ ms$/);
    expect(lines.slice(4, 8)).toEqual(after);
    expect(lines[8]).toBe('uninterrupted run: memory grew to 23 pages');
    expect(lines[9]).toBe('rolled back to 1: step 75000, memory stays 23 pages, the part grown since is zero');
    expect(lines.slice(10, 14)).toEqual(after);
    expect(lines[14]).toBe('after the rollback the output is identical');
    expect(lines[15]).toBe('new instance restored from 1: step 75000, memory 11 pages');
    expect(lines.slice(16, 20)).toEqual(after);
    expect(lines[20]).toBe("the new instance's output is identical");
    expect(lines).toHaveLength(21);
  });
});
