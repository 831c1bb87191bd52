// The process the crash test kills: snapshots a large changing region forever and prints
// `persisted <id> <seed> <step>` once each snapshot is durable (after `await persisted`).
//   node dist/scripts/crash-child.js <store> <seed> <sizeMiB> <chunksPerStep> [keep]
import { Region, Store } from '../lib/index';
import { applyStep } from './workload';

async function main(): Promise<void> {
  const [file, seedArg, mibArg, perStepArg, keepArg] = process.argv.slice(2);
  const seed = Number(seedArg), size = Number(mibArg) << 20, perStep = Number(perStepArg);
  const store = Store.open(file!);
  // On the writer, in order with the first batches: a kill can land inside gc too.
  store.gc({ keep: Number(keepArg ?? 8) }).catch((err) => process.stderr.write(`crash-child: gc: ${String(err)}\n`));
  const region = Region.alloc(size, { store, name: 'crash' });
  const bytes = new Uint8Array(region.buffer);
  process.stdout.write(`ready ${seed}\n`);
  for (let k = 0; ; k++) {
    applyStep(bytes, seed, k, perStep);
    const s = region.snapshot({ label: `${seed}:${k}` });
    const report = s.persisted.then(() => {
      process.stdout.write(`persisted ${s.id} ${seed} ${k}\n`);  // pipes are written synchronously
    });
    // At most four snapshots in flight, so memory stays bounded.
    if (k % 4 === 3) await report;
    else await new Promise((r) => setImmediate(r));
  }
}

main().catch((err) => {
  process.stderr.write(`crash-child: ${String(err)}\n`);
  process.exit(1);
});
