// Checkpoint a running WebAssembly program: snapshot its memory mid-run, keep running, roll
// back, and continue identically; then continue it in a new instance with a fresh memory.
// The program (examples/wasm/world.wat) keeps all its state in linear memory and grows it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import wabt from 'wabt';
import { Region, Store } from '../lib/index';

const BATCH = 25_000;  // steps per line of output

async function compile(): Promise<WebAssembly.Module> {
  // The .wat sits next to this file (examples/wasm/), or under examples/ when run from dist/.
  const candidates = [path.join(__dirname, 'wasm', 'world.wat'), path.join(__dirname, '..', '..', 'examples', 'wasm', 'world.wat')];
  const file = candidates.find((f) => fs.existsSync(f))!;
  const parsed = (await wabt()).parseWat(file, fs.readFileSync(file, 'utf8'));
  return new WebAssembly.Module(parsed.toBinary({}).buffer);
}

type World = { init(seed: number): void; run(n: number): number; steps(): number };

function start(module: WebAssembly.Module): { memory: WebAssembly.Memory; world: World } {
  // A maximum lets the engine reserve the address range, so the memory grows in place.
  const memory = new WebAssembly.Memory({ initial: 2, maximum: 4096 });
  const world = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as World;
  return { memory, world };
}

function run(world: World, batches: number): string[] {
  const lines: string[] = [];
  for (let i = 0; i < batches; i++) {
    const h = world.run(BATCH) >>> 0;
    lines.push(`step ${world.steps()}: hash ${h.toString(16).padStart(8, '0')}`);
  }
  return lines;
}

async function main(): Promise<void> {
  const module = await compile();
  const store = Store.open(path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-wasm-')), 'wasm.usnap'));
  const { memory, world } = start(module);
  const region = Region.attach(memory, { store, name: 'world' });
  const pages = (m: WebAssembly.Memory) => m.buffer.byteLength / 65536;

  world.init(2024);
  for (const line of run(world, 3)) console.log(line);
  const cp = region.snapshot({ label: 'mid-run' });
  const cpSize = memory.buffer.byteLength;
  console.log(`checkpoint ${cp.id} at step ${world.steps()}: ${cp.chunks} chunks, memory ${pages(memory)} pages, pause ${cp.pauseMs.toFixed(3)} ms`);

  const uninterrupted = run(world, 4);  // the program grows its memory in here
  for (const line of uninterrupted) console.log(`  ${line}`);
  console.log(`uninterrupted run: memory grew to ${pages(memory)} pages`);

  region.restore(cp);
  const zeroed = new Uint8Array(memory.buffer, cpSize).every((b) => b === 0);
  console.log(`rolled back to ${cp.id}: step ${world.steps()}, memory stays ${pages(memory)} pages, the part grown since is ${zeroed ? 'zero' : 'NOT zero'}`);
  const again = run(world, 4);
  for (const line of again) console.log(`  ${line}`);
  const same = again.join() === uninterrupted.join();
  console.log(`after the rollback the output is ${same ? 'identical' : 'DIFFERENT'}`);

  // A new instance of the same module, with a fresh memory: restore the checkpoint into it.
  await cp.persisted;
  region.close();
  const fresh = start(module);
  const r2 = Region.attach(fresh.memory, { store, name: 'world' });
  r2.restore(cp.id);  // grows the fresh memory to the checkpoint's size first
  console.log(`new instance restored from ${cp.id}: step ${fresh.world.steps()}, memory ${pages(fresh.memory)} pages`);
  const moved = run(fresh.world, 4);
  for (const line of moved) console.log(`  ${line}`);
  const same2 = moved.join() === uninterrupted.join();
  console.log(`the new instance's output is ${same2 ? 'identical' : 'DIFFERENT'}`);
  r2.close();
  store.close();
  if (!same || !same2 || !zeroed) process.exit(1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
