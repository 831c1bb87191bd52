#!/usr/bin/env node
// `npm run bench` entry: node dist/lib/bench/main.js [--quick|--full] [--size 256M] [--json] [--out dir]
import { formatBenchReport, runBench, type BenchOptions } from './run';

const USAGE = 'usage: bench [--quick|--full] [--size <bytes|64M|1G>] [--only <scenario,...>] [--remote|--remote-only] [--json] [--out <dir>]';

/** Parses "268435456", "256M", "256MiB", "1G", "512k". */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:i?[bB])?$/.exec(s.trim());
  if (!m) throw new RangeError(`bad size "${s}"`);
  const mult = { '': 1, k: 1 << 10, m: 1 << 20, g: 1 << 30 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Math.round(Number(m[1]) * mult);
}

function parseArgs(argv: string[]): BenchOptions {
  const opts: BenchOptions = { mode: 'default', json: false, progress: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new RangeError(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') opts.mode = 'quick';
    else if (a === '--full') opts.mode = 'full';
    else if (a === '--json') opts.json = true;
    else if (a === '--remote') opts.remote = 'with';
    else if (a === '--remote-only') opts.remote = 'only';
    else if (a === '--size') opts.size = parseSize(value());
    else if (a.startsWith('--size=')) opts.size = parseSize(a.slice(7));
    else if (a === '--only') opts.only = value().split(',');
    else if (a.startsWith('--only=')) opts.only = a.slice(7).split(',');
    else if (a === '--out') opts.out = value();
    else if (a.startsWith('--out=')) opts.out = a.slice(6);
    else if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    } else throw new RangeError(`unknown argument ${a}`);
  }
  return opts;
}

async function main(): Promise<void> {
  let opts: BenchOptions;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  const report = await runBench(opts);
  process.stdout.write(opts.json ? JSON.stringify(report, null, 2) + '\n' : formatBenchReport(report) + '\n');
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  });
}
