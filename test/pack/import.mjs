// Run in the consumer project: the installed package, by import.
import { Region, Store, SnapshotError, probe } from 'uffd-snapshot';
import pkg from 'uffd-snapshot';

if (typeof Region.alloc !== 'function' || typeof Store.open !== 'function' || typeof probe !== 'function') throw new Error('named imports missing');
if (pkg.Region !== Region || !(new SnapshotError('IO', 'x') instanceof Error)) throw new Error('default import differs');
const region = Region.alloc(1 << 20);
new Uint8Array(region.buffer).fill(9);
const s = region.snapshot();
new Uint8Array(region.buffer).fill(1);
region.restore(s);
if (!new Uint8Array(region.buffer).every((b) => b === 9)) throw new Error('restore after import is not byte-exact');
region.close();
console.log('import: named and default imports work, snapshot/restore byte-exact');
