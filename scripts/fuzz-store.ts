// Hostile stores: mutates a real store and checks that every read path ends in a clear
// SnapshotError, a verify failure, or a byte-exact restore. Each case runs in a child process
// so a crash (or the documented abort when a lazily restored page fails its checksum and is
// touched) is observed and classified rather than taking the harness down.
//   node dist/scripts/fuzz-store.js [cases=1000] [seed=1]
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { rng } from './workload';

const root = (() => {
  let d = __dirname;
  while (!fs.existsSync(path.join(d, 'package.json'))) d = path.dirname(d);
  return d;
})();
const distLib = path.join(root, 'dist', 'lib', 'index.js');
const distImage = path.join(root, 'dist', 'store', 'image.js');

export const MUTATIONS = [
  'file-byte-flips', 'blob-byte-flip', 'blob-truncate', 'wrong-chunk-count', 'chunk-beyond-region', 'chunk-negative',
  'oversized-raw-len', 'swap-blob-data', 'schema-version', 'schema-version-garbage', 'null-blob-data', 'garbage-codec',
  'missing-blob', 'parent-loop', 'region-size-garbage', 'text-in-integer', 'drop-table', 'truncate-file',
  'swap-blob-refs', 'move-chunk', 'repoint-parent',
] as const;
export type Mutation = (typeof MUTATIONS)[number];

export interface Outcome {
  mutation: Mutation;
  seed: number;
  /** ok: every result was correct or a clear error; wrong: bytes served differ; crash: unexpected death. */
  verdict: 'ok' | 'wrong' | 'crash' | 'documented-abort';
  detail: string;
  results: Record<string, string>;
}

/** A real store: region "f" (1 MiB), a full snapshot and two incremental ones; expected images. */
export function buildBase(dir: string): { file: string; snapshots: number[] } {
  const file = path.join(dir, 'base.usnap');
  const script = `
    const { Region, Store } = require(${JSON.stringify(distLib)});
    const fs = require('fs');
    (async () => {
      const store = Store.open(${JSON.stringify(file)});
      const r = Region.alloc(1 << 20, { store, name: 'f' });
      const b = new Uint8Array(r.buffer);
      let x = 12345;
      const rnd = () => ((x = (x * 1103515245 + 12345) >>> 0) >>> 16) & 255;
      const ids = [];
      for (const [from, len, text] of [[0, 1 << 20, false], [100000, 200000, true], [700000, 50000, false]]) {
        for (let i = from; i < from + len; i++) b[i] = text ? 97 + (rnd() % 4) : rnd();
        b.fill(0, 3 * 65536, 5 * 65536);           // zero chunks too
        const s = r.snapshot();
        fs.writeFileSync(${JSON.stringify(dir)} + '/expect-' + s.id, b);
        await s.persisted;
        ids.push(s.id);
      }
      r.close();
      store.close();
      console.log(JSON.stringify(ids));
    })();`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`building the base store failed: ${r.stderr}`);
  return { file, snapshots: JSON.parse(r.stdout.trim()) };
}

