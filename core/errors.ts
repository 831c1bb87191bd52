/**
 * Every error this library throws on purpose. Match on `code`, never on the message.
 * The codes are listed with their meaning in docs/errors.md.
 */
export type SnapshotErrorCode =
  | 'INVALID_ARGUMENT'
  | 'EPERM'
  | 'UFFD_UNSUPPORTED'
  | 'ENOMEM'
  | 'CLOSED'
  | 'NOT_FOUND'
  | 'SNAPSHOT_FAILED'
  | 'SNAPSHOT_IN_USE'
  | 'NOT_PERSISTED'
  | 'REGION_MISMATCH'
  | 'REGION_IN_USE'
  | 'STORE_CORRUPT'
  | 'STORE_LOCKED'
  | 'STORE_VERSION'
  | 'NOT_A_STORE'
  | 'STORE_READONLY'
  | 'IO'
  | 'REMOTE_AUTH'
  | 'REMOTE_UNAVAILABLE'
  | 'REMOTE_NO_BUCKET'
  | 'REMOTE_KEY'
  | 'REMOTE_LOCKED'
  | 'REMOTE_ERROR'
  | 'INTERNAL';

export class SnapshotError extends Error {
  readonly code: SnapshotErrorCode;
  /** What to do about it, when there is something to do. */
  readonly hint?: string;

  constructor(code: SnapshotErrorCode, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SnapshotError';
    this.code = code;
    if (options.hint) this.hint = options.hint;
  }

  override toString(): string {
    return `${this.name} [${this.code}]: ${this.message}${this.hint ? `\n  hint: ${this.hint}` : ''}`;
  }
}

export const PRIVILEGE_HINT =
  'userfaultfd needs one of: read/write access to /dev/userfaultfd (e.g. `sudo setfacl -m u:$USER:rw /dev/userfaultfd`), ' +
  '`sudo sysctl vm.unprivileged_userfaultfd=1`, or CAP_SYS_PTRACE for this process.';

interface NativeErrorShape {
  message: string;
  nativeCode?: string;
  errno?: number;
  syscall?: string;
}

/** Turns an error thrown by the addon into a SnapshotError with a stable code. */
export function fromNative(err: unknown, context: string): SnapshotError {
  if (err instanceof SnapshotError) return err;
  const e = err as NativeErrorShape;
  const msg = `${context}: ${e?.message ?? String(err)}`;
  switch (e?.nativeCode) {
    case 'SYS':
      return fromErrno(e.errno ?? 0, e.syscall ?? '', msg, err);
    case 'CORRUPT':
      return new SnapshotError('STORE_CORRUPT', msg, {
        hint: 'The store holds damaged data; run `usnap verify <store>` to see which snapshots are affected.',
        cause: err,
      });
    case 'INVALID':
      return new SnapshotError('INVALID_ARGUMENT', msg, { cause: err });
    case 'CLOSED':
      return new SnapshotError('CLOSED', msg, { cause: err });
    case 'MOVED':
      return new SnapshotError('REGION_MISMATCH', msg, {
        hint: 'Give the WebAssembly.Memory a `maximum` so the engine reserves its address range and grows it in place.',
        cause: err,
      });
    case 'REMAPPED':
      return new SnapshotError('REGION_MISMATCH', msg, {
        hint: "The region's memory was moved with mremap(), so its writes are no longer tracked. Close the region and restore it from its last snapshot; never mremap region memory.",
        cause: err,
      });
    case 'NOMEM':
      return new SnapshotError('ENOMEM', msg, { cause: err });
    default:
      return new SnapshotError('INTERNAL', msg, { cause: err });
  }
}

function fromErrno(errno: number, syscall: string, msg: string, cause: unknown): SnapshotError {
  const EPERM = 1, ENOENT = 2, ENOMEM = 12, EACCES = 13, EINVAL = 22, ENOSYS = 38, ENOTSUP = 95;
  if (errno === EPERM || errno === EACCES) return new SnapshotError('EPERM', msg, { hint: PRIVILEGE_HINT, cause });
  if (errno === ENOMEM) {
    return new SnapshotError('ENOMEM', msg, {
      hint: 'Not enough address space or memory: use a smaller region, or check `ulimit -v` and vm.overcommit_memory.',
      cause,
    });
  }
  if (errno === ENOSYS || errno === ENOTSUP || (errno === ENOENT && syscall.includes('userfaultfd')) || (errno === EINVAL && syscall.includes('UFFDIO_API'))) {
    return new SnapshotError('UFFD_UNSUPPORTED', msg, {
      hint: 'This kernel lacks a userfaultfd feature uffd-snapshot needs (write-protect of anonymous memory, Linux 6.4+ for WP_UNPOPULATED). Run `usnap probe` for details.',
      cause,
    });
  }
  return new SnapshotError('IO', msg, { cause });
}

/** `Expected X for Y but received Z`. */
export function invalidArgument(what: string, expected: string, got: unknown): SnapshotError {
  const desc =
    got === null ? 'null'
    : typeof got === 'object' || typeof got === 'function' ? Object.prototype.toString.call(got).slice(8, -1)
    : typeof got === 'string' && got.length > 60 ? `a string of ${got.length} characters`
    : `${typeof got === 'string' ? JSON.stringify(got) : String(got)} (${typeof got})`;
  return new SnapshotError('INVALID_ARGUMENT', `Expected ${expected} for ${what} but received ${desc}`);
}
