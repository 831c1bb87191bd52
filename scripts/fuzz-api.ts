// Hostile callers: generated calls to every public entry point (Region.alloc/attach/restore,
// region methods, Store.open and its methods, Snapshot, probe) and every CLI command, in child
// processes, several cases per child. Each case picks, for every argument slot, a valid value
// or a hostile one; the oracle follows from that: all valid must succeed (and pass the case's
// check), any hostile one must throw a SnapshotError (with one of the codes the hostile slots
// name, when they name one). Outcomes:
//   ok / error:CODE   as documented
//   caller            an exception thrown by the caller's own getter passed through (allowed)
//   silent            a hostile argument was accepted (returned normally)
//   wrong-code        a SnapshotError with another code than the hostile slot documents
//   wrong-result      valid arguments, but the result fails the case's check
//   foreign           a non-SnapshotError escaped (TypeError, RangeError, a raw errno...)
//   crash / hang      the child died on a signal or stopped making progress
// Exits non-zero on anything but ok / error / caller.
//   node dist/scripts/fuzz-api.js [--cases 2000] [--seed 7] [--batch 25] [--only NAME]
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { mix, rng } from './workload';

function caseRng(seed: number, i: number): () => number {
  const r = rng(mix(seed, i, 0xf022));
  r();
  r();
  return r;
}

const root = (() => {
  let d = __dirname;
  while (!fs.existsSync(path.join(d, 'package.json'))) d = path.dirname(d);
  return d;
})();
const CLI = path.join(root, 'dist', 'lib', 'cli', 'main.js');

type Lib = typeof import('../lib/index');
let lib: Lib;

/** Thrown by the fuzzer's own getters: passing through is allowed. */
class CallerError extends Error {}

// ---- fixtures: built lazily per case, closed after it ----

let template: string | undefined;
let fileCounter = 0;

class Fixtures {
  readonly dir: string;
  private closers: (() => void)[] = [];
  private _store?: import('../store/store').Store;

  constructor(dir: string) {
    this.dir = dir;
  }
  track<T extends { close(): unknown }>(x: T): T {
    this.closers.push(() => void x.close());
    return x;
  }
  file(name: string): string {
    return path.join(this.dir, `${++fileCounter}-${name}`);
  }
  /**
   * A file store holding region "fx" (1 MiB) with snapshots 1 and 2, region closed: a copy of
   * a template built once per child.
   */
  async store(): Promise<import('../store/store').Store> {
    if (this._store) return this._store;
    if (!template) {
      const t = path.join(this.dir, 'template.usnap');
      const s = lib.Store.open(t);
      const r = lib.Region.alloc(1 << 20, { store: s, name: 'fx' });
      const u = new Uint8Array(r.buffer);
      u.fill(1);
      r.snapshot({ label: 'one' });
      u[70000] = 2;
      await r.snapshot({ label: 'two' }).persisted;
      r.close();
      s.close();
      template = t;
    }
    const f = this.file('fx.usnap');
    fs.copyFileSync(template, f);
    return (this._store = this.track(lib.Store.open(f)));
  }
  /** A Snapshot object of store(): snapshot 3, a child of 2 with the same contents. */
  async liveSnapshot(): Promise<import('../lib/snapshot').Snapshot> {
    const r = lib.Region.restore(await this.store(), { snapshot: 2 });
    const snap = r.snapshot();
    await snap.persisted;
    r.close();
    return snap;
  }
  /** A snapshot of another store, id 1 too. */
  async foreignSnapshot(): Promise<import('../lib/snapshot').Snapshot> {
    const s = this.track(lib.Store.open(':memory:'));
    const r = this.track(lib.Region.alloc(65536, { store: s, name: 'fx' }));
    return r.snapshot();
  }
  async closedStore(memory: boolean): Promise<import('../store/store').Store> {
    const s = memory ? lib.Store.open(':memory:') : await this.store();
    s.close();
    return s;
  }
  memory(pages = 1, shared = false): WebAssembly.Memory {
    return new WebAssembly.Memory({ initial: pages, maximum: pages + 4, ...(shared ? { shared: true } : {}) } as WebAssembly.MemoryDescriptor);
  }
  fifo(): string {
    const f = this.file('fifo');
    spawnSync('mkfifo', [f]);
    return f;
  }
  socket(): string {
    const f = this.file('sock');
    const srv = net.createServer().listen(f);
    this.closers.push(() => srv.close());
    return f;
  }
  textFile(): string {
    const f = this.file('text');
    fs.writeFileSync(f, 'hello, not a store\n');
    return f;
  }
  emptyFile(): string {
    const f = this.file('empty');
    fs.writeFileSync(f, '');
    return f;
  }
  closeAll(): void {
    for (const c of this.closers.reverse()) {
      try {
        c();
      } catch {
        // closing what a case left behind
      }
    }
    this.closers = [];
    this._store = undefined;
  }
}

// ---- values ----

