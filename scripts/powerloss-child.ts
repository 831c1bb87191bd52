// The process the power-loss test records (scripts/powerloss-lib.ts runs it under the
// test/fixtures/iorecord.c shim): two sessions on a new store, snapshots of a changing region
// with up to three in flight, a gc now and then. Each event the checker needs is written to
// <store>-marker, which the shim logs in order with the store's own writes and fsyncs:
//   persisted <id> <seed> <step> <sha256>   after that snapshot's `persisted` resolved
//   deleting <id> <id>...                   before a gc that may delete these snapshots
//   node dist/scripts/powerloss-child.js <store> <seed> <steps> <power|process>
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { Region, Store } from '../lib/index';
import { POWERLOSS_REGION } from './powerloss-lib';
import { applyStep } from './workload';

async function main(): Promise<void> {
  const [file, seedArg, stepsArg, durability] = process.argv.slice(2);
  const seed = Number(seedArg), steps = Number(stepsArg);
  const { name, size, perStep, keep } = POWERLOSS_REGION;
  const marker = fs.openSync(`${file!}-marker`, 'w');
  const mark = (line: string) => fs.writeSync(marker, `${line}\n`);
  let k = 0;
  for (const session of [0, 1]) {
    // A small checkpointBytes: checkpoints (main file writes and fsyncs) also happen mid-run.
    const store = Store.open(file!, { durability: durability as 'power' | 'process', checkpointBytes: 1 << 20 });
    const region = session === 0 ? Region.alloc(size, { store, name }) : Region.restore(store, { name, snapshot: store.list().at(-1)!.id });
    await region.ready;
    const bytes = new Uint8Array(region.buffer);
    const inFlight: Promise<void>[] = [];
    for (const end = k + Math.ceil(steps / 2); k < end; k++) {
      applyStep(bytes, seed, k, perStep);
      const hash = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
      const s = region.snapshot({ label: `${seed}:${k}` });
      const step = k;
      inFlight.push(s.persisted.then(() => void mark(`persisted ${s.id} ${seed} ${step} ${hash}`)));
      if (inFlight.length === 3) await inFlight.shift();
      if (k % 6 === 5) {
        await Promise.all(inFlight.splice(0));
        const ids = store.list({ region: name }).map((x) => x.id);
        mark(`deleting ${ids.slice(0, -keep).join(' ')}`);
        await store.gc({ keep });
      }
    }
    await Promise.all(inFlight);
    region.close();
    store.close();
  }
  fs.closeSync(marker);
}

main().catch((err) => {
  process.stderr.write(`powerloss-child: ${String((err as Error).stack ?? err)}\n`);
  process.exit(1);
});
