// What every command shares: output mode (JSON / human, colours, progress), errors and exit
// codes, opening stores, formatting numbers, and argument parsers.
import * as fs from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import Table from 'cli-table3';
import pc from 'picocolors';
import { SnapshotError } from '../../core/errors';
import { Remote } from '../../store/remote';
import { Store } from '../../store/store';
import { CHUNK_SIZE } from '../../core/native';
import { MAX_REGION_BYTES } from '../region';

export const EXIT_OK = 0;
export const EXIT_FAIL = 1;
export const EXIT_USAGE = 2;

/** An error raised by the CLI itself (not the library), with a stable code. */
export class CliError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly hint?: string,
    readonly exitCode: number = EXIT_FAIL,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export interface Ctx {
  json: boolean;
  debug: boolean;
  /** Colours: on a TTY (not TERM=dumb) unless NO_COLOR or --no-color; FORCE_COLOR (not 0) turns them on anywhere; never with --json. */
  color: boolean;
  /** Progress bars on stderr (a TTY, not --json). */
  progress: boolean;
  c: ReturnType<typeof pc.createColors>;
  /** --key-file: the remote's encryption key (32 bytes, raw or as 64 hex digits). */
  keyFile?: string;
}

/** The output context of a command, from its (and the program's) options. */
export function ctxOf(cmd: Command): Ctx {
  const o = cmd.optsWithGlobals() as { json?: boolean; debug?: boolean; color?: boolean; keyFile?: string };
  const json = !!o.json;
  const force = process.env.FORCE_COLOR;
  const forced = force === undefined ? undefined : force !== '0' && force !== 'false';
  const color = !json && o.color !== false && (forced ?? (!!process.stdout.isTTY && !process.env.NO_COLOR && process.env.TERM !== 'dumb'));
  return {
    json,
    debug: !!o.debug,
    color,
    progress: !json && !!process.stderr.isTTY && process.env.TERM !== 'dumb',
    c: pc.createColors(color),
    ...(o.keyFile ? { keyFile: o.keyFile } : {}),
  };
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function print(line = ''): void {
  process.stdout.write(line + '\n');
}

/** A borderless, aligned table (like `ps`): headings, then rows. `align` per column, 'l' or 'r'. */
export function table(ctx: Ctx, head: string[], rows: (string | number)[][], align?: ('l' | 'r')[]): string {
  const t = new Table({
    head: head.map((h) => ctx.c.bold(h)),
    chars: {
      top: '', 'top-mid': '', 'top-left': '', 'top-right': '',
      bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
      left: '', 'left-mid': '', mid: '', 'mid-mid': '',
      right: '', 'right-mid': '', middle: '  ',
    },
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0 },
    colAligns: (align ?? head.map(() => 'l' as const)).map((a) => (a === 'r' ? 'right' : 'left')),
  });
  for (const r of rows) t.push(r.map(String));
  return t
    .toString()
    .split('\n')
    .map((l) => l.trimEnd())
    .join('\n');
}

/** Key/value lines, keys padded to one width. */
export function keyValues(ctx: Ctx, pairs: [string, string | number][]): string {
  const w = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${ctx.c.dim((k + ':').padEnd(w + 1))} ${v}`).join('\n');
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${UNITS[u]}`;
}

export function formatRatio(r: number | null): string {
  return r === null ? '-' : `${r.toFixed(2)}x`;
}

/** Local time, to the second: 2025-11-23 15:29:03. */
export function formatTime(d: Date): string {
  const p = (x: number) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** x / y, or null when y is 0. Rounded to 4 decimals for stable JSON. */
export function ratio(x: number, y: number): number | null {
  return y > 0 ? Math.round((x / y) * 1e4) / 1e4 : null;
}

/** A snapshot named on the command line: a store's id, or `latest` (the newest complete one). */
export type SnapshotRef = number | 'latest';

/** A snapshot argument: a store's id or `latest`, or a remote's 32-hex-digit id. */
export function parseSnapshotRef(value: string): SnapshotRef | string {
  return /^[0-9a-f]{32}$/.test(value) ? value : parseSnapshotId(value);
}

/** The id `ref` as the source named by `where` (a store file or an s3:// URL) spells it. */
export function snapshotRefFor(where: string, ref: SnapshotRef | string): SnapshotRef | string {
  const remoteId = typeof ref === 'string' && ref !== 'latest';
  if (isRemoteUrl(where) !== remoteId) {
    throw new CliError('USAGE', `"${ref}" is not a snapshot id of ${where}`, isRemoteUrl(where) ? 'Remote ids are 32 hex digits: `usnap list <url>`.' : 'Store ids are integers, or latest: `usnap list <store>`.', EXIT_USAGE);
  }
  return ref;
}

/** commander argument parser for snapshot ids (or `latest`). */
export function parseSnapshotId(value: string): SnapshotRef {
  if (value === 'latest') return value;
  if (!/^[1-9][0-9]*$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError(`snapshot ids are positive integers or "latest" (see \`usnap list <store>\`), not "${value}".`);
  }
  return Number(value);
}

/** The id a SnapshotRef names in `store`; NOT_FOUND for `latest` of an empty store. */
export function resolveSnapshot(store: Store, ref: SnapshotRef): number {
  if (ref !== 'latest') return ref;
  const info = store.latest();
  if (!info) throw new SnapshotError('NOT_FOUND', `${store.path} holds no complete snapshot`, { hint: 'Take a snapshot first; `usnap list <store>` shows what is there.' });
  return info.id;
}

/** Region sizes for `bench --size`: a multiple of 64 KiB, at most the largest region. */
export function parseRegionSize(value: string): number {
  const n = parseSize(value);
  if (n % CHUNK_SIZE !== 0) throw new InvalidArgumentError(`size "${value}" (${n} bytes) is not a multiple of 64 KiB.`);
  if (n > MAX_REGION_BYTES) throw new InvalidArgumentError(`size "${value}" is larger than the largest region (${formatBytes(MAX_REGION_BYTES)} with Node.js ${process.version}).`);
  return n;
}

export function parseCount(value: string): number {
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError(`expected a non-negative integer, not "${value}".`);
  }
  return Number(value);
}