type Fx = Fixtures;
/** A value for an argument slot; `code` is the code a hostile value must produce (any if unset). */
interface Val {
  label: string;
  make: (fx: Fx) => unknown | Promise<unknown>;
  code?: string | string[];
}
interface Slot {
  valid: Val[];
  hostile: Val[];
}
const v = (label: string, make: (fx: Fx) => unknown, code?: string | string[]): Val => ({ label, make, code });
const c = (label: string, x: unknown, code?: string | string[]): Val => ({ label, make: () => x, code });

/** A value read twice: first `first`, then `then` (an option must be read once). */
function twoFaced(key: string, first: unknown, then: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  let reads = 0;
  const o: Record<string, unknown> = { ...extra };
  Object.defineProperty(o, key, { enumerable: true, get: () => (reads++ === 0 ? first : then) });
  return o;
}
function throwing(key: string): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  Object.defineProperty(o, key, {
    enumerable: true,
    get: () => {
      throw new CallerError('the caller\'s getter');
    },
  });
  return o;
}

const JUNK: Val[] = [
  c('null', null), c('0', 0), c('-1', -1), c('1.5', 1.5), c('NaN', NaN), c('Infinity', Infinity), c('2**53', 2 ** 53),
  c('"1"', '1'), c('""', ''), c('100k string', 'x'.repeat(100_000)), c('true', true), c('[]', []), c('{id:1}', { id: 1 }),
  c('Symbol', Symbol('s')), c('10n', 10n), c('function', () => 1), c('Proxy', new Proxy({}, {})), c('null-proto', Object.create(null)),
  c('Buffer', Buffer.alloc(4)), c('Date', new Date(0)),
];
const NOT_OBJECT: Val[] = [c('null', null), c('5', 5), c('"x"', 'x'), c('[]', []), c('true', true), c('fn', () => 0), c('10n', 10n)];
const CODE = 'INVALID_ARGUMENT';
const inv = (vals: Val[]): Val[] => vals.map((x) => ({ ...x, code: x.code ?? CODE }));
const nonInteger = inv(JUNK.filter((x) => !['0', '-1', '2**53'].includes(x.label)));

const REGION_OPTS_VALID: Val[] = [
  c('undefined', undefined), c('{}', {}), c('name', { name: 'n' }), c('mode pause', { mode: 'pause' }), c('mode live', { mode: 'live' }),
  c('hugePages', { hugePages: true }), c('faultAround 1', { faultAround: 1 }), c('faultAroundMax 512', { faultAround: 4, faultAroundMax: 512 }),
  c('captureBudget 0', { captureBudget: 0 }), c('saverThreads 1', { saverThreads: 1 }), c('saverThreads 16', { saverThreads: 16 }),
  v('name read once', () => twoFaced('name', 'ok', 'x'.repeat(100_000))),
  v('faultAround read once', () => twoFaced('faultAround', 16, 3)),
  v('store', async (fx) => ({ store: fx.track(lib.Store.open(':memory:')) })),
];
const REGION_OPTS_HOSTILE: Val[] = inv([
  ...NOT_OBJECT, c('typo nmae', { nmae: 'x' }), c('typo hugepages', { hugepages: true }), c('mode x', { mode: 'x' }), c('mode 1', { mode: 1 }),
  c('hugePages "yes"', { hugePages: 'yes' }), c('faultAround 3', { faultAround: 3 }), c('faultAround 1024', { faultAround: 1024 }),
  c('faultAround 0', { faultAround: 0 }), c('faultAroundMax < faultAround', { faultAround: 64, faultAroundMax: 16 }),
  c('captureBudget -1', { captureBudget: -1 }), c('captureBudget 1.5', { captureBudget: 1.5 }), c('saverThreads 0', { saverThreads: 0 }),
  c('saverThreads 17', { saverThreads: 17 }), c('name ""', { name: '' }), c('name 100k', { name: 'x'.repeat(100_000) }), c('name 5', { name: 5 }),
  c('store {}', { store: {} }), c('store string', { store: ':memory:' }),
]).concat([v('store closed', async (fx) => ({ store: await fx.closedStore(true) }), 'CLOSED'), v('throwing getter', () => throwing('name'))]);

const SNAPSHOT_ARG_VALID: Val[] = [c('1', 1), c('2', 2), v('Snapshot 3', (fx) => fx.liveSnapshot())];
const SNAPSHOT_ARG_HOSTILE: Val[] = [
  ...nonInteger, c('0', 0, CODE), c('-3', -3, CODE), c('2**53', 2 ** 53, CODE), c('999', 999, 'NOT_FOUND'),
  v('foreign Snapshot', async (fx) => fx.foreignSnapshot(), CODE),
];

interface Case {
  name: string;
  slots: Slot[];
  call: (fx: Fx, args: unknown[]) => unknown | Promise<unknown>;
  /** For all-valid arguments: a message when the result is wrong. */
  check?: (result: unknown, args: unknown[], fx: Fx) => string | undefined | Promise<string | undefined>;
  cli?: boolean;
}

function region(fx: Fx, size = 1 << 20): import('../lib/region').Region {
  return fx.track(lib.Region.alloc(size, { store: fx.track(lib.Store.open(':memory:')) }));
}

