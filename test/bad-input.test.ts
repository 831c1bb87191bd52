// Every reproducer of issue 18 (crashes, hangs, wrong error codes, silent acceptance, newcomer
// friction), each asserting the documented outcome; the ones that could crash or hang run in
// a child process with a timeout, so a crash shows as a failed test. Plus a short sample of
// the API fuzzer (npm run fuzz:api runs 2,000 cases).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Region, Snapshot, SnapshotError, Store } from '../lib/index';
import { fuzzApi } from '../scripts/fuzz-api';
import { dist, root, tmpDir } from './helpers';

const dir = tmpDir('usnap-bad-input-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const CLI = path.join(root, 'dist', 'lib', 'cli', 'main.js');
const MiB = 1 << 20;

/** Runs `body` (with `lib` bound) in a child; it prints one JSON line. A crash or hang fails. */
function child(body: string, timeout = 60_000): Record<string, unknown> {
  const r = spawnSync(process.execPath, ['-e', `const lib = require(${JSON.stringify(dist)});
    const codeOf = (f) => { try { f(); return 'ok'; } catch (e) { return e instanceof lib.SnapshotError ? e.code : 'foreign ' + e; } };
    (async () => { ${body} })().catch((e) => { console.log(JSON.stringify({ escaped: String(e) })); });`], { encoding: 'utf8', timeout });
  expect(r.signal, `child died: ${r.stderr}`).toBeNull();
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

function cli(...args: string[]): { status: number | null; signal: string | null; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } });
  return { status: r.status, signal: r.signal, stderr: r.stderr, stdout: r.stdout };
}

function codeOf(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    return e instanceof SnapshotError ? e.code : `foreign ${String(e)}`;
  }
}

async function asyncCodeOf(f: () => Promise<unknown>): Promise<string> {
  try {
    await f();
    return 'ok';
  } catch (e) {
    return e instanceof SnapshotError ? e.code : `foreign ${String(e)}`;
  }
}

/** A file store with region "heap" (1 MiB) and snapshots 1 and 2, closed. */
async function fixture(name: string): Promise<string> {
  const file = path.join(dir, name);
  const s = Store.open(file);
  const r = Region.alloc(MiB, { store: s, name: 'heap' });
  const u = new Uint8Array(r.buffer);
  u.fill(1);
  r.snapshot();
  u[70_000] = 2;
  await r.snapshot().persisted;
  r.close();
  s.close();
  return file;
}

function mkfifo(name: string): string {
  const f = path.join(dir, name);
  expect(spawnSync('mkfifo', [f]).status).toBe(0);
  return f;
}

