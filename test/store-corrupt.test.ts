import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Region, SnapshotError, Store } from '../lib/index';
import { applyStep, imageAt } from '../scripts/workload';
import { dist, expectBytesEqual, expectCode, expectRejectCode, fillPattern, runNode, tmpDir } from './helpers';

const MiB = 1 << 20;
const SIZE = 8 * MiB, PER_STEP = 24, SEED = 77;

/** A closed store holding three snapshots (steps 0..2 of the workload) of region "heap". */
async function makeStore(dir = tmpDir()): Promise<{ file: string; ids: number[] }> {
  const file = path.join(dir, 'c.usnap');
  const store = Store.open(file);
  const region = Region.alloc(SIZE, { store, name: 'heap' });
  const bytes = new Uint8Array(region.buffer);
  const snaps = [];
  for (let k = 0; k < 3; k++) {
    applyStep(bytes, SEED, k, PER_STEP);
    snaps.push(region.snapshot());
  }
  await Promise.all(snaps.map((s) => s.persisted));
  store.close();
  return { file, ids: snaps.map((s) => s.id) };
}

/** A blob used by exactly one chunk row, of snapshot `snap`, with the given codec. */
function soleBlob(db: Database.Database, snap: number, codec: number): { chunk: number; blob: number } {
  return db.prepare(
    `SELECT c.chunk, c.blob_id AS blob FROM chunks c JOIN blobs b ON b.id = c.blob_id
     WHERE c.snapshot_id = ? AND b.codec = ? AND (SELECT count(*) FROM chunks x WHERE x.blob_id = c.blob_id) = 1
     ORDER BY c.chunk LIMIT 1`,
  ).get(snap, codec) as { chunk: number; blob: number };
}

function flipByte(db: Database.Database, blob: number, at: (len: number) => number): void {
  const { data } = db.prepare('SELECT data FROM blobs WHERE id = ?').get(blob) as { data: Buffer };
  const i = at(data.length);
  data[i] ^= 0x20;
  db.prepare('UPDATE blobs SET data = ? WHERE id = ?').run(data, blob);
}

function expectHint(e: SnapshotError): void {
  expect(typeof e.hint).toBe('string');
  expect(e.hint!.length).toBeGreaterThan(10);
}