const CASES: Case[] = [
  {
    name: 'Region.alloc',
    slots: [
      {
        valid: [c('64K', 65536), c('1', 1), c('1M', 1 << 20), c('100000', 100_000)],
        hostile: [...inv(JUNK.filter((x) => x.label !== '2**53')), c('2**53', 2 ** 53, CODE), c('2**32+64K', 2 ** 32 + 65536, CODE), c('2**45', 2 ** 45, CODE), c('2**41', 2 ** 41, CODE)],
      },
      { valid: REGION_OPTS_VALID, hostile: REGION_OPTS_HOSTILE },
    ],
    call: (fx, [size, opts]) => fx.track(lib.Region.alloc(size as number, opts as object)),
    check: (r, [size, opts]) => {
      const reg = r as import('../lib/region').Region;
      if (reg.size !== Math.ceil((size as number) / 65536) * 65536) return `size ${reg.size}`;
      if (opts && (opts as { name?: unknown }).name !== undefined && reg.name !== 'ok' && reg.name !== 'n') return `name ${reg.name.length} chars`;
      return undefined;
    },
  },
  {
    name: 'Region.attach',
    slots: [
      {
        valid: [v('Memory', (fx) => fx.memory()), v('shared Memory', (fx) => fx.memory(2, true))],
        hostile: inv([
          ...JUNK,
          v('Proxy(Memory)', (fx) => new Proxy(fx.memory(), {})),
          v('forged Memory', () => Object.create(WebAssembly.Memory.prototype)),
          v('empty Memory', () => new WebAssembly.Memory({ initial: 0 })),
          v('ArrayBuffer', () => new ArrayBuffer(65536)),
        ]),
      },
      { valid: REGION_OPTS_VALID.filter((x) => x.label !== 'hugePages'), hostile: [...REGION_OPTS_HOSTILE, c('hugePages', { hugePages: true }, CODE)] },
    ],
    call: (fx, [m, opts]) => fx.track(lib.Region.attach(m as WebAssembly.Memory, opts as object)),
  },
  {
    name: 'Region.restore',
    slots: [
      {
        valid: [v('store', (fx) => fx.store())],
        hostile: [...inv(JUNK), v('closed memory store', (fx) => fx.closedStore(true), ['CLOSED', 'NOT_FOUND']), v('closed file store', (fx) => fx.closedStore(false), 'CLOSED')],
      },
      {
        valid: [
          c('snapshot 2', { snapshot: 2 }), c('snapshot 1 + name', { snapshot: 1, name: 'fx' }), c('pause', { snapshot: 2, mode: 'pause' }),
          c('hugePages', { snapshot: 1, hugePages: true }), v('Snapshot object', async (fx) => ({ snapshot: await fx.liveSnapshot() })),
          v('snapshot read once', () => twoFaced('snapshot', 2, 'x')),
        ],
        hostile: [
          ...inv(NOT_OBJECT), c('{}', {}, CODE), c('snapshot "1"', { snapshot: '1' }, CODE), c('snapshot {id:1}', { snapshot: { id: 1 } }, CODE),
          c('snapshot 999', { snapshot: 999 }, 'NOT_FOUND'), c('wrong name', { snapshot: 1, name: 'other' }, 'REGION_MISMATCH'),
          c('faultAround 3', { snapshot: 1, faultAround: 3 }, CODE), c('typo', { snapshot: 1, snapsot: 1 }, CODE), c('mode x', { snapshot: 1, mode: 'x' }, CODE),
          v('foreign Snapshot', async (fx) => ({ snapshot: await fx.foreignSnapshot() }), CODE), c('name 5', { snapshot: 1, name: 5 }, CODE),
        ],
      },
    ],
    call: async (fx, [store, opts]) => {
      const r = fx.track(lib.Region.restore(store as import('../store/store').Store, opts as import('../lib/region').RestoreOptions));
      await r.ready;
      return r;
    },
    check: (r) => {
      const u = new Uint8Array((r as import('../lib/region').Region).buffer);
      return u[0] === 1 && u.length === 1 << 20 ? undefined : `contents ${u[0]} length ${u.length}`;
    },
  },
  {
    name: 'region.snapshot',
    slots: [{
      valid: [c('undefined', undefined), c('{}', {}), c('label', { label: 'x' }), c('empty label', { label: '' }), v('label read once', () => twoFaced('label', 'ok', 5))],
      hostile: inv([...NOT_OBJECT, c('label 5', { label: 5 }), c('typo', { lable: 'x' }), c('label 100k', { label: 'x'.repeat(100_000) })]),
    }],
    call: async (fx, [opts]) => {
      const s = region(fx).snapshot(opts as { label?: string });
      await s.persisted;
      return s;
    },
  },
  {
    name: 'region.restore',
    slots: [{ valid: SNAPSHOT_ARG_VALID, hostile: SNAPSHOT_ARG_HOSTILE }],
    call: async (fx, [arg]) => {
      const r = fx.track(lib.Region.restore(await fx.store(), { snapshot: 1 }));
      r.restore(arg as number);
      return r;
    },
    check: (r, [arg]) => {
      const id = typeof arg === 'number' ? arg : (arg as { id: number }).id;
      const u = new Uint8Array((r as import('../lib/region').Region).buffer);
      return u[70000] === (id === 1 ? 1 : 2) ? undefined : `byte ${u[70000]} after restoring ${id}`;
    },
  },
  {
    name: 'region.unprotect',
    slots: [
      { valid: [c('0', 0), c('4096', 4096)], hostile: [...nonInteger, c('-1', -1, CODE), c('2**53', 2 ** 53, CODE), c('past end', 1 << 21, CODE)] },
      { valid: [c('0', 0), c('65536', 65536)], hostile: [...nonInteger, c('-1', -1, CODE), c('past end', 1 << 21, CODE)] },
    ],
    call: (fx, [o, l]) => region(fx).unprotect(o as number, l as number),
  },
  {
    name: 'region.closed',
    slots: [{
      valid: [],
      hostile: ['snapshot', 'restore', 'stats', 'unprotect', 'buffer', 'kernelWritesTrap'].map((m) => c(m, m, 'CLOSED')),
    }],
    call: (fx, [m]) => {
      const r = region(fx);
      r.close();
      r.close();
      const x = r as unknown as Record<string, unknown>;
      return typeof x[m as string] === 'function' ? (x[m as string] as (...a: unknown[]) => unknown).call(r, 1, 1) : x[m as string];
    },
  },
  {
    name: 'Store.open',
    slots: [
      {
        valid: [v('new file', (fx) => fx.file('new.usnap')), c(':memory:', ':memory:'), v('existing store', async (fx) => { const s = await fx.store(); const p = s.path; s.close(); return p; })],
        hostile: [
          ...inv(JUNK.filter((x) => !['"1"', '100k string'].includes(x.label))), c('100k path', '/tmp/' + 'x'.repeat(100_000), ['IO', 'NOT_FOUND']),
          c('directory', os.tmpdir(), 'NOT_A_STORE'), v('FIFO', (fx) => fx.fifo(), 'NOT_A_STORE'), c('/dev/null', '/dev/null', 'NOT_A_STORE'),
          c('/proc/self/mem', '/proc/self/mem', 'NOT_A_STORE'), c('/proc/self/status', '/proc/self/status', 'NOT_A_STORE'),
          v('socket', (fx) => fx.socket(), 'NOT_A_STORE'), v('text file', (fx) => fx.textFile(), 'NOT_A_STORE'), c('NUL', 'a\0b', CODE),
          c('no such dir', '/nonexistent-dir/x.usnap', 'IO'),
        ],
      },
      {
        valid: [c('undefined', undefined), c('{}', {}), c('batchBytes', { batchBytes: 1 << 20 }), v('batchBytes read once', () => twoFaced('batchBytes', 1 << 20, -5))],
        hostile: inv([...NOT_OBJECT, c('readonly "yes"', { readonly: 'yes' }), c('typo readOnly', { readOnly: true }), c('batchBytes -5', { batchBytes: -5 }),
          c('maxBytes 0', { maxBytes: 0 }), c('create 1', { create: 1 })]),
      },
    ],
    call: (fx, [p, opts]) => fx.track(lib.Store.open(p as string, opts as object)),
    check: (s) => ((s as { readonly: boolean }).readonly ? 'opened read-only' : undefined),
  },
  {
    name: 'Store.open(existing, readonly/create)',
    slots: [
      { valid: [], hostile: [v('empty file', (fx) => fx.emptyFile(), 'NOT_A_STORE'), v('missing', (fx) => fx.file('missing'), 'NOT_FOUND')] },
      { valid: [], hostile: [c('readonly', { readonly: true }), c('create false', { create: false })] },
    ],
    call: (fx, [p, opts]) => fx.track(lib.Store.open(p as string, opts as object)),
  },
  {
    name: 'store.list',
    slots: [{
      valid: [c('undefined', undefined), c('{}', {}), c('region', { region: 'fx' }), c('all', { all: true })],
      hostile: inv([...NOT_OBJECT, c('typo', { regoin: 'fx' }), c('all "yes"', { all: 'yes' }), c('region 5', { region: 5 })]),
    }],
    call: async (fx, [o]) => (await fx.store()).list(o as object),
    check: (r, [o]) => ((r as unknown[]).length === ((o as { region?: string })?.region === 'none' ? 0 : 2) ? undefined : `${(r as unknown[]).length} snapshots`),
  },
  {
    name: 'store.info',
    slots: [{ valid: SNAPSHOT_ARG_VALID, hostile: SNAPSHOT_ARG_HOSTILE }],
    call: async (fx, [id]) => (await fx.store()).info(id as number),
  },
  {
    name: 'store.latest',
    slots: [{ valid: [c('undefined', undefined), c('fx', 'fx'), c('unknown region', 'nope')], hostile: inv(JUNK.filter((x) => x.label !== '"1"')) }],
    call: async (fx, [r]) => (await fx.store()).latest(r as string),
    check: (r, [name]) => (name === 'nope' ? (r === null ? undefined : 'not null') : (r as { id: number })?.id === 2 ? undefined : 'not snapshot 2'),
  },
  {
    name: 'store.delete',
    slots: [{ valid: SNAPSHOT_ARG_VALID, hostile: SNAPSHOT_ARG_HOSTILE }],
    call: async (fx, [id]) => (await fx.store()).delete(id as number),
  },
  {
    name: 'store.gc',
    slots: [{
      valid: [c('undefined', undefined), c('{}', {}), c('keep 1', { keep: 1 }), c('keep 0 force', { keep: 0, force: true }), v('keep read once', () => twoFaced('keep', 1, 0))],
      hostile: inv([...NOT_OBJECT, c('keep 0', { keep: 0 }), c('typo kep', { kep: 3 }), c('keep -1', { keep: -1 }), c('keep 1.5', { keep: 1.5 }), c('keep "3"', { keep: '3' })]),
    }],
    call: async (fx, [o]) => (await fx.store()).gc(o as object),
    check: async (r, [o], fx) => {
      const left = (await fx.store()).list().length;
      const keep = (o as { keep?: number } | undefined)?.keep;
      const want = keep === undefined ? 2 : Math.min(2, (o as { force?: boolean }).force ? 0 : 1);
      return left === want ? undefined : `${left} snapshots left`;
    },
  },
  {
    name: 'store.verify',
    slots: [
      { valid: [c('undefined', undefined), ...SNAPSHOT_ARG_VALID], hostile: SNAPSHOT_ARG_HOSTILE },
      { valid: [c('undefined', undefined), c('onProgress', { onProgress: () => {} })], hostile: inv([...NOT_OBJECT, c('onProgress 5', { onProgress: 5 }), c('typo', { onprogres: 1 })]) },
    ],
    call: async (fx, [id, o]) => (await fx.store()).verify(id as number, o as object),
    check: (r) => ((r as { ok: boolean }).ok ? undefined : 'ok: false on a healthy store'),
  },
  {
    name: 'store.closed',
    slots: [
      { valid: [], hostile: [c('memory', true, 'CLOSED'), c('file', false, 'CLOSED')] },
      { valid: [], hostile: ['list', 'info', 'latest', 'regionsInfo', 'delete', 'gc', 'verify', 'stats'].map((m) => c(m, m, 'CLOSED')) },
    ],
    call: async (fx, [memory, m]) => {
      const s = await fx.closedStore(memory as boolean);
      s.close();
      return (s as unknown as Record<string, (...a: unknown[]) => unknown>)[m as string].call(s, 1);
    },
  },
  {
    name: 'probe',
    slots: [{ valid: [c('no args', undefined), c('junk', { x: 1 })], hostile: [] }],
    call: (_fx, [a]) => (lib.probe as (x: unknown) => unknown)(a),
    check: (r) => (typeof (r as { supported: unknown }).supported === 'boolean' ? undefined : 'no supported field'),
  },
  {
    name: 'Snapshot',
    slots: [{ valid: [], hostile: inv([c('no args', undefined), ...JUNK]) }],
    call: (_fx, [a]) => new (lib.Snapshot as unknown as new (...x: unknown[]) => unknown)(a, a, a),
  },
];

