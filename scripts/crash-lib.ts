// One round of the crash experiment: start scripts/crash-child, SIGKILL it at a random moment,
// then check the store the way a user would find it. Used by test/crash.test.ts and
// scripts/crash-soak.ts.
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { Region, Store } from '../lib/index';
import { packageRoot } from '../core/native';
import { imageAt } from './workload';

export interface CrashConfig {
  file: string;
  sizeMiB: number;
  perStep: number;
  /** The kill lands uniformly in [minDelayMs, maxDelayMs] after the child started. */
  minDelayMs: number;
  maxDelayMs: number;
  /** Also check this many other complete snapshots byte-exact (besides the last reported). */
  extraChecks: number;
  /** Start the kill delay at the child's first persisted report instead of at its start. */
  afterFirstPersisted?: boolean;
  random: () => number;
}

export interface Reported {
  id: number;
  seed: number;
  step: number;
}

export interface RoundResult {
  delayMs: number;
  reportedThisRound: number;
  lastReported: Reported | undefined;
  snapshots: number;
  checked: number[];
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function fail(msg: string): never {
  throw new Error(`crash round: ${msg}`);
}

/** Runs the child until the kill; resolves with what it reported. */
function runChild(cfg: CrashConfig, seed: number, delayMs: number): Promise<{ reported: Reported[]; stderr: string; signal: string | null }> {
  const child = spawn(
    process.execPath,
    [path.join(packageRoot, 'dist', 'scripts', 'crash-child.js'), cfg.file, String(seed), String(cfg.sizeMiB), String(cfg.perStep)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const reported: Reported[] = [];
  let out = '', stderr = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    out += d;
    let nl;
    while ((nl = out.indexOf('\n')) >= 0) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      const m = /^persisted (\d+) (\d+) (\d+)$/.exec(line);
      if (m) {
        reported.push({ id: Number(m[1]), seed: Number(m[2]), step: Number(m[3]) });
        if (reported.length === 1 && cfg.afterFirstPersisted) timer = setTimeout(() => child.kill('SIGKILL'), delayMs);
      }
    }
  });
  child.stderr.on('data', (d: string) => (stderr += d));
  let timer = cfg.afterFirstPersisted ? undefined : setTimeout(() => child.kill('SIGKILL'), delayMs);
  return new Promise((resolve) => {
    child.on('close', (_code, signal) => {
      clearTimeout(timer);
      resolve({ reported, stderr, signal });
    });
  });
}

export async function crashRound(cfg: CrashConfig, round: number, last: Reported | undefined): Promise<RoundResult> {
  const seed = round + 1;
  const delayMs = Math.round(cfg.minDelayMs + cfg.random() * (cfg.maxDelayMs - cfg.minDelayMs));
  const run = await runChild(cfg, seed, delayMs);
  if (run.signal !== 'SIGKILL') fail(`child ended by itself (signal ${run.signal}): ${run.stderr}`);
  const lastReported = run.reported.length ? run.reported[run.reported.length - 1] : last;
  const size = cfg.sizeMiB << 20;

  // A reader first, as another process would see the store right after the crash.
  const reader = Store.open(cfg.file, { readonly: true });
  const seen = reader.list().map((s) => s.id);
  if (lastReported && !seen.includes(lastReported.id)) fail(`read-only open does not list snapshot ${lastReported.id}, reported persisted`);
  reader.close();

  const store = Store.open(cfg.file);
  try {
    const all = store.list({ all: true });
    const incomplete = all.filter((s) => !s.complete).map((s) => s.id);
    if (incomplete.length) fail(`incomplete snapshots visible after open: ${incomplete.join(', ')}`);
    const v = store.verify();
    if (!v.ok) fail(`verify: ${v.problems.map((p) => p.message).join('; ')}`);
    const toCheck: Reported[] = [];
    if (lastReported) {
      if (!all.some((s) => s.id === lastReported.id)) fail(`snapshot ${lastReported.id}, reported persisted, is gone`);
      toCheck.push(lastReported);
    }
    const others = all.filter((s) => s.id !== lastReported?.id && s.region === 'crash');
    for (let i = 0; i < cfg.extraChecks && others.length; i++) {
      const s = others.splice(Math.floor(cfg.random() * others.length), 1)[0]!;
      const [sd, st] = (s.label ?? '').split(':').map(Number);
      toCheck.push({ id: s.id, seed: sd!, step: st! });
    }
    for (const r of toCheck) {
      const region = Region.restore(store, { name: 'crash', snapshot: r.id });
      try {
        const d = firstDiff(new Uint8Array(region.buffer), imageAt(r.seed, r.step, size, cfg.perStep));
        if (d !== -1) fail(`snapshot ${r.id} (seed ${r.seed} step ${r.step}) differs at byte ${d}`);
      } finally {
        region.close();
      }
    }
    return { delayMs, reportedThisRound: run.reported.length, lastReported, snapshots: all.length, checked: toCheck.map((r) => r.id) };
  } finally {
    store.close();
  }
}
