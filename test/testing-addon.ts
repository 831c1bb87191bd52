// The usnap_testing addon (native/testing/): helpers the hardening tests need, never shipped.
import * as path from 'node:path';
import { root } from './helpers';

export interface TestingAddon {
  /** Starts n native threads writing round numbers into slots of `slotBytes` (see testing.cc). */
  writers_start(view: Uint8Array, slotBytes: number, n: number, firstRound?: number): number;
  /** Stops them; returns each thread's last completed round. */
  writers_stop(id: number): number[];
  /** fork(): the child writes `byte` over [offset, offset+len), holds holdMs, _exits. Returns its pid. */
  fork_write(view: Uint8Array, offset: number, len: number, byte: number, holdMs: number): number;
  /** waitpid: exit status, or 128 + signal. */
  wait_child(pid: number): number;
  /** madvise(MADV_DONTNEED): 0 or errno. */
  madvise_dontneed(view: Uint8Array, offset: number, len: number): number;
  /** mremap the view's mapping away (and back when `back`): 0 or errno. */
  mremap_roundtrip(view: Uint8Array, back: boolean): number;
  /** pread(2) into the view (a kernel-mode write): bytes read or -errno. */
  pread_into(fd: number, view: Uint8Array, offset: number, len: number, fileOffset: number): number;
  /** seccomp filter: userfaultfd(2) fails with EPERM in this process. 0 or errno. */
  deny_userfaultfd(): number;
  address(view: Uint8Array): bigint;
}

export const testingAddonPath = path.join(root, 'build', 'Release', 'usnap_testing.node');

let addon: TestingAddon | undefined;
export function testing(): TestingAddon {
  addon ??= require(testingAddonPath) as TestingAddon;
  return addon;
}