// ---- CLI ----

const CLI_STORE: Slot = {
  valid: [v('store', async (fx) => { const s = await fx.store(); const p = s.path; s.close(); return p; })],
  hostile: [
    v('missing', (fx) => fx.file('missing'), 'NOT_FOUND'), c('dir', os.tmpdir(), 'NOT_A_STORE'), v('fifo', (fx) => fx.fifo(), 'NOT_A_STORE'),
    c('/dev/null', '/dev/null', 'NOT_A_STORE'), v('empty', (fx) => fx.emptyFile(), 'NOT_A_STORE'), v('text', (fx) => fx.textFile(), 'NOT_A_STORE'),
    c('/proc/self/status', '/proc/self/status', 'NOT_A_STORE'), v('socket', (fx) => fx.socket(), 'NOT_A_STORE'),
  ],
};
const CLI_SNAP: Slot = {
  valid: [c('1', '1'), c('2', '2'), c('latest', 'latest')],
  hostile: [c('0', '0', 'USAGE'), c('-1', '-1', 'USAGE'), c('x', 'x', 'USAGE'), c('1.5', '1.5', 'USAGE'), c('999', '999', 'NOT_FOUND'), c('1e3', '1e3', 'USAGE'), c('""', '', 'USAGE')],
};
const noFlags: Slot = { valid: [c('none', [])], hostile: [c('--bogus', ['--bogus'], 'USAGE')] };
const jsonFlag: Slot = { valid: [c('none', []), c('--json', ['--json']), c('--no-color', ['--no-color'])], hostile: [c('--bogus', ['--bogus'], 'USAGE'), c('extra arg', ['extra'], 'USAGE')] };

