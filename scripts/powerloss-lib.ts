// The power-loss experiment (test/powerloss.test.ts, scripts/powerloss.ts).
//
// 1. Record: scripts/powerloss-child runs under the LD_PRELOAD shim test/fixtures/iorecord.c,
//    which logs every create/write/truncate/fsync/unlink of the store's files (main file, -wal,
//    -journal; -shm and the directory's fsyncs too) and the child's markers, in order.
// 2. Replay: a model of what a power loss may leave. Each file (inode) has the contents of its
//    last fsync plus the writes since, of which any subset may have reached the disk, each
//    possibly torn at 512-byte sectors (a write that reached the disk carries the latest data
//    of its sectors: the page cache writes back current contents). A name created or unlinked
//    since the directory's last fsync may or may not be there. -shm is not durable state: it
//    is left out (SQLite truncates a -shm no other connection holds and rebuilds it from the
//    WAL on the first open).
// 3. Check each crash state the way a user meets it after the reboot: open a copy with
//    Store.open (which also drops incomplete snapshots); it must open; every snapshot whose
//    `persisted` resolved before the crash point (and that no gc may have deleted) must be
//    listed; every listed snapshot must restore byte-exact (its label names the image).
import { spawnSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Region, Store } from '../lib/index';
import { packageRoot } from '../core/native';
import { forEachChunkAt } from '../store/image';
import { CHUNK, imageAt, rng } from './workload';

/** What scripts/powerloss-child snapshots. */
export const POWERLOSS_REGION = { name: 'pl', size: 1 << 20, perStep: 4, keep: 4 };

export const OP = { create: 1, write: 2, truncate: 3, fsync: 4, unlink: 5, rename: 6, mark: 7 } as const;
export const FILE = { db: 1, wal: 2, journal: 3, shm: 4, dir: 5, marker: 6 } as const;
const SUFFIX: Record<number, string> = { [FILE.db]: '', [FILE.wal]: '-wal', [FILE.journal]: '-journal' };
const DURABLE_FILES = [FILE.db, FILE.wal, FILE.journal];

export interface IoEvent {
  op: number;
  file: number;
  offset: number;
  length: number;
  /** WRITE and MARK: the bytes. */
  data?: Buffer;
}

