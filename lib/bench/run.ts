// `usnap bench`: runs every scenario in a fresh Node process (scenario.js), takes min and median
// over the runs, and puts ours next to the baselines measured in the same run.
import { execFileSync, fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Table from 'cli-table3';
import pc from 'picocolors';
import { packageRoot } from '../../core/native';
import {
  LOWER_IS_BETTER,
  METRICS,
  REMOTE_METRICS,
  UNITS,
  type BaselineName,
  type BenchBaseline,
  type BenchMachine,
  type BenchMode,
  type BenchReport,
  type BenchResult,
  type MetricId,
  type SampleRow,
  type ScenarioMessage,
  type ScenarioName,
  type ScenarioTask,
} from './types';

export type { BenchReport, BenchResult, BenchBaseline, BenchMachine, BenchMode, MetricId, BaselineName } from './types';
export { METRICS, REMOTE_METRICS, LOWER_IS_BETTER, UNITS } from './types';

export interface BenchOptions {
  mode: 'quick' | 'default' | 'full';
  /** Region size in bytes (multiple of 64 KiB) for every scenario; default depends on the mode. */
  size?: number;
  /** A directory to write report.json, report.md and pause.svg into. */
  out?: string;
  /** The caller prints JSON: progress (if any) goes to stderr only. */
  json: boolean;
  /** Show progress on stderr (a bar on a terminal, one line per scenario otherwise). */
  progress: boolean;
  /**
   * The remote rows (an S3 server: USNAP_BENCH_S3_ENV or USNAP_TEST_S3_ENV names the env file
   * of a running one, else scripts/s3-server.sh starts one): 'with' the others, or 'only' them.
   */
  remote?: 'with' | 'only';
  /** Run only the scenarios with these names (with their baselines), e.g. ['continuous']. */
  only?: string[];
}

const MiB = 1 << 20;
/** capture_amplification spreads 32 runs of 256 KiB over the region: at least 16 MiB, whatever --size says. */
const CAPTURE_MIN_SIZE = 16 * MiB;
/** The two metrics are named by these sizes, whatever the mode. */
const RESET_SIZES = [64 * MiB, 1024 * MiB];

interface Plan {
  quick: boolean;
  runs: number;
  /** Region sizes of the pause rows (the chart's x axis). */
  pauseSizes: number[];
  /** Size of every other scenario. */
  size: number;
  /** Size of the rollback scenario (256 MiB per issue 8, smaller in quick mode). */
  rollbackSize: number;
  /** Sizes of the restore rows (full mode adds 1 GiB, the size issue 9 names). */
  restoreSizes: number[];
  remote?: { only: boolean; s3env: string };
  /** Size of the continuous-checkpointing loop (1 GiB per issue 14, 256 MiB in quick mode). */
  continuousSize: number;
  /** reset_small_dirty and reset_small_dirty_1g. */
  resetSizes: number[];
}

function plan(mode: BenchMode, size?: number): Plan {
  const base: Plan =
    mode === 'quick'
      ? { quick: true, runs: 3, pauseSizes: [16 * MiB, 64 * MiB], size: 32 * MiB, rollbackSize: 32 * MiB, restoreSizes: [32 * MiB], continuousSize: 256 * MiB, resetSizes: RESET_SIZES }
      : mode === 'full'
        ? {
            quick: false,
            runs: 7,
            pauseSizes: [64 * MiB, 256 * MiB, 1024 * MiB, 2048 * MiB],
            size: 256 * MiB,
            rollbackSize: 256 * MiB,
            restoreSizes: [256 * MiB, 1024 * MiB],
            continuousSize: 1024 * MiB,
            resetSizes: RESET_SIZES,
          }
        : { quick: false, runs: 5, pauseSizes: [64 * MiB, 256 * MiB, 1024 * MiB], size: 256 * MiB, rollbackSize: 256 * MiB, restoreSizes: [256 * MiB], continuousSize: 1024 * MiB, resetSizes: RESET_SIZES };
  if (size !== undefined) {
    if (!Number.isSafeInteger(size) || size <= 0 || size % 65536 !== 0) throw new RangeError(`size must be a positive multiple of 64 KiB (got ${size})`);
    return { ...base, pauseSizes: [size], size, rollbackSize: size, restoreSizes: [size], continuousSize: size };
  }
  return base;
}

function tasks(p: Plan, tmpDir: string): ScenarioTask[] {
  const t = (scenario: ScenarioName, size: number, pauseMode = false, hugePages = false): ScenarioTask => ({
    scenario,
    size,
    runs: p.runs,
    tmpDir,
    quick: p.quick,
    pauseMode,
    hugePages,
  });
  const out: ScenarioTask[] = [];
  if (p.remote) out.push({ ...t('remote', p.size), s3env: p.remote.s3env });
  if (p.remote?.only) return out;
  for (const s of p.pauseSizes) out.push(t('pause', s), t('pause_baselines', s));
  out.push(
    t('write_overhead', p.size),
    t('write_overhead_baselines', p.size),
    t('persist', p.size),
    t('persist_baselines', p.size),
    ...p.restoreSizes.flatMap((s) => [t('restore', s), t('restore_baselines', s)]),
    t('rollback', p.rollbackSize),
    t('rollback_baselines', p.rollbackSize),
    t('peak_memory', p.size),
    t('peak_memory_baselines', p.size),
    // Pause mode: the baselines above already hold the figures these are compared with.
    t('pause', p.pauseSizes[p.pauseSizes.length - 1]!, true),
    t('write_overhead', p.size, true),
    t('rollback', p.rollbackSize, true),
    t('pause', p.pauseSizes[p.pauseSizes.length - 1]!, false, true),
    t('first_work', p.size),
    t('clones', p.size),
    t('continuous', p.continuousSize),
    t('continuous_baselines', p.continuousSize),
    t('capture', Math.max(p.size, CAPTURE_MIN_SIZE)),
    ...p.resetSizes.flatMap((s) => [t('reset_small', s), t('reset_small_baselines', s)]),
  );
  return out;
}

export function machineInfo(): BenchMachine {
  let cpu = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpu = m[1]!.trim();
  } catch {
    // keep os.cpus()
  }
  return { kernel: os.release(), cpu, cores: os.availableParallelism?.() ?? os.cpus().length, node: process.version };
}