function cliCase(name: string, slots: Slot[], argv: (a: unknown[]) => string[], check?: Case['check']): Case {
  return { name: `cli ${name}`, slots, call: (_fx, a) => runCli(argv(a)), check, cli: true };
}

function runCli(args: string[]): { code: number | null; signal: string | null; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } });
  if (r.error) throw r.error;
  return { code: r.status, signal: r.signal, stderr: r.stderr, stdout: r.stdout };
}

const CLI_CASES: Case[] = [
  cliCase('list', [CLI_STORE, jsonFlag], ([s, f]) => ['list', s as string, ...(f as string[])]),
  cliCase('info', [CLI_STORE, CLI_SNAP, jsonFlag], ([s, n, f]) => ['info', s as string, n as string, ...(f as string[])]),
  cliCase('diff', [CLI_STORE, CLI_SNAP, CLI_SNAP, { valid: [c('none', []), c('--limit 0', ['--limit', '0'])], hostile: [c('--limit -1', ['--limit', '-1'], 'USAGE'), c('--limit x', ['--limit', 'x'], 'USAGE')] }],
    ([s, a, b, f]) => ['diff', s as string, a as string, b as string, ...(f as string[])]),
  cliCase('verify', [CLI_STORE, { valid: [c('all', []), c('1', ['1']), c('latest', ['latest'])], hostile: [c('0', ['0'], 'USAGE'), c('999', ['999'], 'NOT_FOUND')] }, jsonFlag],
    ([s, n, f]) => ['verify', s as string, ...(n as string[]), ...(f as string[])]),
  cliCase('restore', [
    CLI_STORE, CLI_SNAP,
    {
      valid: [v('new file', (fx) => ['-o', fx.file('img')]), v('existing --force', (fx) => ['-o', fx.textFile(), '--force']), v('--verify', (fx) => ['-o', fx.file('img'), '--verify'])],
      hostile: [
        c('no -o', [], 'USAGE'), c('/dev/null --force', ['-o', '/dev/null', '--force'], 'NOT_A_FILE'), v('fifo --force', (fx) => ['-o', fx.fifo(), '--force'], 'NOT_A_FILE'),
        v('socket --force', (fx) => ['-o', fx.socket(), '--force'], 'NOT_A_FILE'), c('dir', ['-o', os.tmpdir(), '--force'], 'NOT_A_FILE'),
        v('existing', (fx) => ['-o', fx.textFile()], 'EXISTS'), c('no such dir', ['-o', '/nonexistent-dir/img'], 'IO'), c('the store', ['-o', '@store', '--force'], 'SAME_FILE'),
      ],
    },
  ], ([s, n, o]) => ['restore', s as string, n as string, ...(o as string[]).map((x) => (x === '@store' ? (s as string) : x))]),
  cliCase('gc', [CLI_STORE, {
    valid: [c('none', []), c('--keep 1', ['--keep', '1']), c('--keep 0 --force', ['--keep', '0', '--force']), c('--json', ['--json'])],
    hostile: [c('--keep 0', ['--keep', '0'], 'USAGE'), c('--keep -1', ['--keep', '-1'], 'USAGE'), c('--keep x', ['--keep', 'x'], 'USAGE'), c('--kep 1', ['--kep', '1'], 'USAGE')],
  }], ([s, f]) => ['gc', s as string, ...(f as string[])]),
  cliCase('probe', [jsonFlag], ([f]) => ['probe', ...(f as string[])]),
  cliCase('bench', [{
    valid: [c('--help', ['--help'])],
    hostile: ['1.1M', '5G', '0', 'x', '-1', '64K1', '2T', '1e9'].map((x) => c(`--size ${x}`, ['--size', x], 'USAGE')).concat([c('--quick --full', ['--quick', '--full'], 'USAGE')]),
  }], ([f]) => ['bench', ...(f as string[])]),
  cliCase('unknown command', [{ valid: [c('help', ['help'])], hostile: [c('lsit', ['lsit'], 'USAGE'), c('none', [], 'USAGE')] }], ([a]) => a as string[]),
  cliCase('list flags', [CLI_STORE, noFlags], ([s, f]) => ['list', s as string, ...(f as string[])]),
];