/** Sizes with an optional binary unit: 4096, 64K, 256M, 1G, 1.5G, 256MiB. */
export function parseSize(value: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(?:i?[bB])?$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError(`expected a size like 4096, 64K, 256M or 1G, not "${value}".`);
  const mult = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const n = Math.round(Number(m[1]) * mult);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`size "${value}" is out of range.`);
  return n;
}

/**
 * Opens an existing store (never creates one: a typo must not leave an empty store behind).
 * Read-only unless `write`.
 */
export function openStore(file: string, opts: { write?: boolean } = {}): Store {
  try {
    return Store.open(file, { readonly: !opts.write, create: false });
  } catch (err) {
    if (err instanceof SnapshotError && err.code === 'NOT_FOUND') {
      throw new SnapshotError('NOT_FOUND', `no store at ${file}`, { hint: 'Check the path; stores are created by Store.open() in your program.' });
    }
    throw err;
  }
}

/** Runs `fn` with the store open, closing it afterwards. */
export async function withStore<T>(file: string, opts: { write?: boolean }, fn: (store: Store) => T | Promise<T>): Promise<T> {
  const store = openStore(file, opts);
  try {
    return await fn(store);
  } finally {
    store.close();
  }
}

/** An s3:// URL names a remote (docs/remote.md); anything else is a store file. */
export function isRemoteUrl(s: string): boolean {
  return s.startsWith('s3://');
}

function readKey(file: string): Buffer {
  let raw: Buffer;
  try {
    raw = fs.readFileSync(file);
  } catch (err) {
    throw new CliError('IO', `cannot read the key file ${file}: ${(err as Error).message}`, 'Pass --key-file with a file holding the 32-byte key.');
  }
  const text = raw.toString('utf8').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (raw.length === 32) return raw;
  throw new CliError('USAGE', `${file} holds neither 32 bytes nor 64 hex digits`, 'Create one with: head -c 32 /dev/urandom > key', EXIT_USAGE);
}

/**
 * Runs `fn` with the remote open (endpoint and keys from AWS_ENDPOINT_URL, AWS_REGION,
 * AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or the SDK's other sources), closing it afterwards.
 */
export async function withRemote<T>(ctx: Ctx, url: string, opts: { createBucket?: boolean }, fn: (remote: Remote) => T | Promise<T>): Promise<T> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';  // not the CLI user's concern
  const remote = await Remote.open(url, { ...(ctx.keyFile ? { encryptionKey: readKey(ctx.keyFile) } : {}), ...(opts.createBucket ? { createBucket: true } : {}) });
  try {
    return await fn(remote);
  } finally {
    await remote.close();
  }
}

/** Help text appended to a command: a heading and example lines. */
export function examples(lines: [string, string][]): string {
  const w = Math.max(...lines.map(([cmd]) => cmd.length));
  return '\nExamples:\n' + lines.map(([cmd, what]) => `  $ ${cmd.padEnd(w)}  # ${what}`).join('\n') + '\n';
}

/**
 * Wraps a command action: builds the output context, runs it, and records its exit code.
 * commander calls actions with (...arguments, options, command).
 */
export function act<A extends unknown[]>(fn: (ctx: Ctx, ...args: A) => number | void | Promise<number | void>) {
  return async (...all: unknown[]): Promise<void> => {
    const cmd = all[all.length - 1] as Command;
    const code = await fn(ctxOf(cmd), ...(all.slice(0, -1) as A));
    if (typeof code === 'number' && code !== EXIT_OK) process.exitCode = code;
  };
}