describe('store corruption', () => {
  it('a flipped byte in a stored blob: verify names snapshot and chunk; restores throw STORE_CORRUPT, never wrong bytes', async () => {
    const { file, ids } = await makeStore();
    const [s1, s2, s3] = ids as [number, number, number];
    const db = new Database(file);
    const lz4 = soleBlob(db, s2, 2);   // a compressed chunk of s2
    const raw = soleBlob(db, s1, 1);   // an incompressible chunk of s1
    expect(lz4).toBeDefined();
    expect(raw).toBeDefined();
    flipByte(db, lz4.blob, (n) => n >> 1);
    flipByte(db, raw.blob, (n) => n - 1);
    const s3HasLz4Chunk = !!db.prepare('SELECT 1 FROM chunks WHERE snapshot_id = ? AND chunk = ?').get(s3, lz4.chunk);
    const laterHasRawChunk = !!db.prepare('SELECT 1 FROM chunks WHERE snapshot_id IN (?, ?) AND chunk = ?').get(s2, s3, raw.chunk);
    db.close();

    const store = Store.open(file);
    const v = store.verify();
    expect(v.ok).toBe(false);
    expect(v.problems.map(({ code, snapshot, chunk, blob }) => ({ code, snapshot, chunk, blob })).sort((a, b) => a.snapshot! - b.snapshot!)).toEqual([
      { code: 'STORE_CORRUPT', snapshot: s1, chunk: raw.chunk, blob: raw.blob },
      { code: 'STORE_CORRUPT', snapshot: s2, chunk: lz4.chunk, blob: lz4.blob },
    ]);
    for (const p of v.problems) expect(p.message).toMatch(new RegExp(`snapshot ${p.snapshot} chunk ${p.chunk}\\b.*checksum`));
    // verify(id) checks the snapshot and the chain it stands on.
    expect(store.verify(s2).problems.map((p) => p.snapshot).sort()).toEqual([s1, s2].sort());

    // A new region (lazy): `ready` rejects; touching the chunk would stop the process (restore.test.ts).
    const lazy = Region.restore(store, { name: 'heap', snapshot: s2 });
    const e = await expectRejectCode(lazy.ready, 'STORE_CORRUPT');
    expect(e.message).toMatch(/checksum/);
    expectHint(e);
    lazy.close();
    // In place: the region's bytes and head are untouched.
    const region = Region.alloc(SIZE, { store, name: 'heap' });
    const bytes = new Uint8Array(region.buffer);
    fillPattern(bytes, 5);
    const before = bytes.slice();
    for (const id of [s1, s2]) {
      expectCode(() => region.restore(id), 'STORE_CORRUPT');
      expectBytesEqual(bytes, before, `region after failed restore of ${id}`);
      expect(region.head).toBeNull();
    }
    // s3 is damaged exactly when it still reads a damaged chunk.
    if (!s3HasLz4Chunk || !laterHasRawChunk) {
      expectCode(() => region.restore(s3), 'STORE_CORRUPT');
      expectBytesEqual(bytes, before, 'region after failed restore of s3');
    } else {
      region.restore(s3);
      expectBytesEqual(bytes, imageAt(SEED, 2, SIZE, PER_STEP), 's3');
    }
    region.close();
    store.close();
  });

  it('a chunk row whose blob is gone and a snapshot on an incomplete parent are reported', async () => {
    const { file, ids } = await makeStore();
    const [s1, s2, s3] = ids as [number, number, number];
    const db = new Database(file);
    const victim = soleBlob(db, s3, 2);
    db.prepare('DELETE FROM blobs WHERE id = ?').run(victim.blob);
    db.prepare('UPDATE snapshots SET complete = 0 WHERE id = ?').run(s1);
    db.close();
    // Opened read-only, so recovery does not clean the incomplete snapshot away first.
    const ro = Store.open(file, { readonly: true });
    const v = ro.verify();
    expect(v.ok).toBe(false);
    const msgs = v.problems.map((p) => `${p.code} ${p.snapshot} ${p.chunk ?? '-'}: ${p.message}`);
    expect(msgs).toContain(`STORE_CORRUPT ${s3} ${victim.chunk}: snapshot ${s3} chunk ${victim.chunk}: blob ${victim.blob} is missing`);
    expect(msgs).toContain(`STORE_CORRUPT ${s2} -: snapshot ${s2} stands on snapshot ${s1}, which is incomplete`);
    ro.close();
  });

  it('a truncated store file gives STORE_CORRUPT and is left as it was', async () => {
    const dir = tmpDir();
    const { file } = await makeStore(dir);
    const whole = fs.readFileSync(file);
    expect(fs.existsSync(`${file}-wal`)).toBe(false);
    for (const cut of [20, 99, 100, 4096, 65536, 65536 + 100, whole.length >> 1, whole.length - 65536, whole.length - 1]) {
      const f = path.join(dir, `cut${cut}.usnap`);
      fs.writeFileSync(f, whole.subarray(0, cut));
      for (const readonly of [true, false]) {
        const e = expectCode(() => Store.open(f, { readonly }), 'STORE_CORRUPT');
        expect(e.message).toMatch(/truncated/);
        expectHint(e);
      }
      expect(Buffer.compare(fs.readFileSync(f), whole.subarray(0, cut))).toBe(0);
      expect(fs.existsSync(`${f}-wal`)).toBe(false);
    }
  });

  it('foreign files: not a database, a non-store database, a newer schema, a missing file', () => {
    const dir = tmpDir();
    const text = path.join(dir, 'notes.usnap');
    fs.writeFileSync(text, 'these are my notes, not a database\n'.repeat(200));
    const textBytes = fs.readFileSync(text);
    for (const readonly of [false, true]) expectHint(expectCode(() => Store.open(text, { readonly }), 'NOT_A_STORE'));
    expect(Buffer.compare(fs.readFileSync(text), textBytes)).toBe(0);

    const other = path.join(dir, 'other.db');
    const odb = new Database(other);
    odb.exec("CREATE TABLE t (x); INSERT INTO t VALUES ('precious')");
    odb.close();
    const otherBytes = fs.readFileSync(other);
    for (const readonly of [false, true]) expectHint(expectCode(() => Store.open(other, { readonly }), 'NOT_A_STORE'));
    // Not even the journal mode changed.
    expect(Buffer.compare(fs.readFileSync(other), otherBytes)).toBe(0);
    expect(fs.existsSync(`${other}-wal`)).toBe(false);

    const newer = path.join(dir, 'newer.usnap');
    Store.open(newer).close();
    const ndb = new Database(newer);
    ndb.prepare("UPDATE meta SET value = '99' WHERE key = 'schema_version'").run();
    ndb.close();
    for (const readonly of [false, true]) {
      const e = expectCode(() => Store.open(newer, { readonly }), 'STORE_VERSION');
      expect(e.message).toMatch(/version 99/);
      expect(e.hint).toMatch(/Upgrade/);
    }
    const ndb2 = new Database(newer, { readonly: true });
    expect(ndb2.prepare("SELECT value FROM meta WHERE key = 'schema_version'").pluck().get()).toBe('99');
    ndb2.close();

    const missing = path.join(dir, 'missing.usnap');
    expectHint(expectCode(() => Store.open(missing, { readonly: true }), 'NOT_FOUND'));
    expect(fs.existsSync(missing)).toBe(false);
    expectHint(expectCode(() => Store.open(path.join(dir, 'no', 'such', 'dir.usnap')), 'IO'));
  });

  it('an unwritable directory gives IO with a hint', () => {
    const dir = tmpDir();
    fs.chmodSync(dir, 0o555);
    // Root ignores permissions: try it as nobody, after loading everything as root (the
    // checkout itself may sit where nobody cannot read, such as a 0700 temporary directory).
    const asNobody = process.getuid?.() === 0 ? 'process.setgid(65534); process.setuid(65534);' : '';
    const r = runNode(`
      const { Store } = require(${JSON.stringify(dist)});
      Store.open(':memory:').close();  // loads both native bindings
      ${asNobody}
      try { Store.open(${JSON.stringify(path.join(dir, 's.usnap'))}); console.log('opened'); }
      catch (e) { console.log(JSON.stringify({ code: e.code, hint: e.hint, message: e.message })); }
    `);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as { code: string; hint: string; message: string };
    expect(out.code).toBe('IO');
    expect(out.message).toMatch(/EACCES|permission/i);
    expect(out.hint).toMatch(/writable/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('a full disk (SQLITE_FULL) rejects persisted with IO and loses nothing committed', async () => {
    const file = `${tmpDir()}/full.usnap`;
    const store = Store.open(file, { maxBytes: 4 * MiB });
    const region = Region.alloc(16 * MiB, { store, name: 'heap' });
    const bytes = new Uint8Array(region.buffer);
    fillPattern(bytes, 1, 0, MiB);
    const image1 = bytes.slice();
    const s1 = region.snapshot();
    expect((await s1.persisted).complete).toBe(true);
    fillPattern(bytes, 2);  // 16 MiB of incompressible bytes cannot fit in 4 MiB
    const s2 = region.snapshot();
    const e = await expectRejectCode(s2.persisted, 'IO');
    expect(e.message).toMatch(/SQLITE_FULL|full/);
    expectHint(e);
    expectCode(() => region.snapshot(), 'IO');
    store.close();
    const again = Store.open(file);
    expect(again.list().map((s) => s.id)).toEqual([s1.id]);
    expect(again.verify().ok).toBe(true);
    const r = Region.restore(again, { name: 'heap', snapshot: s1.id });
    expectBytesEqual(new Uint8Array(r.buffer), image1);
    again.close();
  });
});