const ALL = [...CASES, ...CLI_CASES];

// ---- running one case ----

interface Result {
  i: number;
  name: string;
  args: string;
  outcome: string;
  detail?: string;
}
const FAILING = ['silent', 'wrong-code', 'wrong-result', 'foreign', 'crash', 'hang'];

async function runCase(seed: number, i: number, only: string | undefined, dir: string): Promise<Result> {
  const r = caseRng(seed, i);
  const pool = only ? ALL.filter((x) => x.name === only) : ALL;
  const kase = pool[Math.floor(r() * pool.length)]!;
  const canBeValid = kase.slots.every((s) => s.valid.length > 0);
  const allValid = canBeValid && r() < 0.35;
  const picks: Val[] = kase.slots.map((s) => {
    const hostile = !allValid && (s.valid.length === 0 || (s.hostile.length > 0 && r() < 0.5));
    const from = hostile ? s.hostile : s.valid;
    return { ...from[Math.floor(r() * from.length)]!, hostilePick: hostile } as Val & { hostilePick: boolean };
  });
  let hostile = picks.filter((p) => (p as Val & { hostilePick: boolean }).hostilePick);
  if (!allValid && hostile.length === 0 && kase.slots.some((s) => s.hostile.length > 0)) {
    // every slot drew valid: make one hostile
    const k = kase.slots.findIndex((s) => s.hostile.length > 0);
    const s = kase.slots[k]!;
    picks[k] = { ...s.hostile[Math.floor(r() * s.hostile.length)]!, hostilePick: true } as Val;
    hostile = [picks[k]!];
  }
  const label = `${kase.name}(${picks.map((p) => p.label).join(', ')})`;
  const fx = new Fixtures(dir);
  const expectOk = hostile.length === 0;
  const codes = hostile.flatMap((h) => (h.code === undefined ? [] : Array.isArray(h.code) ? h.code : [h.code]));
  const anyCode = hostile.some((h) => h.code === undefined);
  try {
    const args: unknown[] = [];
    for (const p of picks) args.push(await p.make(fx));
    let result: unknown;
    let error: unknown;
    try {
      result = await kase.call(fx, args);
    } catch (err) {
      error = err;
    }
    if (kase.cli && error === undefined) {
      const o = result as { code: number | null; signal: string | null; stderr: string };
      if (o.signal) return { i, name: kase.name, args: label, outcome: 'crash', detail: `signal ${o.signal}: ${o.stderr.slice(-300)}` };
      const m = /\[([A-Z_]+)\]\n(?:hint: .*\n)?$/.exec(o.stderr);
      if (o.code === 0) {
        if (expectOk) return { i, name: kase.name, args: label, outcome: 'ok' };
        return { i, name: kase.name, args: label, outcome: 'silent', detail: 'exit 0' };
      }
      const code = m?.[1] ?? 'none';
      if (code === 'INTERNAL' || code === 'none') return { i, name: kase.name, args: label, outcome: 'foreign', detail: `exit ${o.code}: ${o.stderr.slice(-300)}` };
      if (['USAGE', 'NOT_A_FILE', 'SAME_FILE'].includes(code) !== (o.code === 2)) return { i, name: kase.name, args: label, outcome: 'wrong-code', detail: `${code} with exit ${o.code}` };
      if (expectOk) return { i, name: kase.name, args: label, outcome: 'wrong-result', detail: `exit ${o.code}: ${o.stderr.slice(-300)}` };
      if (!anyCode && !codes.includes(code)) return { i, name: kase.name, args: label, outcome: 'wrong-code', detail: `${code}, expected ${codes.join('|')}: ${o.stderr.slice(-200)}` };
      return { i, name: kase.name, args: label, outcome: `error:${code}` };
    }
    if (error !== undefined) {
      if (error instanceof CallerError) return { i, name: kase.name, args: label, outcome: 'caller' };
      if (!(error instanceof lib.SnapshotError)) {
        return { i, name: kase.name, args: label, outcome: 'foreign', detail: `${(error as Error)?.constructor?.name}: ${(error as Error)?.message?.slice(0, 300)}` };
      }
      if (expectOk) return { i, name: kase.name, args: label, outcome: 'wrong-result', detail: `${error.code}: ${error.message.slice(0, 300)}` };
      if (!anyCode && !codes.includes(error.code)) {
        return { i, name: kase.name, args: label, outcome: 'wrong-code', detail: `${error.code}, expected ${codes.join('|')}: ${error.message.slice(0, 300)}` };
      }
      return { i, name: kase.name, args: label, outcome: `error:${error.code}` };
    }
    if (!expectOk) return { i, name: kase.name, args: label, outcome: 'silent', detail: 'returned normally' };
    const bad = kase.check ? await kase.check(result, args, fx) : undefined;
    if (bad) return { i, name: kase.name, args: label, outcome: 'wrong-result', detail: bad };
    return { i, name: kase.name, args: label, outcome: 'ok' };
  } catch (err) {
    // building the arguments failed: a fixture bug is a foreign error too
    return { i, name: kase.name, args: label, outcome: 'foreign', detail: `fixture: ${(err as Error)?.stack?.slice(0, 400)}` };
  } finally {
    fx.closeAll();
  }
}

