// The usnap CLI, run as a subprocess (node dist/lib/cli/main.js) against a real store.
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Region, Store } from '../lib/index';
import { fillPattern, root, tmpDir } from './helpers';

const CLI = path.join(root, 'dist', 'lib', 'cli', 'main.js');
const CHUNK = 64 * 1024;
const SIZE = 16 << 20;  // 256 chunks, mostly zero

function usnap(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: root, encoding: 'utf8', timeout: 300_000, env: { ...process.env, NO_COLOR: '1' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, signal: r.signal };
}

function usnapJson(...args: string[]) {
  const r = usnap(...args, '--json');
  let json: any;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    throw new Error(`usnap ${args.join(' ')} --json printed no JSON (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  }
  return { ...r, json };
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** One clean error line with a code, an optional hint, and no stack trace. */
function expectCleanError(stderr: string, code: string): void {
  const lines = stderr.trim().split('\n');
  expect(lines[0]).toMatch(new RegExp(`^usnap: .+ \\[${code}\\]$`));
  expect(lines.length).toBeLessThanOrEqual(2);
  if (lines[1]) expect(lines[1]).toMatch(/^hint: /);
  expect(stderr).not.toMatch(/^\s+at /m);
}

let dir: string;
let file: string;
const hashes = new Map<number, string>();  // snapshot id -> sha256 of the region at it
const ids = { warm: 0, step: 0, zeroed: 0, other: 0 };

beforeAll(async () => {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: compile first (npx tsc -p tsconfig.json)`);
  dir = tmpDir('usnap-cli-');
  file = path.join(dir, 'state.usnap');
  const store = Store.open(file);
  const region = Region.alloc(SIZE, { store, name: 'heap' });
  const b = new Uint8Array(region.buffer);
  fillPattern(b, 1, 0, 4 * CHUNK);           // chunks 0-3
  fillPattern(b, 2, 100 * CHUNK, CHUNK);     // chunk 100
  b.fill(7, 200 * CHUNK + 10, 200 * CHUNK + 5000);  // chunk 200, compressible
  let s = region.snapshot({ label: 'warm' });
  await s.persisted;
  ids.warm = s.id;
  hashes.set(s.id, sha256(b));

  b[2 * CHUNK + 5] ^= 0xff;                  // chunk 2 modified
  fillPattern(b, 3, 50 * CHUNK, CHUNK);      // chunk 50 added
  const keep = b[3 * CHUNK]!;
  b[3 * CHUNK] = keep ^ 1;                   // chunk 3 written, then put back: same content
  b[3 * CHUNK] = keep;
  s = region.snapshot({ label: 'step' });
  await s.persisted;
  ids.step = s.id;
  hashes.set(s.id, sha256(b));

  b.fill(0, 100 * CHUNK, 101 * CHUNK);       // chunk 100 zeroed
  s = region.snapshot();
  await s.persisted;
  ids.zeroed = s.id;
  hashes.set(s.id, sha256(b));

  const other = Region.alloc(1 << 20, { store, name: 'other' });
  new Uint8Array(other.buffer).fill(5, 0, 4096);
  s = other.snapshot({ label: 'o' });
  await s.persisted;
  ids.other = s.id;
  store.close();
});

/** A copy of the store to damage or gc. */
function copyStore(name: string): string {
  const to = path.join(dir, name);
  fs.copyFileSync(file, to);
  return to;
}

