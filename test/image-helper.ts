// A persisted snapshot's full region image read straight from the store (no userfaultfd, no
// region of that name needed), for comparing snapshots with what the program saw.
import type { Store } from '../lib/index';
import { forEachChunkAt } from '../store/image';

export function snapshotImage(store: Store, id: number): Uint8Array {
  const info = store.info(id);
  const out = new Uint8Array(info.regionSize);
  forEachChunkAt(store, id, (c, data) => {
    if (data) out.set(data, c * 65536);
  });
  return out;
}
