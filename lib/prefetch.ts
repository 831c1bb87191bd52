// Which chunks a lazy restore fetches first: option parsing and the recording policy, shared
// by every restore path (a file or memory store here, a remote tier elsewhere).
import { invalidArgument } from '../core/errors';
import { WORKING_SET_MAX } from '../store/working-set';

/**
 * `'recorded'` (the default): the working set an earlier restore of the snapshot recorded
 * first, in the order it was touched, then the rest in address order. Without a recording
 * this restore records one: background fetching waits until the program has gone
 * RECORD_QUIET_MS without touching a missing chunk (at most a second), so that its first
 * touches fault and are seen in order. `'address'`: everything in address order at once,
 * recording nothing. `'none'`: only what the program touches, until something needs the
 * whole region in memory (everything touched is recorded).
 */
export type PrefetchMode = 'recorded' | 'address' | 'none';

/** How long a recording restore waits for the program to stop touching new chunks. */
export const RECORD_QUIET_MS = 50;

export function checkPrefetch(v: unknown): PrefetchMode | undefined {
  if (v === undefined || v === 'recorded' || v === 'address' || v === 'none') return v;
  throw invalidArgument('prefetch', "'recorded', 'address' or 'none'", v);
}

export interface PrefetchPlan {
  /** Chunks to fetch before the rest (the recording, or nothing). */
  order: Uint32Array;
  /** False: fetch only faulted chunks until the region must be complete. */
  prefetch: boolean;
  /** > 0: hold background fetching until the program has been quiet that long (recording). */
  recordQuietMs: number;
  /** What this restore's fault order means for the stored recording. */
  records: 'afresh' | 'append' | 'no';
}

export function prefetchPlan(mode: PrefetchMode | undefined, recording: Uint32Array | null): PrefetchPlan {
  const none = new Uint32Array(0);
  switch (mode ?? 'recorded') {
    case 'none':
      return { order: none, prefetch: false, recordQuietMs: 0, records: 'afresh' };
    case 'address':
      return { order: none, prefetch: true, recordQuietMs: 0, records: 'no' };
    default:
      if (recording) return { order: recording, prefetch: true, recordQuietMs: 0, records: 'append' };
      return { order: none, prefetch: true, recordQuietMs: RECORD_QUIET_MS, records: 'afresh' };
  }
}

/**
 * What to store as the snapshot's working set after a restore that saw `faultOrder` (chunks
 * first touched while missing, in order), or null to leave the store as it is. A restore that
 * prefetched a recording only faults on chunks the recording missed: they are appended.
 */
export function nextRecording(prev: Uint32Array | null, records: PrefetchPlan['records'], faultOrder: Uint32Array): Uint32Array | null {
  if (faultOrder.length === 0 || records === 'no') return null;
  if (!prev || records === 'afresh') return faultOrder.slice(0, WORKING_SET_MAX);
  const have = new Set(prev);
  const extra = Array.from(faultOrder).filter((c) => !have.has(c));
  if (extra.length === 0 || prev.length >= WORKING_SET_MAX) return null;
  return Uint32Array.from([...prev, ...extra].slice(0, WORKING_SET_MAX));
}
