// usnap bench: a thin wrapper over lib/bench/run (the benchmark lives there; it may be absent
// from a build, so it is loaded only when the command runs).
import type { Command } from 'commander';
import * as path from 'node:path';
import { act, CliError, examples, parseRegionSize, print } from '../util';

/** What lib/bench/run exports (kept structural: that module is owned elsewhere). */
interface BenchModule {
  runBench(opts: { mode: 'quick' | 'default' | 'full'; size?: number; out?: string; only?: string[]; json: boolean; progress: boolean }): Promise<unknown>;
  formatBenchReport(report: unknown): string;
}

function loadBench(): BenchModule {
  const id = '../../bench/run';
  let mod: Partial<BenchModule>;
  try {
    mod = require(id) as Partial<BenchModule>;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { requireStack?: string[] };
    if (e.code === 'MODULE_NOT_FOUND' && typeof e.message === 'string' && e.message.includes(id)) {
      throw new CliError(
        'UNAVAILABLE',
        'the benchmark is not part of this build (lib/bench/run is missing)',
        'Build a version of uffd-snapshot that includes lib/bench/run.ts (npm run build), then run `usnap bench` again.',
      );
    }
    throw err;
  }
  if (typeof mod.runBench !== 'function' || typeof mod.formatBenchReport !== 'function') {
    throw new CliError('UNAVAILABLE', 'lib/bench/run does not export runBench() and formatBenchReport()', 'Rebuild uffd-snapshot: the benchmark module is out of date.');
  }
  return mod as BenchModule;
}

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('measure snapshot pause, fault cost, capture throughput and restore speed on this machine')
    .option('--quick', 'a short run (seconds): smaller region, fewer repetitions')
    .option('--full', 'the full suite (minutes)')
    .option('--size <bytes>', 'region size, a multiple of 64 KiB with a unit: 64M, 256M, 1G (default: per mode)', parseRegionSize)
    .option('--out <dir>', 'also write the report (JSON and charts) to this directory')
    .option('--only <scenarios>', 'run only these scenarios and their baselines, comma-separated (e.g. continuous,reset_small)')
    .addHelpText(
      'after',
      examples([
        ['usnap bench --quick', 'a fast sanity run'],
        ['usnap bench --size 1G', 'the default suite on a 1 GiB region'],
        ['usnap bench --full --out bench-out', 'everything, report files in ./bench-out'],
        ['usnap bench --quick --json > bench.json', 'machine-readable report'],
        ['usnap bench --only continuous,capture,reset_small', 'the continuous-checkpointing rows only'],
      ]) + '\n--quick and --full exclude each other. Progress goes to stderr on a terminal.\n',
    )
    .action(
      act(async (ctx, opts: { quick?: boolean; full?: boolean; size?: number; out?: string; only?: string }) => {
        if (opts.quick && opts.full) throw new CliError('USAGE', 'options --quick and --full cannot be used together', 'See `usnap bench --help`.', 2);
        const bench = loadBench();
        const report = await bench.runBench({
          mode: opts.quick ? 'quick' : opts.full ? 'full' : 'default',
          ...(opts.size !== undefined ? { size: opts.size } : {}),
          ...(opts.out !== undefined ? { out: path.resolve(opts.out) } : {}),
          ...(opts.only !== undefined ? { only: opts.only.split(',') } : {}),
          json: ctx.json,
          progress: ctx.progress,
        });
        if (ctx.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
        else print(bench.formatBenchReport(report));
      }),
    );
}