// ---- child: runs cases [from, to), one line per case start and end ----

async function child(seed: number, from: number, to: number, only: string | undefined): Promise<void> {
  lib = require(path.join(root, 'dist', 'lib', 'index.js')) as Lib;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-fuzz-api-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  // A case's stray promise rejection must not end the batch.
  process.on('unhandledRejection', () => {});
  for (let i = from; i < to; i++) {
    fs.writeSync(1, `BEGIN ${i}\n`);
    const res = await runCase(seed, i, only, dir);
    fs.writeSync(1, `END ${JSON.stringify(res)}\n`);
  }
  process.exit(0);
}

// ---- parent ----

function runBatch(seed: number, from: number, to: number, only: string | undefined, stallMs: number): Promise<{ results: Result[]; next: number }> {
  return new Promise((resolve) => {
    const args = [path.join(root, 'dist', 'scripts', 'fuzz-api.js'), '--child', String(seed), String(from), String(to), ...(only ? ['--only', only] : [])];
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const results: Result[] = [];
    let current = -1;
    let buf = '';
    let stderr = '';
    let hung = false;
    let timer = setTimeout(onStall, stallMs);
    function onStall(): void {
      hung = true;
      p.kill('SIGKILL');
    }
    p.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith('BEGIN ')) {
          current = Number(line.slice(6));
          clearTimeout(timer);
          timer = setTimeout(onStall, stallMs);
        } else if (line.startsWith('END ')) {
          results.push(JSON.parse(line.slice(4)) as Result);
          current = -1;
        }
      }
    });
    p.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      const done = results.length ? results[results.length - 1]!.i + 1 : from;
      if (current >= 0) {
        results.push({
          i: current, name: '?', args: describeCase(seed, current, only),
          outcome: hung ? 'hang' : 'crash', detail: hung ? `no progress in ${stallMs} ms` : `exit ${code} signal ${signal}: ${stderr.slice(-600)}`,
        });
        resolve({ results, next: current + 1 });
      } else if (done < to) {
        results.push({ i: done, name: '?', args: describeCase(seed, done, only), outcome: 'crash', detail: `child exited (${code}, ${signal}) between cases: ${stderr.slice(-600)}` });
        resolve({ results, next: done + 1 });
      } else {
        resolve({ results, next: to });
      }
    });
  });
}

