// Checkpoint to a file and restore in another process: this program runs twice.
//   node checkpoint.js               allocates, writes, snapshots, persists, then runs itself again
//   node checkpoint.js restore FILE  (the second process) restores the snapshot and checks the bytes
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Region, Store } from '../lib/index';

const MiB = 1 << 20;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex').slice(0, 16);

async function save(): Promise<void> {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-checkpoint-')), 'state.usnap');
  const store = Store.open(file);
  const region = Region.alloc(32 * MiB, { store, name: 'state' });
  const words = new Uint32Array(region.buffer);
  for (let i = 0; i < 8 * MiB; i += 3) words[i] = Math.imul(i, 2654435761) >>> 0;  // 32 MiB of state
  const snap = region.snapshot({ label: 'checkpoint' });
  const info = await snap.persisted;  // durable in the file from here on
  console.log(`[pid ${process.pid}] wrote 32 MiB, snapshot ${snap.id} persisted: ${info.chunks} chunks, ${(info.storedBytes / MiB).toFixed(2)} MiB on disk`);
  const digest = sha(new Uint8Array(region.buffer));
  console.log(`[pid ${process.pid}] sha256 of the region: ${digest}`);
  region.close();
  store.close();

  const child = spawnSync(process.execPath, [__filename, 'restore', file, String(snap.id)], { encoding: 'utf8' });
  process.stdout.write(child.stdout);
  process.stderr.write(child.stderr);
  const restored = /sha256 of the region: (\w+)/.exec(child.stdout)?.[1];
  console.log(`[pid ${process.pid}] the new process ${restored === digest ? 'restored the same bytes' : 'restored DIFFERENT bytes'}`);
  fs.rmSync(path.dirname(file), { recursive: true });
  if (child.status !== 0 || restored !== digest) process.exit(1);
}

async function restore(file: string, id: number): Promise<void> {
  const store = Store.open(file);
  const region = Region.restore(store, { name: 'state', snapshot: id });
  await region.ready;
  const words = new Uint32Array(region.buffer);
  let bad = 0;
  for (let i = 0; i < words.length; i++) if (words[i] !== (i % 3 ? 0 : Math.imul(i, 2654435761) >>> 0)) bad++;
  console.log(`[pid ${process.pid}] restored snapshot ${id} of ${store.path}: ${region.size / MiB} MiB, ${bad} words wrong`);
  console.log(`[pid ${process.pid}] sha256 of the region: ${sha(new Uint8Array(region.buffer))}`);
  region.close();
  store.close();
  if (bad) process.exit(1);
}

const [mode, file, id] = process.argv.slice(2);
(mode === 'restore' ? restore(file!, Number(id)) : save()).catch((err) => {
  console.error(err);
  process.exit(1);
});