describe('usnap', () => {
  it('probe --json', () => {
    const r = usnapJson('probe');
    expect(r.status).toBe(0);
    expect(r.json).toMatchObject({ supported: true, privileged: expect.any(Boolean), kernel: expect.any(String) });
    expect(r.json.features).toMatchObject({ writeProtect: true, wpUnpopulated: true, raw: expect.any(Number) });
  });

  it('list --json, and a human table without colour codes when piped', () => {
    const r = usnapJson('list', file);
    expect(r.status).toBe(0);
    expect(r.json.store).toBe(file);
    expect(r.json.regions).toEqual([
      { name: 'heap', size: SIZE, snapshots: 3 },
      { name: 'other', size: 1 << 20, snapshots: 1 },
    ]);
    expect(r.json.snapshots.map((s: any) => s.id)).toEqual([ids.warm, ids.step, ids.zeroed, ids.other]);
    const [warm, step] = r.json.snapshots;
    expect(warm).toMatchObject({ region: 'heap', parent: null, label: 'warm', full: true, regionSize: SIZE, chunks: 6, pages: 96 });
    expect(step).toMatchObject({ parent: ids.warm, label: 'step', full: false, chunks: 3 });
    expect(Date.parse(warm.createdAt)).not.toBeNaN();
    for (const k of ['rawBytes', 'storedBytes', 'uniqueBytes', 'compressionRatio', 'dedupRatio']) expect(typeof warm[k]).toBe('number');
    expect(r.json.totals).toMatchObject({ snapshots: 4, regions: 2, blobs: expect.any(Number), storedBytes: expect.any(Number), fileBytes: expect.any(Number) });

    const h = usnap('list', file, '--region', 'other');
    expect(h.status).toBe(0);
    expect(h.stdout).toMatch(/^ID\s+REGION\s+PARENT\s+LABEL/);
    expect(h.stdout).toContain('other');
    expect(h.stdout).not.toMatch(/\bheap\b/);
    expect(h.stdout).not.toContain('\x1b[');
    expect(h.stderr).toBe('');
  });

  it('info --json: sizes, ratios, chain', () => {
    const r = usnapJson('info', file, String(ids.step));
    expect(r.status).toBe(0);
    const j = r.json;
    expect(j).toMatchObject({ id: ids.step, region: 'heap', parent: ids.warm, label: 'step', chunks: 3, pages: 48, rawBytes: 3 * CHUNK });
    expect(j.chain).toEqual([ids.step, ids.warm]);
    expect(j.children).toEqual([ids.zeroed]);
    expect(j.compressionRatio).toBeCloseTo(j.rawBytes / j.storedBytes, 3);
    expect(j.dedupRatio).toBeCloseTo(j.storedBytes / j.uniqueBytes, 3);
    expect(j.image).toEqual({ chunks: 256, dataChunks: 7, zeroChunks: 249, dataBytes: 7 * CHUNK });
    const h = usnap('info', file, String(ids.step));
    expect(h.stdout).toMatch(/compression:\s+\d+\.\d\dx/);
    expect(h.stdout).toMatch(/dedup:\s+\d+\.\d\dx/);
  });

  it('diff --json lists only chunks whose contents differ', () => {
    let r = usnapJson('diff', file, String(ids.warm), String(ids.step));
    expect(r.status).toBe(0);
    // chunk 3 was written but holds what it held: not a change.
    expect(r.json.changed).toEqual([{ chunk: 2, kind: 'modified' }, { chunk: 50, kind: 'added' }]);
    expect(r.json.ranges).toEqual([
      { start: 2 * CHUNK, end: 3 * CHUNK, firstChunk: 2, lastChunk: 2, chunks: 1 },
      { start: 50 * CHUNK, end: 51 * CHUNK, firstChunk: 50, lastChunk: 50, chunks: 1 },
    ]);
    expect(r.json).toMatchObject({ a: ids.warm, b: ids.step, regionSize: SIZE, chunkSize: CHUNK, chunks: 256, changedChunks: 2, changedBytes: 2 * CHUNK });

    r = usnapJson('diff', file, String(ids.warm), String(ids.zeroed));
    expect(r.json.changed.map((x: any) => x.chunk)).toEqual([2, 50, 100]);
    expect(r.json.counts).toEqual({ added: 1, removed: 1, modified: 1 });
    r = usnapJson('diff', file, String(ids.step), String(ids.step));
    expect(r.json.changed).toEqual([]);

    const h = usnap('diff', file, String(ids.warm), String(ids.zeroed));
    expect(h.status).toBe(0);
    const mapRows = h.stdout.split('\n').filter((l) => /^0x[0-9a-f]+ [\u00b7\u2591-\u2593\u2588]+$/.test(l));
    expect(mapRows).toHaveLength(4);  // 256 cells of one chunk, 64 per row
    expect(mapRows[0]!.split(' ')[1]![2]).toBe('\u2588');
    expect(mapRows[0]!.split(' ')[1]![1]).toBe('\u00b7');
    expect(h.stdout).toMatch(/0x020000\s+0x030000\s+2\s+64\.0 KiB/);
  });

  it('verify --json passes on a sound store, for the store and for one snapshot', () => {
    let r = usnapJson('verify', file);
    expect(r.status).toBe(0);
    expect(r.json).toMatchObject({ ok: true, snapshot: null, snapshots: 4, problems: [] });
    expect(r.json.chunks).toBeGreaterThan(0);
    r = usnapJson('verify', file, String(ids.zeroed));
    expect(r.status).toBe(0);
    expect(r.json).toMatchObject({ ok: true, snapshot: ids.zeroed, snapshots: 3 });
  });

  it('restore -o writes a sparse image hashing to the region at that snapshot; --verify checks it', () => {
    for (const id of [ids.warm, ids.step, ids.zeroed]) {
      const out = path.join(dir, `img-${id}.bin`);
      const r = usnapJson('restore', file, String(id), '-o', out, '--verify');
      expect(r.status, r.stderr).toBe(0);
      const img = fs.readFileSync(out);
      expect(img.length).toBe(SIZE);
      expect(sha256(img)).toBe(hashes.get(id));
      expect(r.json).toMatchObject({ snapshot: id, region: 'heap', output: out, regionSize: SIZE, chunks: 256, sha256: hashes.get(id), verified: true });
      const st = fs.statSync(out);
      expect(st.blocks * 512).toBeLessThan(SIZE / 8);  // holes, not written zeros
      expect(r.json.allocatedBytes).toBe(st.blocks * 512);
      expect(r.json.dataChunks + r.json.zeroChunks).toBe(256);
    }
    // An existing output is kept unless --force.
    const out = path.join(dir, `img-${ids.warm}.bin`);
    const again = usnap('restore', file, String(ids.warm), '-o', out);
    expect(again.status).toBe(1);
    expectCleanError(again.stderr, 'EXISTS');
    expect(usnap('restore', file, String(ids.step), '-o', out, '--force').status).toBe(0);
    expect(sha256(fs.readFileSync(out))).toBe(hashes.get(ids.step));
  });

  it('gc --keep 1 --json deletes older snapshots and the rest stays restorable', () => {
    const copy = copyStore('gc.usnap');
    const r = usnapJson('gc', copy, '--keep', '1');
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.deletedSnapshots.sort()).toEqual([ids.warm, ids.step]);
    expect(r.json).toMatchObject({ keep: 1, snapshotsLeft: 2, freedBlobs: expect.any(Number), freedBytes: expect.any(Number), fileBytesBefore: expect.any(Number), fileBytesAfter: expect.any(Number) });
    const out = path.join(dir, 'after-gc.bin');
    expect(usnap('restore', copy, String(ids.zeroed), '-o', out).status).toBe(0);
    expect(sha256(fs.readFileSync(out))).toBe(hashes.get(ids.zeroed));
    const plain = usnapJson('gc', copy);
    expect(plain.status).toBe(0);
    expect(plain.json.deletedSnapshots).toEqual([]);
  });

  it('verify exits 1 on a corrupted blob, and restore refuses it with STORE_CORRUPT', () => {
    const copy = copyStore('corrupt.usnap');
    const db = new Database(copy);
    // The blob of chunk 2 at the first snapshot.
    const row = db.prepare('SELECT b.id, b.data FROM chunks c JOIN blobs b ON b.id = c.blob_id WHERE c.snapshot_id = ? AND c.chunk = 2').get(ids.warm) as { id: number; data: Buffer };
    row.data[Math.floor(row.data.length / 2)]! ^= 0x40;
    db.prepare('UPDATE blobs SET data = ? WHERE id = ?').run(row.data, row.id);
    db.close();

    const r = usnapJson('verify', copy);
    expect(r.status).toBe(1);
    expect(r.json.ok).toBe(false);
    expect(r.json.problems.length).toBeGreaterThan(0);
    expect(r.json.problems[0]).toMatchObject({ code: 'STORE_CORRUPT', snapshot: ids.warm, chunk: 2, blob: row.id });
    const h = usnap('verify', copy);
    expect(h.status).toBe(1);
    expect(h.stdout).toContain('FAILED');
    expectCleanError(h.stderr, 'STORE_CORRUPT');

    const out = path.join(dir, 'corrupt.bin');
    const rr = usnap('restore', copy, String(ids.warm), '-o', out);
    expect(rr.status).toBe(1);
    expectCleanError(rr.stderr, 'STORE_CORRUPT');
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    // Snapshot 2 stores its own chunk 2: it is still restorable.
    expect(usnap('restore', copy, String(ids.step), '-o', out).status).toBe(0);
  });

  it('a missing store or unknown snapshot exits 1 with one message and no stack trace', () => {
    const missing = path.join(dir, 'nope.usnap');
    for (const args of [['list', missing], ['info', missing, '1'], ['verify', missing], ['gc', missing], ['restore', missing, '1', '-o', path.join(dir, 'x.bin')]]) {
      const r = usnap(...args);
      expect(r.status, args.join(' ')).toBe(1);
      expectCleanError(r.stderr, 'NOT_FOUND');
      expect(r.stderr).toContain(missing);
    }
    expect(fs.existsSync(missing)).toBe(false);  // gc must not create a store
    for (const args of [['info', file, '99'], ['diff', file, '1', '99'], ['verify', file, '99'], ['restore', file, '99', '-o', path.join(dir, 'x.bin')]]) {
      const r = usnap(...args);
      expect(r.status, args.join(' ')).toBe(1);
      expectCleanError(r.stderr, 'NOT_FOUND');
      expect(r.stderr).toContain('99');
    }
    const j = usnapJson('info', file, '99');
    expect(j.json.error).toMatchObject({ code: 'NOT_FOUND', message: expect.stringContaining('99') });
    const notStore = usnap('list', path.join(root, 'package.json'));
    expect(notStore.status).toBe(1);
    expectCleanError(notStore.stderr, 'NOT_A_STORE');
    const dbg = usnap('info', file, '99', '--debug');
    expect(dbg.stderr).toMatch(/^\s+at /m);  // --debug shows the stack
  });

  it('usage errors exit 2', () => {
    for (const args of [
      ['list', file, '--frobnicate'],
      ['list'],
      ['list', file, 'extra'],
      ['info', file, 'abc'],
      ['info', file, '0'],
      ['restore', file, '1'],
      ['gc', file, '--keep', '-1'],
      ['bench', '--quick', '--full'],
      ['bench', '--size', '12Q'],
      ['nosuchcommand'],
      [],
    ]) {
      const r = usnap(...args);
      expect(r.status, args.join(' ')).toBe(2);
      if (args.length) expectCleanError(r.stderr, 'USAGE');
    }
    const typo = usnap('list', file, '--jsn');
    expect(typo.stderr).toContain('Did you mean --json?');
  });

  it('--help on every command shows examples; --version prints the package version', () => {
    for (const cmd of ['probe', 'list', 'info', 'diff', 'verify', 'restore', 'gc', 'bench']) {
      const r = usnap(cmd, '--help');
      expect(r.status, cmd).toBe(0);
      expect(r.stdout).toContain(`Usage: usnap ${cmd}`);
      expect(r.stdout).toContain('Examples:');
      expect(r.stdout).toContain('--json');
    }
    const v = usnap('--version');
    expect(v.status).toBe(0);
    expect(v.stdout.trim()).toBe(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version);
  });

  it('bench without lib/bench/run fails with a clear message', () => {
    if (fs.existsSync(path.join(root, 'dist', 'lib', 'bench', 'run.js'))) return;  // the benchmark is built: covered by its own tests
    const r = usnap('bench', '--quick');
    expect(r.status).toBe(1);
    expectCleanError(r.stderr, 'UNAVAILABLE');
  });
});
