// Quick persist-throughput measurement (not a test, not the `usnap bench` harness).
//   node dist/scripts/persist-throughput.js [MiB=256] [runs=3] [batchMiB]
// Prints MB/s of raw dirty memory made durable (snapshot() -> persisted), with durability
// 'power' (the default: the WAL is fsynced before persisted resolves) and 'process' (no
// fsync), runs interleaved, next to raw LZ4 and raw SQLite insert rates of the same data
// measured in the same run.
import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Region, Store } from '../lib/index';
import { CHUNK_SIZE, native } from '../core/native';
import { pragmas } from '../store/schema';

const MiB = 1 << 20;
const size = Number(process.argv[2] ?? 256) * MiB;
const runs = Number(process.argv[3] ?? 3);
const batchBytes = process.argv[4] ? Number(process.argv[4]) * MiB : undefined;

/** A heap-like image: text-ish runs, small integers, pointers, some random bytes and zero pages. */
function fillImage(b: Uint8Array, seed: number): void {
  let x = seed >>> 0 || 1;
  const rnd = () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), x >>> 0);
  const words = ['object', 'length', 'prototype', 'value', 'function', 'undefined', 'string', 'index'];
  const enc = new TextEncoder();
  for (let off = 0; off < b.length; off += 4096) {
    const kind = rnd() % 8;
    if (kind === 0) continue;  // zero page
    const page = b.subarray(off, off + 4096);
    if (kind === 1) {
      for (let i = 0; i < 4096; i += 4) new DataView(page.buffer, page.byteOffset + i, 4).setUint32(0, rnd());
    } else if (kind <= 4) {
      let p = 0;
      while (p < 4096) {
        const w = enc.encode(words[rnd() % words.length]! + ' ');
        page.set(w.subarray(0, Math.min(w.length, 4096 - p)), p);
        p += w.length;
      }
    } else {
      const dv = new DataView(page.buffer, page.byteOffset, 4096);
      const baseHi = 0x7f00 + (rnd() & 0xf);
      for (let i = 0; i < 4096; i += 8) {
        if (rnd() & 1) dv.setUint32(i, (rnd() & 0xffff) << 3, true), dv.setUint32(i + 4, baseHi, true);
        else dv.setUint32(i, rnd() & 0xff, true);
      }
    }
  }
}

function median(a: number[]): number {
  const s = [...a].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-persist-'));
  const addon = native();
  // Raw LZ4 (+ hash) rate on the same image.
  const img = new Uint8Array(size);
  fillImage(img, 1);
  let t = performance.now();
  const blobs: ReturnType<typeof addon.codec_encode>[] = [];
  for (let off = 0; off < size; off += CHUNK_SIZE) blobs.push(addon.codec_encode(img.subarray(off, off + CHUNK_SIZE)));
  const lz4MBs = size / MiB / ((performance.now() - t) / 1000);
  const stored = blobs.reduce((n, b) => n + b.bytes.length, 0);

  // Raw SQLite insert rate of the encoded blobs: same pragmas as the store, 8 MiB transactions.
  const rawRates: number[] = [];
  for (let r = 0; r < runs; r++) {
    const f = path.join(dir, `raw${r}.db`);
    const db = new Database(f);
    pragmas(db, false);
    db.exec('CREATE TABLE b (id INTEGER PRIMARY KEY, hash INTEGER, data BLOB)');
    const ins = db.prepare('INSERT INTO b (hash, data) VALUES (?, ?)');
    const tx = db.transaction((from: number, to: number) => {
      for (let i = from; i < to; i++) ins.run(blobs[i]!.hash, blobs[i]!.bytes);
    });
    t = performance.now();
    const per = Math.max(1, Math.floor((8 * MiB) / CHUNK_SIZE));
    for (let i = 0; i < blobs.length; i += per) tx(i, Math.min(blobs.length, i + per));
    rawRates.push(size / MiB / ((performance.now() - t) / 1000));
    db.close();
    fs.rmSync(f, { force: true });
    fs.rmSync(f + '-wal', { force: true });
    fs.rmSync(f + '-shm', { force: true });
  }

  // The store: snapshot() of a fully dirty region until `persisted` resolves.
  const byMode = { power: [] as number[], process: [] as number[] };
  for (let i = 0; i < 2 * runs; i++) {
    const r = i >> 1;
    const durability = i % 2 === 0 ? 'power' : 'process';
    const rates = byMode[durability];
    const f = path.join(dir, `store${i}.usnap`);
    const store = Store.open(f, { durability, ...(batchBytes ? { batchBytes } : {}) });
    const region = Region.alloc(size, { store, name: 'heap' });
    const bytes = new Uint8Array(region.buffer);
    fillImage(bytes, 10 + r);  // distinct per run, so dedup does not flatter
    t = performance.now();
    const s = region.snapshot();
    await s.persisted;
    rates.push(size / MiB / ((performance.now() - t) / 1000));
    region.close();
    store.close();
    fs.rmSync(f, { force: true });
  }
  // Small snapshots one after another (4 chunks changed, each awaited): the fsync's latency,
  // not its bandwidth, is what 'power' adds here.
  const small = { power: [] as number[], process: [] as number[] };
  for (let i = 0; i < 2 * runs; i++) {
    const durability = i % 2 === 0 ? 'power' : 'process';
    const f = path.join(dir, `small${i}.usnap`);
    const store = Store.open(f, { durability });
    const region = Region.alloc(4 * MiB, { store, name: 'small' });
    const bytes = new Uint8Array(region.buffer);
    await region.snapshot().persisted;
    const n = 100;
    t = performance.now();
    for (let k = 0; k < n; k++) {
      for (let c = 0; c < 4; c++) bytes.fill(k & 255, ((k * 4 + c) % 64) * CHUNK_SIZE, ((k * 4 + c) % 64) * CHUNK_SIZE + 4096);
      await region.snapshot().persisted;
    }
    small[durability].push(n / ((performance.now() - t) / 1000));
    region.close();
    store.close();
    fs.rmSync(f, { force: true });
  }
  const persist = median(byMode.power);
  const persistProcess = median(byMode.process);
  const raw = median(rawRates);
  console.log(JSON.stringify({
    sizeMiB: size / MiB,
    runs,
    ratio: +(stored / size).toFixed(3),
    lz4MBs: Math.round(lz4MBs),
    sqliteInsertMBs: Math.round(raw),
    persistMBs: Math.round(persist),
    persistRuns: byMode.power.map(Math.round),
    persistProcessMBs: Math.round(persistProcess),
    persistProcessRuns: byMode.process.map(Math.round),
    processOverPower: +(persistProcess / persist).toFixed(2),
    smallSnapshotsPerSec: { power: Math.round(median(small.power)), process: Math.round(median(small.process)) },
    smallProcessOverPower: +(median(small.process) / median(small.power)).toFixed(2),
    ofLowerLimit: +(persist / Math.min(raw, lz4MBs)).toFixed(2),
  }));
  fs.rmSync(dir, { recursive: true, force: true });
}

void main();
