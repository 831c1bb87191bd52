import { SnapshotError, invalidArgument } from './errors';

/**
 * Reads an options argument once: rejects a non-object and unknown keys (naming the nearest
 * known one), and returns a plain copy holding each known key's value as read here. Callers
 * validate and use the copy only, so a getter cannot pass validation and then hand over
 * something else. `undefined` stands for `{}`. Adding an option is adding its key to `keys`.
 */
export function readOptions<K extends string>(opts: unknown, keys: readonly K[], where: string): { [P in K]?: unknown } {
  if (opts === undefined) return {};
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw invalidArgument(`${where} options`, 'an object', opts);
  const own = Object.keys(opts);
  for (const k of own) {
    if (!(keys as readonly string[]).includes(k)) {
      const near = nearest(k, keys);
      throw new SnapshotError('INVALID_ARGUMENT', `Unknown option "${k}" for ${where}${near ? ` (did you mean "${near}"?)` : ''}`, {
        hint: `Known options: ${keys.join(', ')}.`,
      });
    }
  }
  const out: { [P in K]?: unknown } = {};
  for (const k of keys) {
    if (!own.includes(k)) continue;
    const v = (opts as Record<string, unknown>)[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}

function nearest(k: string, keys: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const x of keys) {
    const d = distance(k.toLowerCase(), x.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = x;
    }
  }
  return bestD <= Math.max(2, Math.floor(k.length / 3)) ? best : undefined;
}

function distance(a: string, b: string): number {
  if (a.length > 64 || b.length > 64) return Infinity;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

export function optBoolean(what: string, v: unknown): boolean | undefined {
  if (v !== undefined && typeof v !== 'boolean') throw invalidArgument(what, 'a boolean', v);
  return v;
}

export function optString(what: string, v: unknown, maxLength = 255): string | undefined {
  if (v !== undefined && (typeof v !== 'string' || v.length === 0 || v.length > maxLength)) {
    throw invalidArgument(what, `a non-empty string of at most ${maxLength} characters`, v);
  }
  return v;
}

export function optInteger(what: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (v !== undefined && (!Number.isSafeInteger(v) || (v as number) < min || (v as number) > max)) {
    throw invalidArgument(what, max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`, v);
  }
  return v as number | undefined;
}

export function optFunction<F>(what: string, v: unknown): F | undefined {
  if (v !== undefined && typeof v !== 'function') throw invalidArgument(what, 'a function', v);
  return v as F | undefined;
}
