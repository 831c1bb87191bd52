import { native } from '../core/native';

export interface ProbeResult {
  /** Whether regions can be created in this process. */
  supported: boolean;
  kernel: string;
  /** Whether faults raised by the kernel itself (read(2) into a region) trap too. */
  privileged: boolean;
  route: 'device' | 'syscall' | 'syscall-user-mode-only' | null;
  features: {
    writeProtect: boolean;
    wpUnpopulated: boolean;
    wpAsync: boolean;
    eventFork: boolean;
    eventRemove: boolean;
    sigbus: boolean;
    poison: boolean;
    move: boolean;
    raw: number;
  };
  /** Why `supported` is false. */
  reason?: string;
}

const F = {
  WP: 1 << 0,
  EVENT_FORK: 1 << 1,
  EVENT_REMOVE: 1 << 3,
  SIGBUS: 1 << 7,
  WP_UNPOPULATED: 1 << 13,
  POISON: 1 << 14,
  WP_ASYNC: 1 << 15,
  MOVE: 1 << 16,
};

function kernelRelease(): string {
  try {
    return require('node:os').release();
  } catch {
    return 'unknown';
  }
}

/** What this kernel and this process's privileges allow. Never throws. */
export function probe(): ProbeResult {
  const kernel = kernelRelease();
  let p;
  try {
    p = native().probe();
  } catch (err) {
    return {
      supported: false,
      kernel,
      privileged: false,
      route: null,
      features: { writeProtect: false, wpUnpopulated: false, wpAsync: false, eventFork: false, eventRemove: false, sigbus: false, poison: false, move: false, raw: 0 },
      reason: (err as Error).message,
    };
  }
  const has = (bit: number) => (p.features & bit) !== 0;
  const features = {
    writeProtect: has(F.WP),
    wpUnpopulated: has(F.WP_UNPOPULATED),
    wpAsync: has(F.WP_ASYNC),
    eventFork: has(F.EVENT_FORK),
    eventRemove: has(F.EVENT_REMOVE),
    sigbus: has(F.SIGBUS),
    poison: has(F.POISON),
    move: has(F.MOVE),
    raw: p.features,
  };
  let reason: string | undefined;
  if (!p.ok) reason = `${p.failedOp} failed with errno ${p.errno}`;
  else if (!features.writeProtect) reason = 'the kernel has no userfaultfd write-protect support';
  else if (!features.wpUnpopulated) reason = 'the kernel lacks UFFD_FEATURE_WP_UNPOPULATED (Linux 6.4+)';
  return {
    supported: reason === undefined,
    kernel,
    privileged: p.ok && p.route !== 'syscall-user-mode-only',
    route: p.ok ? p.route : null,
    features,
    ...(reason ? { reason } : {}),
  };
}