function mutate(file: string, m: Mutation, rand: () => number): void {
  const pick = <T>(a: T[]): T => a[Math.floor(rand() * a.length)]!;
  if (m === 'file-byte-flips' || m === 'truncate-file') {
    const buf = fs.readFileSync(file);
    if (m === 'truncate-file') {
      fs.writeFileSync(file, buf.subarray(0, Math.floor(buf.length * (0.3 + 0.6 * rand()))));
      return;
    }
    const n = 1 + Math.floor(rand() * 8);
    for (let i = 0; i < n; i++) buf[Math.floor(rand() * buf.length)] ^= 1 << Math.floor(rand() * 8);
    fs.writeFileSync(file, buf);
    return;
  }
  const db = new Database(file);
  try {
    const blobs = (db.prepare('SELECT id, length(data) AS n FROM blobs').all() as { id: number; n: number }[]);
    const chunkRows = db.prepare('SELECT id, snapshot_id, chunk FROM chunks').all() as { id: number; snapshot_id: number; chunk: number }[];
    const snaps = (db.prepare('SELECT id FROM snapshots').all() as { id: number }[]).map((r) => r.id);
    const blob = pick(blobs);
    const row = pick(chunkRows);
    switch (m) {
      case 'blob-byte-flip': {
        const data = db.prepare('SELECT data FROM blobs WHERE id = ?').pluck().get(blob.id) as Buffer;
        data[Math.floor(rand() * data.length)] ^= 1 << Math.floor(rand() * 8);
        db.prepare('UPDATE blobs SET data = ? WHERE id = ?').run(data, blob.id);
        break;
      }
      case 'blob-truncate':
        db.prepare('UPDATE blobs SET data = substr(data, 1, ?) WHERE id = ?').run(Math.floor(blob.n * rand()), blob.id);
        break;
      case 'wrong-chunk-count':
        db.prepare('UPDATE snapshots SET chunks = chunks + ? WHERE id = ?').run(pick([-3, -1, 1, 7, 100000]), pick(snaps));
        break;
      case 'chunk-beyond-region':
        db.prepare('UPDATE chunks SET chunk = ? WHERE id = ?').run(pick([16, 17, 1000, 2 ** 31, 2 ** 40]), row.id);
        break;
      case 'chunk-negative':
        db.prepare('UPDATE chunks SET chunk = ? WHERE id = ?').run(pick([-1, -(2 ** 31)]), row.id);
        break;
      case 'oversized-raw-len':
        db.prepare('UPDATE blobs SET raw_len = ? WHERE id = ?').run(pick([65537, 1 << 20, 2 ** 31, 2 ** 40, 0, -1]), blob.id);
        break;
      case 'swap-blob-data': {
        const other = pick(blobs.filter((b) => b.id !== blob.id));
        if (!other) break;
        const a = db.prepare('SELECT data FROM blobs WHERE id = ?').pluck().get(blob.id);
        const b = db.prepare('SELECT data FROM blobs WHERE id = ?').pluck().get(other.id);
        db.prepare('UPDATE blobs SET data = ? WHERE id = ?').run(b, blob.id);
        db.prepare('UPDATE blobs SET data = ? WHERE id = ?').run(a, other.id);
        break;
      }
      case 'schema-version':
        db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(pick(['0', '2', '99']));
        break;
      case 'schema-version-garbage':
        db.prepare("UPDATE meta SET value = ? WHERE key = ?").run(pick(['abc', '', '1.5']), pick(['schema_version', 'page_size', 'chunk_size', 'format']));
        break;
      case 'null-blob-data':
        db.pragma('ignore_check_constraints = 1');
        db.exec('PRAGMA writable_schema = 0');
        db.prepare(`UPDATE blobs SET ${pick(['hash', 'codec', 'raw_len', 'size'])} = ? WHERE id = ?`).run(pick([-1, 2 ** 53, 3.5, 'x']), blob.id);
        break;
      case 'garbage-codec':
        db.prepare('UPDATE blobs SET codec = ? WHERE id = ?').run(pick([0, 1, 2, 3, 255, -1]), blob.id);
        break;
      case 'missing-blob':
        db.prepare('UPDATE chunks SET blob_id = ? WHERE id = ?').run(pick([999999, -1, 0]), row.id);
        break;
      case 'swap-blob-refs': {
        // Two chunk rows trade blob references (and checksums): each reads as a valid blob.
        const other = db.prepare('SELECT id, blob_id, hash FROM chunks WHERE id != ? AND blob_id IS NOT NULL AND blob_id != ? ORDER BY random() LIMIT 1').get(row.id, db.prepare('SELECT coalesce(blob_id, -1) FROM chunks WHERE id = ?').pluck().get(row.id)) as { id: number; blob_id: number; hash: bigint } | undefined;
        if (!other) break;
        const mine = db.prepare('SELECT blob_id, hash FROM chunks WHERE id = ?').get(row.id) as { blob_id: number; hash: bigint };
        db.prepare('UPDATE chunks SET blob_id = ?, hash = ? WHERE id = ?').run(other.blob_id, other.hash, row.id);
        db.prepare('UPDATE chunks SET blob_id = ?, hash = ? WHERE id = ?').run(mine.blob_id, mine.hash, other.id);
        break;
      }
      case 'move-chunk': {
        // A row moves to another chunk index inside the region that its snapshot does not store.
        const free = db.prepare('SELECT chunk FROM chunks WHERE snapshot_id = (SELECT snapshot_id FROM chunks WHERE id = ?)').pluck().all(row.id) as number[];
        const to = [...Array(16).keys()].find((c) => !free.includes(c));
        if (to !== undefined) db.prepare('UPDATE chunks SET chunk = ? WHERE id = ?').run(to, row.id);
        break;
      }
      case 'repoint-parent': {
        // A snapshot now claims another valid snapshot as its parent.
        const s = pick(snaps.filter((x) => x !== snaps[0]));
        if (s !== undefined) db.prepare('UPDATE snapshots SET parent_id = ? WHERE id = ?').run(snaps[0], s);
        break;
      }
      case 'parent-loop': {
        const s = pick(snaps);
        db.prepare('UPDATE snapshots SET parent_id = ? WHERE id = ?').run(pick([s, 999, snaps[snaps.length - 1]!]), s);
        break;
      }
      case 'region-size-garbage':
        db.prepare('UPDATE snapshots SET region_size = ? WHERE id = ?').run(pick([0, -65536, 1, 65537, 2 ** 50, 2 * 65536]), pick(snaps));
        break;
      case 'text-in-integer':
        db.prepare(`UPDATE chunks SET ${pick(['chunk', 'blob_id', 'snapshot_id'])} = ? WHERE id = ?`).run(pick(['abc', 'x'.repeat(100), Buffer.from([1, 2])]), row.id);
        break;
      case 'drop-table':
        db.exec(`DROP TABLE ${pick(['meta', 'chunks', 'blobs', 'regions'])}`);
        break;
      default:
        break;
    }
  } finally {
    db.close();
  }
}