describe('crashes and hangs', () => {
  it('Region.alloc above the largest region throws INVALID_ARGUMENT (was a double free in the native open; an OOM kill at 2**45)', () => {
    const out = child(`console.log(JSON.stringify({
      over4g: codeOf(() => lib.Region.alloc(2 ** 32 + 65536)),
      over4gHuge: codeOf(() => lib.Region.alloc(2 ** 32 + 65536, { hugePages: true })),
      huge: codeOf(() => lib.Region.alloc(2 ** 45)),
      max: codeOf(() => lib.Region.alloc(2 ** 53)),
    }));`);
    expect(out).toEqual({ over4g: 'INVALID_ARGUMENT', over4gHuge: 'INVALID_ARGUMENT', huge: 'INVALID_ARGUMENT', max: 'INVALID_ARGUMENT' });
  });

  it('usnap bench --size 5G is a usage error, not an abort', () => {
    const r = cli('bench', '--size', '5G');
    expect(r.signal).toBeNull();
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/larger than the largest region.*\[USAGE\]/);
  });

  it('Store.open on a FIFO, a socket, a device, a directory or a /proc file refuses with NOT_A_STORE instead of blocking', () => {
    const fifo = mkfifo('store-fifo');
    const out = child(`const net = require('node:net');
      const sock = ${JSON.stringify(path.join(dir, 'sock'))};
      const srv = net.createServer().listen(sock);
      await new Promise((r) => srv.on('listening', r));
      const res = {};
      for (const [k, p, o] of [['fifo', ${JSON.stringify(fifo)}, {}], ['fifoRo', ${JSON.stringify(fifo)}, { readonly: true }], ['sock', sock, {}],
          ['devnull', '/dev/null', {}], ['dir', '/tmp', {}], ['procMem', '/proc/self/mem', { readonly: true }], ['procStatus', '/proc/self/status', {}]])
        res[k] = codeOf(() => lib.Store.open(p, o));
      srv.close();
      console.log(JSON.stringify(res));`, 30_000);
    expect(out).toEqual({ fifo: 'NOT_A_STORE', fifoRo: 'NOT_A_STORE', sock: 'NOT_A_STORE', devnull: 'NOT_A_STORE', dir: 'NOT_A_STORE', procMem: 'NOT_A_STORE', procStatus: 'NOT_A_STORE' });
    expect(fs.readdirSync(dir).filter((f) => /-(journal|wal|shm)$/.test(f) && f.startsWith('store-fifo'))).toEqual([]);
    expect(fs.existsSync('/dev/null-journal') || fs.existsSync('/dev/null-wal')).toBe(false);
  });

  it('a store whose creation a power loss cut short (one all-zero page, no WAL) is created again; a non-zero foreign file is left alone', () => {
    const dir = tmpDir();
    const torn = path.join(dir, 'torn.usnap');
    fs.writeFileSync(torn, Buffer.alloc(65536));  // page 1 written, its first sector lost
    expect(() => Store.open(torn, { readonly: true })).toThrow(expect.objectContaining({ code: 'NOT_A_STORE', message: expect.stringContaining('creation was cut short') }));
    expect(() => Store.open(torn, { create: false })).toThrow(expect.objectContaining({ code: 'NOT_A_STORE' }));
    const store = Store.open(torn);
    expect(store.list()).toEqual([]);
    store.close();
    expect(Store.open(torn, { readonly: true }).list()).toEqual([]);
    const foreign = path.join(dir, 'foreign.bin');
    const bytes = Buffer.alloc(65536);
    bytes[40000] = 1;
    fs.writeFileSync(foreign, bytes);
    expect(() => Store.open(foreign)).toThrow(expect.objectContaining({ code: 'NOT_A_STORE' }));
    expect(fs.readFileSync(foreign).equals(bytes)).toBe(true);
    const bigger = path.join(dir, 'zeros.bin');
    fs.writeFileSync(bigger, Buffer.alloc(65536 + 512));
    expect(() => Store.open(bigger)).toThrow(expect.objectContaining({ code: 'NOT_A_STORE' }));
    expect(fs.statSync(bigger).size).toBe(65536 + 512);
  });

  it('usnap verify / diff / restore on a FIFO exit 1 with NOT_A_STORE', () => {
    const fifo = mkfifo('cli-fifo');
    for (const args of [['verify', fifo], ['diff', fifo, '1', '2'], ['restore', fifo, '1', '-o', path.join(dir, 'img')]]) {
      const r = cli(...args);
      expect(r.signal).toBeNull();
      expect([r.status, r.stderr]).toEqual([1, expect.stringMatching(/\[NOT_A_STORE\]/)]);
    }
  });

  it('a lazy Region.restore then store.close() (or region.close()) rejects ready with CLOSED', async () => {
    const file = await fixture('lazy.usnap');
    for (const closeWhat of ['store', 'region'] as const) {
      const store = Store.open(file);
      const r = Region.restore(store, { snapshot: 2 });
      if (closeWhat === 'store') store.close();
      else r.close();
      expect(await asyncCodeOf(() => r.ready)).toBe('CLOSED');
      store.close();
    }
  });
});

describe('error class and code', () => {
  it('calls on a closed store (":memory:" or a file) throw CLOSED', async () => {
    const file = await fixture('closed.usnap');
    for (const p of [':memory:', file]) {
      const s = Store.open(p);
      s.close();
      for (const f of [() => s.list(), () => s.info(1), () => s.latest(), () => s.regionsInfo(), () => s.verify(), () => s.stats(),
        () => Region.restore(s, { snapshot: 1 }), () => Region.alloc(65536, { store: s })]) {
        expect(codeOf(f)).toBe('CLOSED');
      }
      expect(await asyncCodeOf(() => s.gc())).toBe('CLOSED');
      expect(await asyncCodeOf(() => s.delete(1))).toBe('CLOSED');
    }
  });

  it('gc(null), list(null), Region.attach of a Proxy or a forged Memory throw INVALID_ARGUMENT', async () => {
    const s = Store.open(':memory:');
    expect(await asyncCodeOf(() => s.gc(null as never))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => s.list(null as never))).toBe('INVALID_ARGUMENT');
    const mem = new WebAssembly.Memory({ initial: 1 });
    expect(codeOf(() => Region.attach(new Proxy(mem, {})))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => Region.attach(Object.create(WebAssembly.Memory.prototype) as WebAssembly.Memory))).toBe('INVALID_ARGUMENT');
    s.close();
  });

  it('usnap bench --size 1.1M exits 2 with a usage error', () => {
    const r = cli('bench', '--size', '1.1M');
    expect([r.status, r.stderr]).toEqual([2, expect.stringMatching(/not a multiple of 64 KiB.*\[USAGE\]/)]);
  });
});