/** Compiles the shim into `dir` (cc is there wherever node-gyp can build the addon). */
export function buildShim(dir: string): string {
  const out = path.join(dir, 'iorecord.so');
  const src = path.join(packageRoot, 'test', 'fixtures', 'iorecord.c');
  const r = spawnSync('cc', ['-shared', '-fPIC', '-O2', '-Wall', '-o', out, src, '-ldl', '-lpthread'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cc failed: ${r.stderr || r.error}`);
  return out;
}

/** Runs the child under the shim on a new store in `dir`; returns the recorded events. */
export async function recordRun(dir: string, shim: string, seed: number, steps: number, durability: 'power' | 'process'): Promise<IoEvent[]> {
  const db = path.join(dir, 'store.db');
  const log = path.join(dir, 'io.log');
  // An ASan runtime (npm run test:sanitize) must stay first in LD_PRELOAD.
  const preload = [process.env.LD_PRELOAD, shim].filter(Boolean).join(':');
  const child = spawn(process.execPath, [path.join(packageRoot, 'dist', 'scripts', 'powerloss-child.js'), db, String(seed), String(steps), durability], {
    env: { ...process.env, LD_PRELOAD: preload, IORECORD_DB: db, IORECORD_LOG: log },
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  if (code !== 0) throw new Error(`powerloss-child exited with ${code}: ${stderr}`);
  return parseLog(fs.readFileSync(log));
}

export function parseLog(buf: Buffer): IoEvent[] {
  const out: IoEvent[] = [];
  for (let at = 0; at < buf.length;) {
    const op = buf[at]!, file = buf[at + 1]!;
    const offset = Number(buf.readBigUInt64LE(at + 8)), length = Number(buf.readBigUInt64LE(at + 16));
    at += 24;
    const e: IoEvent = { op, file, offset, length };
    if (op === OP.write || op === OP.mark) {
      e.data = buf.subarray(at, at + length);
      at += length;
    }
    out.push(e);
  }
  return out;
}

type Pending = { kind: 'write'; offset: number; data: Buffer } | { kind: 'truncate'; size: number };

class Inode {
  cur: Buffer = Buffer.alloc(0);
  durable: Buffer = Buffer.alloc(0);
  pending: Pending[] = [];

  write(offset: number, data: Buffer): void {
    this.cur = writeAt(this.cur, offset, data);
    this.pending.push({ kind: 'write', offset, data });
  }
  truncate(size: number): void {
    this.cur = resize(this.cur, size);
    this.pending.push({ kind: 'truncate', size });
  }
  sync(): void {
    this.durable = Buffer.from(this.cur);
    this.pending = [];
  }
  /** The contents a power loss may leave; `applied(i)` chooses which pending operations reached the disk. */
  crash(random: () => number, mode: Variant): Buffer {
    let b: Buffer = Buffer.from(this.durable);
    for (const p of this.pending) {
      if (mode === 'fsynced') break;
      if (mode === 'random' && random() < 0.35) continue;
      if (p.kind === 'truncate') {
        b = resize(b, p.size);
      } else if (mode === 'random' && random() < 0.3) {
        // Torn: only some of its sectors reached the disk.
        const first = Math.floor(p.offset / 512), last = Math.ceil((p.offset + p.data.length) / 512);
        for (let s = first; s < last; s++) {
          if (random() < 0.5) continue;
          const from = Math.max(s * 512, p.offset), to = Math.min((s + 1) * 512, p.offset + p.data.length);
          b = writeAt(b, from, p.data.subarray(from - p.offset, to - p.offset));
        }
      } else {
        b = writeAt(b, p.offset, p.data);
      }
    }
    return b;
  }
}

function resize(b: Buffer, size: number): Buffer {
  if (size <= b.length) return b.subarray(0, size);
  const n = Buffer.alloc(size);
  b.copy(n);
  return n;
}

function writeAt(b: Buffer, offset: number, data: Buffer): Buffer {
  if (offset + data.length > b.length) b = resize(b, offset + data.length);
  data.copy(b, offset);
  return b;
}

/** 'fsynced': only what was fsynced; 'all': everything written (a process crash); 'random': subsets and tears. */
export type Variant = 'fsynced' | 'all' | 'random';

/** What the checker must find at a crash point. */
interface Expectations {
  /** Snapshots whose `persisted` resolved and that no gc had started deleting. */
  required: Set<number>;
  everPersisted: boolean;
}

export interface CrashStateOptions {
  states: number;
  seed: number;
  /** Where to build states (a fresh directory). */
  dir: string;
  onState?: (n: number) => void;
}

export interface CrashStateReport {
  states: number;
  byVariant: Record<Variant, number>;
  /** Crash points that were fsyncs (state right before and right after each). */
  fsyncPoints: number;
  /** Snapshots checked byte-exact, summed over the states. */
  restores: number;
  failures: string[];
}

/**
 * Builds `states` crash states from the recording and checks each. Crash points: right before
 * and right after every fsync, and at every `persisted` marker (one state there holds only the
 * fsynced bytes: that snapshot must already be durable).
 */
export async function checkCrashStates(events: IoEvent[], opts: CrashStateOptions): Promise<CrashStateReport> {
  const random = rng(opts.seed);
  // Crash point i: the events before index i happened, the rest did not.
  const points: { at: number; variant: Variant }[] = [];
  events.forEach((e, i) => {
    if (e.op === OP.fsync && e.file !== FILE.marker) points.push({ at: i, variant: 'random' }, { at: i + 1, variant: 'random' });
    if (e.op === OP.mark && e.data!.toString().startsWith('persisted')) points.push({ at: i + 1, variant: 'fsynced' });
  });
  const fsyncPoints = events.filter((e) => e.op === OP.fsync && e.file !== FILE.marker).length;
  // Every marker's fsynced-only state once, then random points (a few process-crash states).
  const chosen = points.filter((p) => p.variant === 'fsynced').slice(0, opts.states);
  while (chosen.length < opts.states) {
    const p = points[Math.floor(random() * points.length)]!;
    chosen.push({ at: p.at, variant: random() < 0.1 ? 'all' : 'random' });
  }
  chosen.sort((a, b) => a.at - b.at);

  const report: CrashStateReport = { states: 0, byVariant: { fsynced: 0, all: 0, random: 0 }, fsyncPoints, restores: 0, failures: [] };
  const replay = new Replay();
  const exp = replay.expectations;
  let next = 0;
  for (let i = 0; i <= events.length && next < chosen.length; i++) {
    while (next < chosen.length && chosen[next]!.at === i) {
      const c = chosen[next++]!;
      const files = replay.crashFiles(random, c.variant);
      const where = `crash state ${report.states} (event ${i} of ${events.length}, ${c.variant}, after markers: ${replay.markers.slice(-2).join(' | ') || 'none'})`;
      // A writable open (which also drops incomplete snapshots) starts the writer worker; a
      // read-only one is much cheaper, so most states are read that way, as another process would.
      const writable = report.states % 8 === 0;
      const n = await checkState(files, exp, path.join(opts.dir, `s${report.states}`), `${where}${writable ? '' : ' read-only'}`, report, writable);
      report.restores += n;
      report.byVariant[c.variant]++;
      report.states++;
      opts.onState?.(report.states);
    }
    const e = events[i];
    if (!e) break;
    replay.apply(e);
  }
  return report;
}

/** The store's files as the recording goes: what is written, and what is durable. */
export class Replay {
  private readonly dirCur = new Map<number, Inode | null>();
  private dirDurable = new Map<number, Inode | null>();
  readonly expectations: Expectations = { required: new Set(), everPersisted: false };
  readonly markers: string[] = [];

  apply(e: IoEvent): void {
    switch (e.op) {
      case OP.create:
        if (DURABLE_FILES.includes(e.file as never)) this.dirCur.set(e.file, new Inode());
        break;
      case OP.write:
        this.dirCur.get(e.file)?.write(e.offset, e.data!);
        break;
      case OP.truncate:
        this.dirCur.get(e.file)?.truncate(e.offset);
        break;
      case OP.fsync:
        if (e.file === FILE.dir) this.dirDurable = new Map(this.dirCur);
        else this.dirCur.get(e.file)?.sync();
        break;
      case OP.unlink:
        this.dirCur.set(e.file, null);
        break;
      case OP.rename:
        throw new Error(`unexpected rename of store file ${e.offset} to ${e.file}`);
      case OP.mark: {
        const line = e.data!.toString().trim();
        this.markers.push(line);
        const [what, ...ids] = line.split(' ');
        if (what === 'persisted') {
          this.expectations.required.add(Number(ids[0]));
          this.expectations.everPersisted = true;
        }
        if (what === 'deleting') for (const id of ids) this.expectations.required.delete(Number(id));
        break;
      }
    }
  }

  /** The files a power loss now may leave, by suffix kind. */
  crashFiles(random: () => number, variant: Variant): Map<number, Buffer> {
    const files = new Map<number, Buffer>();
    for (const f of DURABLE_FILES) {
      const cur = this.dirCur.get(f) ?? null, dur = this.dirDurable.get(f) ?? null;
      // A name changed since the directory's last fsync may be in either state.
      const inode = variant === 'all' ? cur : variant === 'fsynced' ? dur : cur === dur || random() < 0.5 ? cur : dur;
      if (inode) files.set(f, inode.crash(random, variant));
    }
    return files;
  }
}

/** Writes `files` as a store at `db` (its -wal and -journal next to it). */
export function writeState(files: Map<number, Buffer>, db: string): void {
  fs.mkdirSync(path.dirname(db), { recursive: true });
  for (const [f, b] of files) fs.writeFileSync(db + SUFFIX[f], b);
}

/** WAL page size of the recorded stores (schema.ts STORE_PAGE_SIZE). */
const WAL_FRAME = 24 + 65536;

/** Whether event e writes the header of a WAL commit frame (its "database size after commit" is set). */
export function isCommitFrame(e: IoEvent): boolean {
  return e.op === OP.write && e.file === FILE.wal && e.length === 24 && (e.offset - 32) % WAL_FRAME === 0 && e.data!.readUInt32BE(4) !== 0;
}

/**
 * WAL fsyncs that are part of a commit (synchronous = FULL): the event right after a commit
 * frame's page is written (SQLite syncs before the commit returns, holding the WAL write lock),
 * not followed by checkpoint writes to the main file. A checkpoint's own WAL fsync (which SQLite
 * does at synchronous = NORMAL too) comes later, and is followed by writes to the main file
 * unless a reader stopped it.
 */
export function commitSyncs(events: IoEvent[]): number[] {
  const out: number[] = [];
  for (let i = 2; i < events.length; i++) {
    const e = events[i]!, page = events[i - 1]!;
    if (e.op !== OP.fsync || e.file !== FILE.wal || !isCommitFrame(events[i - 2]!)) continue;
    if (page.op !== OP.write || page.file !== FILE.wal || page.length !== WAL_FRAME - 24) continue;
    const next = events.slice(i + 1).find((x) => (x.file === FILE.wal || x.file === FILE.db) && (x.op === OP.write || x.op === OP.fsync));
    if (!(next?.file === FILE.db && next.op === OP.write)) out.push(i);
  }
  return out;
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/**
 * Writes one crash state and opens it as a user would; returns the number of snapshots restored.
 * Writable opens restore with Region.restore (the reader worker); read-only ones read each image
 * on this thread as `usnap restore -o` does (no worker to start: most states are checked so).
 */
async function checkState(files: Map<number, Buffer>, exp: Expectations, dir: string, where: string, report: CrashStateReport, writable: boolean): Promise<number> {
  const db = path.join(dir, 'store.db');
  writeState(files, db);
  const fail = (m: string) => report.failures.push(`${where}: ${m}`);
  let restored = 0;
  let store: Store | undefined;
  try {
    try {
      store = Store.open(db, writable ? { durability: 'process' } : { readonly: true });
    } catch (err) {
      // Before the first snapshot persisted the store may still be being created: an empty file
      // (NOT_FOUND, NOT_A_STORE read-only) or a hot journal a read-only connection cannot roll
      // back. A writable open, as the creating program would do again, must then succeed.
      if (writable || exp.everPersisted) throw err;
      store = Store.open(db, { durability: 'process' });
      writable = true;
    }
    const listed = store.list({ region: POWERLOSS_REGION.name });
    const ids = new Set(listed.map((s) => s.id));
    for (const id of exp.required) if (!ids.has(id)) fail(`snapshot ${id} had resolved persisted but is missing (listed: ${[...ids].join(', ') || 'none'})`);
    for (const s of listed) {
      const [seed, step] = (s.label ?? '').split(':').map(Number);
      const want = imageAt(seed!, step!, POWERLOSS_REGION.size, POWERLOSS_REGION.perStep);
      let got: Uint8Array;
      if (writable) {
        const region = Region.restore(store, { name: POWERLOSS_REGION.name, snapshot: s.id });
        try {
          await region.ready;
          got = new Uint8Array(region.buffer).slice();
        } finally {
          region.close();
        }
      } else {
        const img = new Uint8Array(POWERLOSS_REGION.size);
        forEachChunkAt(store, s.id, (c, data) => data && img.set(data, c * CHUNK));
        got = img;
      }
      const d = firstDiff(got, want);
      if (d !== -1) fail(`snapshot ${s.id} (${s.label}) differs at byte ${d}`);
      restored++;
    }
  } catch (err) {
    const e = err as { code?: string; message?: string };
    fail(`${e.code ?? 'error'}: ${e.message ?? String(err)}`);
  } finally {
    try {
      store?.close();
    } catch (err) {
      fail(`close: ${String(err)}`);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return restored;
}

/** Counts of what the recording holds, for reports. */
export function summarize(events: IoEvent[]): { writes: number; fsyncs: Record<string, number>; markers: number } {
  const names: Record<number, string> = { [FILE.db]: 'db', [FILE.wal]: 'wal', [FILE.journal]: 'journal', [FILE.shm]: 'shm', [FILE.dir]: 'dir' };
  const fsyncs: Record<string, number> = {};
  for (const e of events) if (e.op === OP.fsync && names[e.file]) fsyncs[names[e.file]!] = (fsyncs[names[e.file]!] ?? 0) + 1;
  return {
    writes: events.filter((e) => e.op === OP.write).length,
    fsyncs,
    markers: events.filter((e) => e.op === OP.mark).length,
  };
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