function describeCase(seed: number, i: number, only: string | undefined): string {
  const r = caseRng(seed, i);
  const pool = only ? ALL.filter((x) => x.name === only) : ALL;
  return pool[Math.floor(r() * pool.length)]!.name;
}

export interface FuzzSummary {
  cases: number;
  counts: Record<string, number>;
  failures: Result[];
  table: Map<string, Record<string, number>>;
}

export async function fuzzApi(opts: { cases: number; seed: number; batch?: number; only?: string; stallMs?: number; jobs?: number }): Promise<FuzzSummary> {
  const batch = opts.batch ?? 25;
  const stallMs = opts.stallMs ?? 30_000;
  const all: Result[] = [];
  const ranges: [number, number][] = [];
  for (let i = 0; i < opts.cases; i += batch) ranges.push([i, Math.min(opts.cases, i + batch)]);
  const jobs = opts.jobs ?? Math.max(1, Math.min(2, os.availableParallelism()));
  let k = 0;
  await Promise.all(Array.from({ length: jobs }, async () => {
    while (k < ranges.length) {
      let [from, to] = ranges[k++]!;
      while (from < to) {
        const r = await runBatch(opts.seed, from, to, opts.only, stallMs);
        all.push(...r.results);
        from = r.next;
      }
    }
  }));
  all.sort((a, b) => a.i - b.i);
  const counts: Record<string, number> = {};
  const table = new Map<string, Record<string, number>>();
  for (const r of all) {
    const key = r.outcome.startsWith('error:') ? 'error' : r.outcome;
    counts[key] = (counts[key] ?? 0) + 1;
    const row = table.get(r.name) ?? {};
    row[key] = (row[key] ?? 0) + 1;
    table.set(r.name, row);
  }
  return { cases: all.length, counts, failures: all.filter((r) => FAILING.includes(r.outcome)), table };
}

function printSummary(s: FuzzSummary, seed: number): void {
  const cols = ['ok', 'error', 'caller', ...FAILING];
  const names = [...s.table.keys()].sort();
  const w = Math.max(...names.map((n) => n.length), 10);
  console.log(`fuzz:api seed ${seed}, ${s.cases} cases`);
  console.log('entry point'.padEnd(w) + cols.map((c2) => c2.padStart(13)).join(''));
  for (const n of names) console.log(n.padEnd(w) + cols.map((c2) => String(s.table.get(n)![c2] ?? 0).padStart(13)).join(''));
  console.log('total'.padEnd(w) + cols.map((c2) => String(s.counts[c2] ?? 0).padStart(13)).join(''));
  for (const f of s.failures.slice(0, 50)) console.log(`  #${f.i} ${f.outcome}: ${f.args}\n      ${f.detail ?? ''}`);
  if (s.failures.length > 50) console.log(`  ... ${s.failures.length - 50} more`);
}

function arg(name: string, dflt: number): number {
  const k = process.argv.indexOf(name);
  return k >= 0 ? Number(process.argv[k + 1]) : dflt;
}

if (require.main === module) {
  if (process.argv[2] === '--child') {
    const k = process.argv.indexOf('--only');
    void child(Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5]), k >= 0 ? process.argv[k + 1] : undefined);
  } else {
    const seed = arg('--seed', 1);
    const k = process.argv.indexOf('--only');
    void fuzzApi({ cases: arg('--cases', 2000), seed, batch: arg('--batch', 25), only: k >= 0 ? process.argv[k + 1] : undefined }).then((s) => {
      printSummary(s, seed);
      console.log(s.failures.length === 0 ? 'PASS: no crash, hang, silent acceptance or foreign error' : `FAIL: ${s.failures.length} case(s)`);
      process.exitCode = s.failures.length === 0 ? 0 : 1;
    });
  }
}