describe('no silent acceptance', () => {
  it('verify of a bad id or a non-function onProgress throws INVALID_ARGUMENT on a healthy store', async () => {
    const s = Store.open(await fixture('verify.usnap'), { readonly: true });
    for (const bad of ['1', 0, -3, null, { id: 1 }]) expect(codeOf(() => s.verify(bad as never))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => s.verify(undefined, { onProgress: 5 as never }))).toBe('INVALID_ARGUMENT');
    expect(s.verify().ok).toBe(true);
    s.close();
  });

  it('unknown options, non-object arguments and keep: 0 are refused (with a did-you-mean)', async () => {
    const s = Store.open(await fixture('opts.usnap'));
    const err = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as SnapshotError).message;
      }
      return 'accepted';
    };
    expect(err(() => s.list({ regoin: 'heap' } as never))).toMatch(/Unknown option "regoin".*did you mean "region"/);
    expect(await asyncCodeOf(() => s.gc({ kep: 3 } as never))).toBe('INVALID_ARGUMENT');
    expect(await asyncCodeOf(() => s.gc(5 as never))).toBe('INVALID_ARGUMENT');
    expect(await asyncCodeOf(() => s.gc({ keep: 0 }))).toBe('INVALID_ARGUMENT');
    expect(s.list().length).toBe(2);  // nothing deleted by any of those
    expect((await s.gc({ keep: 0, force: true })).deletedSnapshots).toEqual([1, 2]);
    expect(codeOf(() => Region.alloc(65536, [] as never))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => Store.open(path.join(dir, 'x.usnap'), { readonly: 'yes' } as never))).toBe('INVALID_ARGUMENT');
    expect(err(() => Store.open(path.join(dir, 'x.usnap'), { readOnly: true } as never))).toMatch(/did you mean "readonly"/);
    s.close();
  });

  it('usnap gc --keep 0 is a usage error without --force', async () => {
    const file = await fixture('cli-keep0.usnap');
    expect([cli('gc', file, '--keep', '0').status]).toEqual([2]);
    expect(Store.open(file, { readonly: true }).list().length).toBe(2);
    const r = cli('gc', file, '--keep', '0', '--force', '--json');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).deletedSnapshots).toEqual([1, 2]);
  });

  it('each option is read once: a getter cannot pass validation and then hand over something else', () => {
    let reads = 0;
    const name = { get name() { return reads++ === 0 ? 'ok' : 'x'.repeat(100_000); } };
    const r = Region.alloc(65536, name);
    expect([r.name, reads]).toEqual(['ok', 1]);
    r.close();
    let b = 0;
    const s = Store.open(path.join(dir, 'getter.usnap'), { get batchBytes() { return b++ === 0 ? MiB : -5; } } as never);
    expect(b).toBe(1);
    s.close();
  });

  it('a Snapshot belongs to its store: another store\'s is refused, { id: 1 } is not a snapshot, an integer id is', async () => {
    const a = Store.open(':memory:');
    const b = Store.open(':memory:');
    const ra = Region.alloc(65536, { store: a, name: 'r' });
    const rb = Region.alloc(65536, { store: b, name: 'r' });
    new Uint8Array(ra.buffer)[0] = 1;
    const sa = ra.snapshot();
    new Uint8Array(rb.buffer)[0] = 2;
    const sb = rb.snapshot();
    await Promise.all([sa.persisted, sb.persisted]);
    expect(sa.id).toBe(sb.id);
    expect(codeOf(() => ra.restore(sb))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => ra.restore({ id: 1 } as never))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => a.info(sb))).toBe('INVALID_ARGUMENT');
    new Uint8Array(ra.buffer)[0] = 9;
    ra.restore(1);
    expect(new Uint8Array(ra.buffer)[0]).toBe(1);
    expect(codeOf(() => new (Snapshot as unknown as new (...a: unknown[]) => unknown)(1, a, { id: 1 }))).toBe('INVALID_ARGUMENT');
    a.close();
    b.close();
  });

  it('usnap restore -o never replaces a special file or the store; gc on an empty file does not make it a store', async () => {
    const file = await fixture('cli-out.usnap');
    const before = fs.readFileSync(file);
    let r = cli('restore', file, '1', '-o', '/dev/null', '--force');
    expect([r.status, r.stderr]).toEqual([2, expect.stringMatching(/\[NOT_A_FILE\]/)]);
    expect(fs.statSync('/dev/null').isCharacterDevice()).toBe(true);
    const fifo = mkfifo('out-fifo');
    r = cli('restore', file, '1', '-o', fifo, '--force');
    expect([r.status, fs.statSync(fifo).isFIFO()]).toEqual([2, true]);
    r = cli('restore', file, '1', '-o', file, '--force');
    expect([r.status, r.stderr]).toEqual([2, expect.stringMatching(/\[SAME_FILE\]/)]);
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    const empty = path.join(dir, 'empty');
    fs.writeFileSync(empty, '');
    r = cli('gc', empty);
    expect([r.status, r.stderr]).toEqual([1, expect.stringMatching(/\[NOT_A_STORE\]/)]);
    expect(fs.statSync(empty).size).toBe(0);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('empty'))).toEqual(['empty']);
  });
});

