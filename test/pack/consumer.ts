// Type-checked with skipLibCheck: false, strict, lib ES2022 and no @types but @types/node.
import { Region, Store, Snapshot, SnapshotError, probe } from 'uffd-snapshot';
import type { ProbeResult, RegionOptions, SnapshotErrorCode, SnapshotInfo, VerifyResult, WasmMemory } from 'uffd-snapshot';

export async function main(file: string): Promise<void> {
  const p: ProbeResult = probe();
  const store: Store = Store.open(file);
  const opts: RegionOptions = { store, name: 'heap', mode: 'pause' };
  const region = Region.alloc(1 << 20, opts);
  const buf: ArrayBuffer = region.buffer;  // precise: no SharedArrayBuffer in the union
  new Uint8Array(buf).fill(1);
  const snap: Snapshot = region.snapshot({ label: 'x' });
  await snap.persisted;
  const infos: SnapshotInfo[] = store.list();
  const v: VerifyResult = store.verify();
  try {
    store.info(1234);
  } catch (err) {
    if (err instanceof SnapshotError) {
      const code: SnapshotErrorCode = err.code;
      console.log(code, err.hint);
    }
  }
  const restored = Region.restore(store, { name: 'heap', snapshot: snap.id });
  const again: ArrayBuffer = restored.buffer;
  const mem: WasmMemory<SharedArrayBuffer> = { buffer: new SharedArrayBuffer(65536), grow: () => 0 };
  const sharedBuf: SharedArrayBuffer = mem.buffer;
  console.log(p.supported, infos.length, v.ok, again.byteLength, sharedBuf.byteLength);
  restored.close();
  region.close();
  store.close();
}
