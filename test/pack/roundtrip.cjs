// Run in the consumer project: the installed package, by require(), end to end.
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { Region, Store, SnapshotError, probe } = require('uffd-snapshot');

(async () => {
  const p = probe();
  if (!p.supported) throw new Error('probe failed: ' + JSON.stringify(p));
  // The addon this process loaded is the prebuild shipped in the package, not a local build.
  const maps = fs.readFileSync('/proc/self/maps', 'utf8');
  const root = path.dirname(require.resolve('uffd-snapshot/package.json'));
  const prebuild = path.join(root, 'prebuilds', 'linux-x64', 'uffd-snapshot.glibc.node');
  if (!maps.includes(prebuild)) throw new Error(`the addon was not loaded from ${prebuild}`);
  if (fs.existsSync(path.join(root, 'build'))) throw new Error('the installed package has a build/ folder');

  const file = process.argv[2];
  const store = Store.open(file);
  const region = Region.alloc(8 << 20, { store, name: 'heap' });
  const bytes = new Uint8Array(region.buffer);
  crypto.randomFillSync(bytes.subarray(0, 3 << 20));  // 3 MiB of noise, the rest zero
  const want1 = Buffer.from(bytes);
  const s1 = region.snapshot({ label: 'one' });
  crypto.randomFillSync(bytes.subarray(5 << 20, 6 << 20));
  const want2 = Buffer.from(bytes);
  const s2 = region.snapshot({ label: 'two' });
  await s2.persisted;
  bytes.fill(7);
  region.restore(s1);
  if (!Buffer.from(bytes).equals(want1)) throw new Error('rollback to snapshot 1 is not byte-exact');
  region.close();
  const back = Region.restore(store, { name: 'heap', snapshot: s2.id });
  await back.ready;
  if (!Buffer.from(new Uint8Array(back.buffer)).equals(want2)) throw new Error('Region.restore of snapshot 2 is not byte-exact');
  back.close();
  try {
    store.info(99);
    throw new Error('info(99) did not throw');
  } catch (err) {
    if (!(err instanceof SnapshotError) || err.code !== 'NOT_FOUND') throw err;
  }
  store.close();
  fs.writeFileSync(file + '.sha256', crypto.createHash('sha256').update(want2).digest('hex'));
  console.log(`require: probe ok (${p.route}), addon from the prebuild, snapshot ${s1.id}/${s2.id} round trip byte-exact`);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