describe('what a newcomer tripped on', () => {
  it('gc runs on the writer thread: the main thread keeps running while a large gc is in progress', async () => {
    const file = path.join(dir, 'big-gc.usnap');
    const s = Store.open(file);
    const r = Region.alloc(16 * MiB, { store: s, name: 'heap' });
    const u = new Uint8Array(r.buffer);
    for (let k = 0; k < 40; k++) {
      for (let off = k * 4096; off < u.length; off += 65536) u[off] = k + 1;  // every chunk, every time
      await r.snapshot().persisted;
    }
    let ticks = 0;
    let done = false;
    const spin = () => {
      ticks++;
      if (!done) setImmediate(spin);
    };
    setImmediate(spin);
    const ticksAtCall = ticks;
    const g = await s.gc({ keep: 1 });
    done = true;
    expect(g.deletedSnapshots.length).toBe(39);
    // Counted, not timed: a gc on the main thread would leave no turn of the event loop to it.
    expect(ticks - ticksAtCall).toBeGreaterThan(3);
    r.close();
    s.close();
  });

  it('Store.open(path, { keep }) applies retention in the background after each persisted snapshot', async () => {
    const file = path.join(dir, 'keep.usnap');
    const s = Store.open(file, { keep: 2 });
    const r = Region.alloc(MiB, { store: s, name: 'heap' });
    for (let k = 0; k < 6; k++) {
      new Uint8Array(r.buffer)[k * 65536] = k + 1;
      await r.snapshot().persisted;
    }
    r.close();
    s.close();
    const ro = Store.open(file, { readonly: true });
    expect(ro.list().map((x) => x.id)).toEqual([5, 6]);
    const back = Region.restore(ro, { snapshot: 6 });
    await back.ready;
    expect([...new Uint8Array(back.buffer).filter((_, i) => i % 65536 === 0).slice(0, 7)]).toEqual([1, 2, 3, 4, 5, 6, 0]);
    ro.close();
    expect(codeOf(() => Store.open(file, { keep: 0 }))).toBe('INVALID_ARGUMENT');
  });

  it('Region.restore takes mode and hugePages, needs no name, and store.latest() names the newest snapshot', async () => {
    const file = await fixture('restore-opts.usnap');
    const s = Store.open(file);
    expect(s.latest()?.id).toBe(2);
    expect(s.latest('heap')?.id).toBe(2);
    expect(s.latest('nope')).toBeNull();
    for (const opts of [{}, { mode: 'pause' as const }, { hugePages: true }]) {
      const r = Region.restore(s, { snapshot: 2, ...opts });
      await r.ready;
      const u = new Uint8Array(r.buffer);
      expect([r.name, u[0], u[70_000]]).toEqual(['heap', 1, 2]);
      u[0] = 7;  // a pause-mode region keeps tracking writes
      const snap = r.snapshot();
      await snap.persisted;
      expect(snap.parent).toBe(2);
      r.close();
    }
    expect(codeOf(() => Region.restore(s, { snapshot: 2, name: 'other' }))).toBe('REGION_MISMATCH');
    s.close();
    const out = cli('info', file, 'latest', '--json');
    expect(out.status).toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject({ id: 5 });
  });

  it('list({ all: true }) includes a snapshot still in flight right after snapshot()', async () => {
    const s = Store.open(path.join(dir, 'inflight.usnap'));
    const r = Region.alloc(MiB, { store: s, name: 'heap' });
    const snap = r.snapshot();
    expect(s.list({ all: true }).map((x) => x.id)).toContain(snap.id);
    await snap.persisted;
    expect(s.list({ all: true }).find((x) => x.id === snap.id)?.complete).toBe(true);
    r.close();
    s.close();
  });
});

describe('API fuzzer', () => {
  it(`40 generated hostile calls and CLI invocations: no crash, hang, silent acceptance or foreign error`, async () => {
    const s = await fuzzApi({ cases: 40, seed: 1 });
    expect(s.cases).toBe(40);
    expect(s.failures.map((f) => `#${f.i} ${f.outcome}: ${f.args}: ${f.detail}`)).toEqual([]);
    expect((s.counts.error ?? 0) + (s.counts.ok ?? 0)).toBeGreaterThan(33);
  });
});
