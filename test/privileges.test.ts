// The core flow without privileges. As root, each case re-runs node as nobody (setpriv);
// otherwise as the current user. /dev/userfaultfd is root-only and vm.unprivileged_userfaultfd
// is 0 by default, so an unprivileged process gets a UFFD_USER_MODE_ONLY descriptor: kernel-mode
// writes into protected pages then fail with EFAULT instead of trapping.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { root } from './helpers';
import { testingAddonPath } from './testing-addon';

const isRoot = process.getuid?.() === 0;
const hasSetpriv = isRoot && spawnSync('setpriv', ['--version']).status === 0;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-priv-'));
fs.chmodSync(work, 0o777);
// nobody must reach the checkout, wherever it was cloned (a 0700 mktemp directory, say):
// ancestors without search permission for others get it (search only, no listing) for the
// duration of this file, and get their mode back afterwards.
const restoredModes: [string, number][] = [];
if (hasSetpriv) {
  for (let dir = root; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const mode = fs.statSync(dir).mode & 0o7777;
    if (!(mode & 0o001)) {
      restoredModes.push([dir, mode]);
      fs.chmodSync(dir, mode | 0o001);
    }
  }
}
afterAll(() => {
  for (const [dir, mode] of restoredModes) fs.chmodSync(dir, mode);
  fs.rmSync(work, { recursive: true, force: true });
});

/** Runs `body` (JS, async allowed, `out(obj)` reports) as an unprivileged user. */
function runUnprivileged(body: string, timeout = 300_000): { result: Record<string, unknown>; stderr: string; status: number | null } {
  const file = path.join(work, `case-${Math.random().toString(36).slice(2)}.js`);
  fs.writeFileSync(
    file,
    `const lib = require(${JSON.stringify(path.join(root, 'dist', 'lib', 'index.js'))});
const fs = require('fs'), path = require('path');
const work = ${JSON.stringify(work)};
const out = (o) => process.stdout.write('RESULT ' + JSON.stringify(o) + '\\n');
(async () => { ${body} })().catch((e) => { out({ thrown: true, code: e.code, message: e.message, hint: e.hint }); });`,
  );
  fs.chmodSync(file, 0o644);
  const cmd = hasSetpriv ? 'setpriv' : process.execPath;
  const args = hasSetpriv ? ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, file] : [file];
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout, cwd: work });
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`no result (status ${r.status}, signal ${r.signal}):\n${r.stdout}\n${r.stderr}`);
  return { result: JSON.parse(line.slice(7)), stderr: r.stderr, status: r.status };
}

// Snapshot, lazy restore from a file store, a kernel-mode write into a protected page, and the
// unprotect() route for it; reports what it saw.
const CORE_FLOW = `
  const { Region, Store, probe } = lib;
  const p = probe();
  const file = path.join(work, 'core-' + process.pid + '.usnap');
  const store = Store.open(file);
  const r = Region.alloc(1 << 20, { store, name: 'heap' });
  const b = new Uint8Array(r.buffer);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7) & 255;
  const s1 = r.snapshot();
  const want1 = Buffer.from(b);
  const data = path.join(work, 'data-' + process.pid);
  fs.writeFileSync(data, Buffer.alloc(8192, 0xab));
  const fd = fs.openSync(data, 'r');
  let kernelWrite;
  try { kernelWrite = { bytes: fs.readSync(fd, b, 4096, 8192, 0) }; } catch (e) { kernelWrite = { code: e.code }; }
  const afterKernelWrite = b[4096];
  await s1.persisted;
  r.unprotect(4096, 8192);
  const viaUnprotect = fs.readSync(fd, b, 4096, 8192, 0);
  const s2 = r.snapshot();
  const want2 = Buffer.from(b);
  await s2.persisted;
  r.close();
  const r1 = Region.restore(store, { name: 'heap', snapshot: s1.id });
  await r1.ready;
  const ok1 = Buffer.from(new Uint8Array(r1.buffer)).equals(want1);
  r1.close();
  const r2 = Region.restore(store, { name: 'heap', snapshot: s2.id });
  await r2.ready;
  const ok2 = Buffer.from(new Uint8Array(r2.buffer)).equals(want2);
  const kernelWritesTrap = r2.kernelWritesTrap;
  r2.close();
  store.close();
  out({ uid: process.getuid(), privileged: p.privileged, route: p.route, supported: p.supported, kernelWrite,
        afterKernelWrite, viaUnprotect, ok1, ok2, kernelWritesTrap, verify: Store.open(file, { readonly: true }).verify().ok });
`;

describe('unprivileged', () => {
  it('user-mode-only userfaultfd: the core flow works; kernel writes fail with EFAULT and corrupt nothing', () => {
    const { result } = runUnprivileged(CORE_FLOW);
    if (hasSetpriv) expect(result.uid).toBe(65534);
    const knob = fs.readFileSync('/proc/sys/vm/unprivileged_userfaultfd', 'utf8').trim();
    if (hasSetpriv && knob === '0') expect(result.route).toBe('syscall-user-mode-only');
    if (result.route !== 'syscall-user-mode-only') return;  // a system that grants more: covered below
    expect(result).toMatchObject({
      supported: true,
      privileged: false,
      kernelWritesTrap: false,
      kernelWrite: { code: 'EFAULT' },  // not a silent short write, not a corrupt snapshot
      afterKernelWrite: (4096 * 7) & 255,  // the protected page was left untouched
      viaUnprotect: 8192,
      ok1: true,
      ok2: true,
      verify: true,
    });
  });

  it.skipIf(!hasSetpriv)('with no route at all, EPERM names vm.unprivileged_userfaultfd, /dev/userfaultfd and CAP_SYS_PTRACE', () => {
    const { result } = runUnprivileged(`
      const t = require(${JSON.stringify(testingAddonPath)});
      if (t.deny_userfaultfd() !== 0) throw new Error('seccomp failed');
      const p = lib.probe();
      try { lib.Region.alloc(1 << 20); out({ created: true }); }
      catch (e) { out({ code: e.code, message: e.message, hint: e.hint, supported: p.supported, reason: p.reason }); }
    `);
    expect(result.code).toBe('EPERM');
    expect(result.supported).toBe(false);
    expect(result.hint).toMatch(/vm\.unprivileged_userfaultfd/);
    expect(result.hint).toMatch(/\/dev\/userfaultfd/);
    expect(result.hint).toMatch(/CAP_SYS_PTRACE/);
  });

  it.skipIf(!hasSetpriv)('with vm.unprivileged_userfaultfd=1 (set for this test, then restored) kernel writes trap and are saved', () => {
    const knob = '/proc/sys/vm/unprivileged_userfaultfd';
    const old = fs.readFileSync(knob, 'utf8').trim();
    let result: Record<string, unknown>;
    try {
      fs.writeFileSync(knob, '1');
      result = runUnprivileged(CORE_FLOW).result;
    } finally {
      fs.writeFileSync(knob, old);
    }
    expect(fs.readFileSync(knob, 'utf8').trim()).toBe(old);
    expect(result).toMatchObject({
      uid: 65534,
      privileged: true,
      route: 'syscall',
      kernelWritesTrap: true,
      kernelWrite: { bytes: 8192 },  // trapped, captured for s1, then let through
      afterKernelWrite: 0xab,
      ok1: true,
      ok2: true,
      verify: true,
    });
  });
});
