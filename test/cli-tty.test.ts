// The CLI on a real terminal: `usnap verify` and `usnap restore` in a pseudo-terminal (python3's
// pty module, test/run-in-pty.py) show a progress bar and colours; piped they show neither. NO_COLOR
// drops the colours but keeps the bar; FORCE_COLOR colours piped output but draws no bar.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Region, Store } from '../lib/index';
import { fillPattern, root, tmpDir } from './helpers';

const CLI = path.join(root, 'dist', 'lib', 'cli', 'main.js');
const PTY = path.join(__dirname, 'run-in-pty.py');
const CHUNK = 64 * 1024;

// eslint-disable-next-line no-control-regex
const SGR = /\x1b\[[0-9;]*m/;  // a colour (Select Graphic Rendition)
const GREEN_OK = '\x1b[32mok';
// eslint-disable-next-line no-control-regex
const ESC = /\x1b/;

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, TERM: 'xterm-256color', ...extra };
  for (const k of ['NO_COLOR', 'FORCE_COLOR', 'CI']) if (!(k in extra)) delete e[k];
  return e;
}

/** usnap in a pseudo-terminal: stdout and stderr both go to the terminal. */
function onTerminal(args: string[], extra?: Record<string, string>) {
  const r = spawnSync('python3', [PTY, process.execPath, CLI, ...args], { env: env(extra), encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { status: r.status, out: r.stdout, err: r.stderr };
}

/** usnap with stdout and stderr piped. */
function piped(args: string[], extra?: Record<string, string>) {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: env(extra), encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

/** A cli-progress bar titled `title`: its bar characters and a percentage. */
function expectBar(out: string, title: string): void {
  expect(out).toMatch(new RegExp(`${title}\\s+\\S*[\\u2588\\u2591]+\\S* \\d+% \\| \\d+/\\d+ chunks`));
}

let dir: string;
let file: string;
let want: string;

beforeAll(async () => {
  dir = tmpDir('usnap-tty-');
  file = path.join(dir, 'state.usnap');
  const store = Store.open(file);
  const region = Region.alloc(16 << 20, { store, name: 'heap' });
  const b = new Uint8Array(region.buffer);
  fillPattern(b, 1, 0, 64 * CHUNK);
  const s = region.snapshot();
  await s.persisted;
  want = createHash('sha256').update(b).digest('hex');
  region.close();
  store.close();
  return () => fs.rmSync(dir, { recursive: true, force: true });
});

describe('usnap verify', () => {
  it('on a terminal: a progress bar and a green ok', () => {
    const r = onTerminal(['verify', file]);
    expect(r.status, r.out).toBe(0);
    expectBar(r.out, 'verifying');
    expect(r.out).toContain(GREEN_OK);
  });

  it('piped: plain text, no escape sequence at all', () => {
    const r = piped(['verify', file]);
    expect(r.status, r.err).toBe(0);
    expect(r.out).toMatch(/^ok: 1 snapshot\(s\), \d+ stored chunks, every checksum matches\n$/);
    expect(r.out + r.err).not.toMatch(ESC);
    expect(r.err).toBe('');
  });

  it('NO_COLOR on a terminal: the bar stays, the colours go', () => {
    const r = onTerminal(['verify', file], { NO_COLOR: '1' });
    expect(r.status, r.out).toBe(0);
    expectBar(r.out, 'verifying');
    expect(r.out).not.toMatch(SGR);
  });

  it('FORCE_COLOR piped: colours on stdout, no bar on stderr', () => {
    const r = piped(['verify', file], { FORCE_COLOR: '1' });
    expect(r.status, r.err).toBe(0);
    expect(r.out).toContain(GREEN_OK);
    expect(r.err).toBe('');
    expect(piped(['verify', file], { FORCE_COLOR: '0' }).out).not.toMatch(ESC);
  });
});

describe('usnap restore', () => {
  it('on a terminal: restoring and verifying bars, a green verify line, the image byte-exact', () => {
    const out = path.join(dir, 'tty.bin');
    const r = onTerminal(['restore', file, '1', '-o', out, '--verify']);
    expect(r.status, r.out).toBe(0);
    expectBar(r.out, 'restoring');
    expectBar(r.out, 'verifying');
    expect(r.out).toContain('\x1b[32mok: every chunk matches the store');
    expect(createHash('sha256').update(fs.readFileSync(out)).digest('hex')).toBe(want);
  });

  it('piped: plain text, no escape sequence at all, the same image', () => {
    const out = path.join(dir, 'piped.bin');
    const r = piped(['restore', file, '1', '-o', out, '--verify']);
    expect(r.status, r.err).toBe(0);
    expect(r.out).toContain('ok: every chunk matches the store');
    expect(r.out).toMatch(new RegExp(`^sha256: +${want}$`, 'm'));
    expect(r.out + r.err).not.toMatch(ESC);
    expect(r.err).toBe('');
    expect(createHash('sha256').update(fs.readFileSync(out)).digest('hex')).toBe(want);
  });
});
