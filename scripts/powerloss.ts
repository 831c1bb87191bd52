// The power-loss test at scale: records runs of scripts/powerloss-child under the
// test/fixtures/iorecord.c shim and checks crash states built from each (see powerloss-lib.ts).
//   npm run test:powerloss -- [--states N] [--runs R] [--steps S] [--seed X] [--durability power|process]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildShim, checkCrashStates, recordRun, summarize, tempDir } from './powerloss-lib';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

async function main(): Promise<void> {
  const states = Number(arg('states', '2000')), runs = Number(arg('runs', '4')), steps = Number(arg('steps', '24'));
  const seed = Number(arg('seed', '1'));
  const durability = arg('durability', 'power') as 'power' | 'process';
  const work = tempDir('usnap-powerloss-');
  const shim = buildShim(work);
  let failures = 0, total = 0;
  const t0 = Date.now();
  try {
    for (let r = 0; r < runs; r++) {
      const dir = path.join(work, `run${r}`);
      fs.mkdirSync(dir);
      const events = await recordRun(dir, shim, seed + r, steps, durability);
      const perRun = Math.ceil((states - total) / (runs - r));
      const rep = await checkCrashStates(events, { states: perRun, seed: seed + r, dir: path.join(dir, 'states') });
      total += rep.states;
      failures += rep.failures.length;
      const s = summarize(events);
      console.log(`run ${r + 1}/${runs} (seed ${seed + r}, durability ${durability}): ${events.length} events, ${s.writes} writes, fsyncs ${JSON.stringify(s.fsyncs)}; ` +
        `${rep.states} crash states (${JSON.stringify(rep.byVariant)}), ${rep.restores} snapshots restored byte-exact, ${rep.failures.length} failures`);
      for (const f of rep.failures.slice(0, 10)) console.log(`  ${f}`);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  console.log(`${total} crash states in ${((Date.now() - t0) / 1000).toFixed(0)} s: ${failures} failures`);
  if (failures) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
