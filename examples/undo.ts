// Undo for an editor: the document lives in a region, every edit is followed by a snapshot,
// and undo/redo is a restore to any earlier (or later) snapshot, in any order.
import { Region } from '../lib/index';

const MiB = 1 << 20;
const region = Region.alloc(8 * MiB);  // a private in-memory store
const mem = new Uint8Array(region.buffer);
const header = new Uint32Array(region.buffer, 0, 1);  // [0] = document length; text from byte 64
const TEXT = 64;
const text = () => Buffer.from(mem.subarray(TEXT, TEXT + header[0]!)).toString('latin1');

function insert(at: number, s: string): void {
  const len = header[0]!;
  mem.copyWithin(TEXT + at + s.length, TEXT + at, TEXT + len);  // shift the tail right
  mem.set(Buffer.from(s, 'latin1'), TEXT + at);
  header[0] = len + s.length;
}

function remove(at: number, n: number): void {
  const len = header[0]!;
  mem.copyWithin(TEXT + at, TEXT + at + n, TEXT + len);  // shift the tail left
  mem.fill(0, TEXT + len - n, TEXT + len);
  header[0] = len - n;
}

let seed = 7;
const rand = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
const words = ['lorem', 'ipsum', 'dolor', 'sit', 'amet', 'snapshot', 'page', 'undo', 'region', 'fault'];

async function main(): Promise<void> {
  // A 1 MiB document, then 400 edits: inserts and deletes anywhere, a snapshot after each.
  insert(0, Array.from({ length: 150_000 }, () => words[rand(words.length)]).join(' ').slice(0, MiB));
  const history = [{ snap: region.snapshot({ label: 'opened' }), text: text() }];
  const t0 = performance.now();
  for (let i = 1; i <= 400; i++) {
    const len = header[0]!;
    if (rand(3) === 0 && len > 1000) remove(rand(len - 500), 1 + rand(400));
    else insert(rand(len), ` ${words[rand(words.length)]} #${i}`);
    history.push({ snap: region.snapshot({ label: `edit ${i}` }), text: text() });
}
const t1 = performance.now();
const chunks = history.slice(1).reduce((a, h) => a + h.snap.chunks, 0);
console.log(`400 edits on a ${(history[0]!.text.length / MiB).toFixed(2)} MiB document, a snapshot after each: ` +
  `${(chunks / 400).toFixed(1)} chunks of 64 KiB per snapshot, ${((t1 - t0) / 400).toFixed(2)} ms per edit + snapshot`);
const infos = await Promise.all(history.map((h) => h.snap.persisted));  // the history reaches the store
const stored = infos.reduce((a, i) => a + i.uniqueBytes, 0);
console.log(`the whole history (${infos.length} snapshots) takes ${(stored / MiB).toFixed(2)} MiB in the store`);

// Undo and redo, jumping around the history, checking the whole document each time.
let checked = 0;
let worst = 0;
for (let k = 0; k < 300; k++) {
  const step = k < 5 ? [400, 399, 200, 0, 400][k]! : rand(history.length);
  const t = performance.now();
  region.restore(history[step]!.snap);
  worst = Math.max(worst, performance.now() - t);
  if (text() !== history[step]!.text) {
    console.log(`undo to step ${step}: document DIFFERS`);
    process.exit(1);
  }
  checked++;
  if (k < 5) console.log(`restored step ${step} ('${history[step]!.snap.label}'): ${header[0]} bytes, matches`);
}
console.log(`${checked} undo/redo jumps checked byte-exact; slowest restore ${worst.toFixed(2)} ms`);

// Edit after an undo: the new edits branch off, and the old future stays reachable.
region.restore(history[100]!.snap);
insert(0, 'A NEW BRANCH ');
const branch = region.snapshot({ label: 'branch' });
const branchText = text();
await branch.persisted;
region.restore(history[400]!.snap);
const okOld = text() === history[400]!.text;
region.restore(branch);
const okBranch = text() === branchText && text().startsWith('A NEW BRANCH ');
console.log(`branched after step 100 (snapshot ${branch.id}, parent ${branch.parent}); step 400 still restores: ${okOld}; branch restores: ${okBranch}`);
region.close();
if (!okOld || !okBranch) process.exit(1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