function scenarioEntry(): string {
  const here = path.join(__dirname, 'scenario.js');
  if (fs.existsSync(here)) return here;
  // Loaded from the TypeScript sources (tests): use the compiled entry.
  const compiled = path.join(__dirname, '..', '..', 'dist', 'lib', 'bench', 'scenario.js');
  if (fs.existsSync(compiled)) return compiled;
  throw new Error(`uffd-snapshot bench: ${here} is missing; build with \`npx tsc -p tsconfig.json\``);
}

const SCENARIO_TIMEOUT_MS = 15 * 60_000;

/** Runs one scenario in a fresh process; resolves with its sample rows. */
function runScenario(entry: string, task: ScenarioTask): Promise<SampleRow[]> {
  return new Promise((resolve, reject) => {
    const child = fork(entry, [JSON.stringify(task)], {
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    let output = '';
    const keep = (d: Buffer): void => {
      output = (output + d.toString()).slice(-8000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    let msg: ScenarioMessage | undefined;
    child.on('message', (m) => {
      msg = m as ScenarioMessage;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, SCENARIO_TIMEOUT_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (msg?.ok) return resolve(msg.rows);
      const why = msg && !msg.ok ? msg.error
        : timedOut ? `timed out after ${SCENARIO_TIMEOUT_MS / 60_000} min (a machine where page faults are slow needs a smaller --size)`
          : signal ? `killed by ${signal}` : `exited with code ${code}`;
      reject(new Error(`bench scenario ${task.scenario} (size ${task.size}) failed: ${why}\n${output.trim()}`));
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[n >> 1]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

function figure(xs: number[]): { min: number; median: number } {
  if (xs.length === 0 || !xs.every(Number.isFinite)) throw new Error(`bench: non-finite or missing samples ${JSON.stringify(xs)}`);
  return { min: Math.min(...xs), median: median(xs) };
}

/**
 * ratio > 1 means ours is better by that factor, computed from the medians:
 * lower-is-better metrics (times, memory, stored size): baseline / ours;
 * higher-is-better metrics (throughputs, resets/s): ours / baseline.
 */
export function ratioOf(metric: MetricId, oursMedian: number, baselineMedian: number): number {
  return LOWER_IS_BETTER[metric] ? baselineMedian / oursMedian : oursMedian / baselineMedian;
}

/** Joins ours and the baselines of each (metric, size); "min" is the smallest number either way. */
function merge(rows: SampleRow[], required: readonly MetricId[]): BenchResult[] {
  const byKey = new Map<string, { metric: MetricId; size: number; ours: number[]; baselines: Map<BaselineName, number[]> }>();
  for (const r of rows) {
    const key = `${r.metric}@${r.size}`;
    let e = byKey.get(key);
    if (!e) byKey.set(key, (e = { metric: r.metric, size: r.size, ours: [], baselines: new Map() }));
    if (r.ours) e.ours.push(...r.ours);
    for (const b of r.baselines ?? []) e.baselines.set(b.name, [...(e.baselines.get(b.name) ?? []), ...b.samples]);
  }
  const out: BenchResult[] = [];
  for (const e of byKey.values()) {
    if (e.ours.length === 0 && /_pause_mode$|_huge_pages$/.test(e.metric)) continue;  // twin baselines at sizes the variant was not run at
    const ours = figure(e.ours);
    const baselines: BenchBaseline[] = [...e.baselines].map(([name, xs]) => {
      const f = figure(xs);
      return { name, min: f.min, median: f.median, ratio: ratioOf(e.metric, ours.median, f.median) };
    });
    out.push({ metric: e.metric, unit: UNITS[e.metric], size: e.size, ours, baselines });
  }
  const order: readonly MetricId[] = [...METRICS, ...REMOTE_METRICS];
  out.sort((a, b) => order.indexOf(a.metric) - order.indexOf(b.metric) || a.size - b.size);
  for (const m of required) if (!out.some((r) => r.metric === m)) throw new Error(`bench: no result for ${m}`);
  return out;
}

interface Progress {
  start(task: ScenarioTask, i: number, n: number): void;
  done(task: ScenarioTask, ms: number): void;
  stop(): void;
}

function progressReporter(enabled: boolean, total: number): Progress {
  const none: Progress = { start() {}, done() {}, stop() {} };
  if (!enabled) return none;
  const label = (t: ScenarioTask): string => `${t.scenario} ${fmtSize(t.size)}`;
  if (process.stderr.isTTY) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const cliProgress = require('cli-progress') as typeof import('cli-progress');
    const bar = new cliProgress.SingleBar(
      { format: 'bench [{bar}] {value}/{total} {scenario}  {duration_formatted}', stream: process.stderr, hideCursor: true, clearOnComplete: true },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { scenario: '' });
    return {
      start: (t) => bar.update({ scenario: label(t) }),
      done: () => bar.increment(),
      stop: () => bar.stop(),
    };
  }
  return {
    start: (t, i, n) => process.stderr.write(`bench ${i + 1}/${n} ${label(t)} ...`),
    done: (_t, ms) => process.stderr.write(` ${(ms / 1000).toFixed(1)} s\n`),
    stop() {},
  };
}

/** Runs the benchmark; with opts.out also writes report.json, report.md and pause.svg there. */
export async function runBench(opts: BenchOptions): Promise<BenchReport> {
  if (!['quick', 'default', 'full'].includes(opts.mode)) throw new RangeError(`mode must be quick, default or full (got ${opts.mode})`);
  const p = plan(opts.mode, opts.size);
  const entry = scenarioEntry();
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-bench-'));
  let stopS3 = (): void => {};
  if (opts.remote) {
    let s3env = process.env.USNAP_BENCH_S3_ENV ?? process.env.USNAP_TEST_S3_ENV;
    if (!s3env) {
      const script = path.join(packageRoot, 'scripts', 's3-server.sh');
      const env = path.join(tmpDir, 's3.env');
      execFileSync(script, ['start', env], { stdio: ['ignore', 'ignore', 'inherit'] });
      stopS3 = () => execFileSync(script, ['stop', env], { stdio: ['ignore', 'ignore', 'inherit'] });
      s3env = env;
    }
    p.remote = { only: opts.remote === 'only', s3env };
  }
  const only = opts.only;
  const list = tasks(p, tmpDir).filter((t) => !only || only.some((o) => t.scenario === o || t.scenario === `${o}_baselines`));
  if (list.length === 0) throw new RangeError(`no scenario named ${only!.join(', ')}`);
  const prog = progressReporter(opts.progress, list.length);
  const rows: SampleRow[] = [];
  const date = new Date().toISOString();
  try {
    for (let i = 0; i < list.length; i++) {
      const t = list[i]!;
      prog.start(t, i, list.length);
      const t0 = Date.now();
      rows.push(...(await runScenario(entry, t)));
      prog.done(t, Date.now() - t0);
    }
  } finally {
    prog.stop();
    stopS3();
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }
  const required = opts.only ? [] : [...(opts.remote === 'only' ? [] : METRICS), ...(opts.remote ? REMOTE_METRICS : [])];
  const report: BenchReport = { machine: machineInfo(), mode: opts.mode, date, results: merge(rows, required) };
  if (opts.out) await writeOutputs(report, opts.out);
  return report;
}

// ---- formatting ----

export function fmtSize(bytes: number): string {
  if (bytes >= 1 << 30 && bytes % (1 << 30) === 0) return `${bytes / (1 << 30)} GiB`;
  if (bytes >= MiB) return `${+(bytes / MiB).toFixed(1)} MiB`;
  return `${+(bytes / 1024).toFixed(1)} KiB`;
}

function sig(x: number, digits = 3): string {
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 10 ** digits) return x.toFixed(0);
  return x.toPrecision(digits).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
}

/** A value in its unit, human-readable (B/s as MB/s or GB/s). */
export function fmtValue(unit: string, v: number): string {
  if (unit === 'B/s') return v >= 1e9 ? `${sig(v / 1e9)} GB/s` : `${sig(v / 1e6)} MB/s`;
  if (unit === 'ms') return v < 0.1 ? `${sig(v * 1e3)} us` : `${sig(v)} ms`;
  if (unit === 'us/page') return `${sig(v)} us`;
  if (unit === 'resets/s') return `${sig(v)}/s`;
  return sig(v);
}

function fmtRatio(r: number): string {
  return `${r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)}x`;
}

const HEAD = ['metric', 'size', 'ours min', 'ours median', 'baseline', 'base min', 'base median', 'ratio'];

function tableRows(report: BenchReport): string[][] {
  const out: string[][] = [];
  for (const r of report.results) {
    const first = [r.metric, fmtSize(r.size), fmtValue(r.unit, r.ours.min), fmtValue(r.unit, r.ours.median)];
    if (r.baselines.length === 0) out.push([...first, '-', '', '', '']);
    r.baselines.forEach((b, i) => {
      out.push([...(i === 0 ? first : ['', '', '', '']), b.name, fmtValue(r.unit, b.min), fmtValue(r.unit, b.median), fmtRatio(b.ratio)]);
    });
  }
  return out;
}

function machineLine(report: BenchReport): string {
  const m = report.machine;
  return `Linux ${m.kernel}, ${m.cpu}, ${m.cores} cores, Node ${m.node}; mode ${report.mode}, ${report.date}`;
}

/** The human table: ours min/median, each baseline and its ratio (> 1: ours is better). */
export function formatBenchReport(report: BenchReport): string {
  const table = new Table({ head: HEAD, style: { head: [], border: [], compact: true } });
  for (const row of tableRows(report)) {
    const r = row[7];
    if (r) {
      const v = parseFloat(r);
      row[7] = v >= 1 ? pc.green(r) : pc.red(r);
    }
    table.push(row);
  }
  return [
    machineLine(report),
    table.toString(),
    'ratio > 1: ours is better by that factor (times, memory, stored size: baseline/ours; throughputs: ours/baseline; medians).',
  ].join('\n');
}

/** The report as markdown: machine, then the results table. */
export function formatBenchMarkdown(report: BenchReport): string {
  const m = report.machine;
  const lines = [
    '# uffd-snapshot benchmark',
    '',
    `- kernel: ${m.kernel}`,
    `- CPU: ${m.cpu} (${m.cores} cores)`,
    `- node: ${m.node}`,
    `- mode: ${report.mode}`,
    `- date: ${report.date}`,
    '',
    `| ${HEAD.join(' | ')} |`,
    `| ${HEAD.map((_, i) => (i < 2 || i === 4 ? '---' : '---:')).join(' | ')} |`,
    ...tableRows(report).map((r) => `| ${r.join(' | ')} |`),
    '',
    'ratio > 1: ours is better by that factor (times, memory and stored size: baseline / ours; throughputs and rates: ours / baseline), from the medians.',
    '',
  ];
  return lines.join('\n');
}

const PAUSE_LABEL: Partial<Record<MetricId, string>> = {
  pause_full: 'full (first snapshot)',
  pause_incremental_1pct: '1% written',
  pause_incremental_10pct: '10% written',
  pause_incremental_100pct: '100% written',
};

/** Variant rows drawn as another series of ours in a panel. */
const VARIANT: Partial<Record<MetricId, { of: MetricId; series: string }>> = {
  pause_incremental_1pct_pause_mode: { of: 'pause_incremental_1pct', series: 'ours, pause mode' },
  pause_full_huge_pages: { of: 'pause_full', series: 'ours, huge pages' },
};

/** The vega-lite spec of the pause chart: median pause vs region size, one panel per dirty fraction. */
export function pauseChartSpec(report: BenchReport): object {
  const values: { panel: string; order: number; sizeMiB: number; series: string; ms: number }[] = [];
  for (const r of report.results) {
    const variant = VARIANT[r.metric];
    if (variant) {
      const order = Object.keys(PAUSE_LABEL).indexOf(variant.of);
      values.push({ panel: PAUSE_LABEL[variant.of]!, order, sizeMiB: r.size / MiB, series: variant.series, ms: r.ours.median });
      continue;
    }
    const panel = PAUSE_LABEL[r.metric];
    if (!panel) continue;
    const order = Object.keys(PAUSE_LABEL).indexOf(r.metric);
    values.push({ panel, order, sizeMiB: r.size / MiB, series: 'ours', ms: r.ours.median });
    for (const b of r.baselines) values.push({ panel, order, sizeMiB: r.size / MiB, series: b.name, ms: b.median });
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: `Snapshot pause (median) vs region size: ${report.machine.cpu}, Linux ${report.machine.kernel}`,
    data: { values },
    facet: { column: { field: 'panel', type: 'nominal', title: null, sort: { field: 'order' } } },
    spec: {
      width: 220,
      height: 220,
      mark: { type: 'line', point: true },
      encoding: {
        x: {
          field: 'sizeMiB',
          type: 'quantitative',
          scale: { type: 'log', base: 2 },
          axis: { values: [...new Set(values.map((v) => v.sizeMiB))], format: 'd' },
          title: 'region size (MiB)',
        },
        y: { field: 'ms', type: 'quantitative', scale: { type: 'log' }, title: 'pause (ms, log)' },
        color: { field: 'series', type: 'nominal', title: null, sort: ['ours'] },
        strokeWidth: { condition: { test: "datum.series === 'ours'", value: 3 }, value: 1.5 },
        tooltip: [{ field: 'series' }, { field: 'sizeMiB' }, { field: 'ms', format: '.3f' }],
      },
    },
    resolve: { scale: { y: 'shared' } },
  };
}

/** `require(name)`, or undefined when `name` itself is not installed (any other failure throws). */
function optionalRequire(name: string): unknown {
  try {
    return require(name);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'MODULE_NOT_FOUND' && e.message.startsWith(`Cannot find module '${name}'`)) return undefined;
    throw err;
  }
}

/** What to run to get the chart when vega and vega-lite (optional peer dependencies) are absent. */
export const CHART_INSTALL_HINT = 'npm install vega vega-lite';

/**
 * Renders the pause chart to SVG with vega-lite (headless, no network), or returns null when vega
 * or vega-lite is not installed: they are optional peer dependencies, kept out of a default install.
 */
export async function renderPauseChart(report: BenchReport): Promise<string | null> {
  const vega = optionalRequire('vega') as typeof import('vega') | undefined;
  const vegaLite = optionalRequire('vega-lite') as typeof import('vega-lite') | undefined;
  if (!vega || !vegaLite) return null;
  const compiled = vegaLite.compile(pauseChartSpec(report) as Parameters<typeof vegaLite.compile>[0]).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * Writes report.json, report.md and (when vega is installed) pause.svg into `dir`. Without vega the
 * markdown says how to get the chart, and so does a line on stderr. Returns whether the chart was drawn.
 */
export async function writeOutputs(report: BenchReport, dir: string, render = renderPauseChart): Promise<boolean> {
  fs.mkdirSync(dir, { recursive: true });
  const svg = await render(report);
  fs.writeFileSync(path.join(dir, 'report.json'), JSON.stringify(report, null, 2) + '\n');
  const chartLine = svg !== null ? '![pause chart](pause.svg)' : `(No pause chart: it needs vega and vega-lite. Run \`${CHART_INSTALL_HINT}\`, then \`usnap bench --out\` again.)`;
  fs.writeFileSync(path.join(dir, 'report.md'), formatBenchMarkdown(report) + '\n' + chartLine + '\n');
  if (svg !== null) fs.writeFileSync(path.join(dir, 'pause.svg'), svg);
  else process.stderr.write(`usnap bench: wrote report.json and report.md to ${dir}; the pause chart needs vega and vega-lite: ${CHART_INSTALL_HINT}\n`);
  return svg !== null;
}