/** Everything a user can do with the store, in a child; prints one JSON line of results. */
function childScript(file: string, dir: string, snapshots: number[]): string {
  return `
    const { Region, Store, SnapshotError } = require(${JSON.stringify(distLib)});
    const { forEachChunkAt } = require(${JSON.stringify(distImage)});
    const fs = require('fs');
    const results = {};
    const expect = (id) => fs.readFileSync(${JSON.stringify(dir)} + '/expect-' + id);
    const classify = (e) => e instanceof SnapshotError ? 'error:' + e.code : 'RAW:' + (e && e.message);
    const check = (bytes, id) => Buffer.from(bytes).equals(expect(id)) ? 'correct' : 'WRONG';
    (async () => {
      let store;
      try { store = Store.open(${JSON.stringify(file)}, { readonly: true }); } catch (e) { results.open = classify(e); }
      if (store) {
        try { const v = store.verify(); results.verify = v.ok ? 'ok' : 'problems'; } catch (e) { results.verify = classify(e); }
        for (const id of ${JSON.stringify(snapshots)}) {
          try {
            const out = Buffer.alloc(1 << 20);
            forEachChunkAt(store, id, (c, d) => { if (c * 65536 >= out.length) throw new Error('chunk beyond'); if (d) Buffer.from(d).copy(out, c * 65536); });
            results['image' + id] = check(out, id);
          } catch (e) { results['image' + id] = classify(e); }
          try {
            const r = Region.restore(store, { name: 'f', snapshot: id });
            try {
              await r.ready;
              results['lazy' + id] = r.size === (1 << 20) ? check(new Uint8Array(r.buffer), id) : 'WRONG-SIZE';
            } catch (e) { results['lazy' + id] = classify(e); }
            r.close();
          } catch (e) { results['lazy' + id] = classify(e); }
        }
        store.close();
      }
      for (const id of ${JSON.stringify(snapshots)}) {
        // In-place restore needs a writable store.
        let w;
        try {
          w = Store.open(${JSON.stringify(file)});
          const r = Region.alloc(1 << 20, { store: w, name: 'f' });
          try { r.restore(id); results['inplace' + id] = check(new Uint8Array(r.buffer), id); }
          catch (e) { results['inplace' + id] = classify(e); }
          r.close();
        } catch (e) { results['inplace' + id] = classify(e); }
        try { w && w.close(); } catch (e) {}
      }
      process.stdout.write('RESULTS ' + JSON.stringify(results) + '\\n');
    })().catch((e) => { process.stdout.write('RESULTS ' + JSON.stringify({ harness: 'RAW:' + e.message }) + '\\n'); });`;
}

