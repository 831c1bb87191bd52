// Which chunks a lazy restore fetches first: option parsing and the recording policy, shared
// by every restore path (a file or memory store here, a remote tier elsewhere).
import { invalidArgument } from '../core/errors';
import { WORKING_SET_MAX } from '../store/working-set';

/**
 * `'recorded'`: the working set an earlier restore of the snapshot recorded first, in the
 * order it was touched, then the rest in address order (the default when a recording exists).
 * `'address'`: everything in address order (the default otherwise). `'none'`: only what the
 * program touches, until something needs the whole region in memory.
 */
export type PrefetchMode = 'recorded' | 'address' | 'none';

export function checkPrefetch(v: unknown): PrefetchMode | undefined {
  if (v === undefined || v === 'recorded' || v === 'address' || v === 'none') return v;
  throw invalidArgument('prefetch', "'recorded', 'address' or 'none'", v);
}

export interface PrefetchPlan {
  mode: PrefetchMode;
  /** Chunks to fetch before the rest (the recording, or nothing). */
  order: Uint32Array;
  /** False: fetch only faulted chunks until the region must be complete. */
  prefetch: boolean;
}

/** `'recorded'` without a recording falls back to address order. */
export function prefetchPlan(mode: PrefetchMode | undefined, recording: Uint32Array | null): PrefetchPlan {
  const m = mode ?? (recording ? 'recorded' : 'address');
  return { mode: m, order: m === 'recorded' && recording ? recording : new Uint32Array(0), prefetch: m !== 'none' };
}

/**
 * What to store as the snapshot's working set after a restore that saw `faultOrder` (chunks
 * first touched while missing, in order), or null to leave the store as it is. A restore that
 * prefetched a recording only faults on chunks the recording missed: they are appended. Any
 * other restore records afresh.
 */
export function nextRecording(prev: Uint32Array | null, usedPrev: boolean, faultOrder: Uint32Array): Uint32Array | null {
  if (faultOrder.length === 0) return null;
  if (!prev || !usedPrev) return faultOrder.slice(0, WORKING_SET_MAX);
  const have = new Set(prev);
  const extra = Array.from(faultOrder).filter((c) => !have.has(c));
  if (extra.length === 0 || prev.length >= WORKING_SET_MAX) return null;
  return Uint32Array.from([...prev, ...extra].slice(0, WORKING_SET_MAX));
}
