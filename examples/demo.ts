// The main job in one file: allocate a region, snapshot it while it keeps changing,
// persist to a store file, roll back in place, and restore it in a fresh region.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Region, Store, probe } from '../lib/index';

const MiB = 1 << 20;

async function main(): Promise<void> {
  const p = probe();
  if (!p.supported) {
    console.error(`userfaultfd is not usable here: ${p.reason}`);
    process.exit(1);
  }
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-demo-')), 'demo.usnap');
  const store = Store.open(file);
  const region = Region.alloc(64 * MiB, { store, name: 'heap' });
  const bytes = new Uint8Array(region.buffer);
  console.log(`kernel ${p.kernel}, userfaultfd via ${p.route}; region of ${region.size / MiB} MiB, store ${file}`);

  // Some state: a counter table filling the first 48 MiB.
  const table = new Uint32Array(region.buffer, 0, (48 * MiB) / 4);
  for (let i = 0; i < table.length; i++) table[i] = (i % 4096) * 2654435761;
  const s1 = region.snapshot({ label: 'initial' });
  console.log(`snapshot ${s1.id} '${s1.label}': ${s1.chunks} chunks of 64 KiB, pause ${s1.pauseMs.toFixed(3)} ms`);

  // The program keeps running: this write lands while s1 is still being saved.
  bytes.fill(0xab, 0, 4 * MiB);
  for (let i = 0; i < 1000; i++) table[(i * 7919) % table.length] = 0;
  const s2 = region.snapshot({ label: 'after-edits' });
  console.log(`snapshot ${s2.id} '${s2.label}': ${s2.chunks} chunks (only what changed), pause ${s2.pauseMs.toFixed(3)} ms`);

  const [i1, i2] = await Promise.all([s1.persisted, s2.persisted]);
  for (const i of [i1, i2]) {
    console.log(`  persisted ${i.id}: ${(i.rawBytes / MiB).toFixed(1)} MiB of memory in ${(i.uniqueBytes / MiB).toFixed(2)} MiB on disk`);
  }

  bytes.fill(0xff);  // trash everything
  region.restore(s1);
  const intact = table[12345] === ((12345 % 4096) * 2654435761) >>> 0;
  console.log(`rolled back in place to ${s1.id}: table intact = ${intact}`);
  const st = region.stats();
  console.log(`stats: ${st.faults} write faults, ${st.pagesCapturedOnFault} pages saved on fault, ` +
    `${st.pagesSavedInBackground} in background, ${st.restores} restore(s)`);
  store.close();

  // A new process would do exactly this: open the file, restore by id.
  const again = Store.open(file);
  const r2 = Region.restore(again, { name: 'heap', snapshot: s2.id });
  await r2.ready;
  const b2 = new Uint8Array(r2.buffer);
  const check = again.verify();
  console.log(`reopened: ${again.list().length} snapshots, verify ${check.ok ? 'ok' : 'FAILED'}; ` +
    `restored ${s2.id}: byte 100 is 0x${b2[100]!.toString(16)} (expect 0xab)`);
  again.close();
  if (!intact || !check.ok || b2[100] !== 0xab) process.exit(1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