export function runCase(base: { file: string; snapshots: number[] }, dir: string, m: Mutation, seed: number): Outcome {
  const file = path.join(dir, `case-${seed}.usnap`);
  fs.copyFileSync(base.file, file);
  const rand = rng(seed);
  let results: Record<string, string> = {};
  try {
    mutate(file, m, rand);
  } catch (err) {
    // The mutation itself was impossible (e.g. a constraint): nothing to test.
    fs.rmSync(file, { force: true });
    return { mutation: m, seed, verdict: 'ok', detail: `mutation not applicable: ${(err as Error).message}`, results };
  }
  const r = spawnSync(process.execPath, ['-e', childScript(file, path.dirname(base.file), base.snapshots)], { encoding: 'utf8', timeout: 60_000 });
  for (const suffix of ['', '-wal', '-shm']) fs.rmSync(file + suffix, { force: true });
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULTS '));
  if (line) results = JSON.parse(line.slice(8));
  if (r.signal || r.status !== 0 || !line) {
    const documented = /STORE_CORRUPT: .*cannot be restored/.test(r.stderr) && /stopping the process/.test(r.stderr);
    return {
      mutation: m, seed, verdict: documented ? 'documented-abort' : 'crash',
      detail: `status ${r.status} signal ${r.signal}: ${r.stderr.slice(-600)}`, results,
    };
  }
  const bad = Object.entries(results).filter(([, v]) => v.startsWith('WRONG') || v.startsWith('RAW:'));
  if (bad.length) return { mutation: m, seed, verdict: 'wrong', detail: bad.map(([k, v]) => `${k}=${v}`).join(', '), results };
  return { mutation: m, seed, verdict: 'ok', detail: '', results };
}

export function fuzz(cases: number, seed0: number, log: (s: string) => void = () => {}): Outcome[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-fuzz-'));
  try {
    const base = buildBase(dir);
    const out: Outcome[] = [];
    for (let i = 0; i < cases; i++) {
      const m = MUTATIONS[i % MUTATIONS.length]!;
      const o = runCase(base, dir, m, seed0 + i);
      out.push(o);
      if (o.verdict !== 'ok') log(`case ${i} ${m} seed ${o.seed}: ${o.verdict}: ${o.detail}`);
    }
    return out;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const cases = Number(process.argv[2] ?? 1000);
  const seed = Number(process.argv[3] ?? 1);
  const t0 = Date.now();
  const out = fuzz(cases, seed, (s) => console.log(s));
  const count = (v: string) => out.filter((o) => o.verdict === v).length;
  console.log(`${out.length} cases in ${((Date.now() - t0) / 1000).toFixed(0)} s: ok ${count('ok')}, wrong bytes ${count('wrong')}, crashes ${count('crash')}, documented aborts ${count('documented-abort')}`);
  process.exitCode = count('wrong') || count('crash') ? 1 : 0;
}
