// A deterministic changing region for the store tests and the crash soak: the image after
// step k of run `seed` can be rebuilt from (seed, k) alone, so a checker needs no copy of it.
export const CHUNK = 65536;

/** A seeded xorshift generator of numbers in [0, 1). */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
}

export function mix(a: number, b: number, c: number): number {
  let h = (Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x632be5ab, 0xc2b2ae35) ^ Math.imul(c + 0x27d4eb2f, 0x165667b1)) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d) >>> 0;
  h ^= h >>> 12;
  return h >>> 0 || 1;
}

/** The chunks step k writes: every chunk at step 0, then `perStep` random ones (with repeats). */
export function stepChunks(seed: number, k: number, nChunks: number, perStep: number): number[] {
  if (k === 0) return Array.from({ length: nChunks }, (_, i) => i);
  const out: number[] = [];
  let x = mix(seed, k, 7);
  for (let i = 0; i < perStep; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out.push(x % nChunks);
  }
  return out;
}

/**
 * The contents step k gives a chunk: all zero (1 in 11), incompressible (1 in 8: stored raw),
 * or mostly repeated (LZ4). Every non-zero chunk carries (seed, k, chunk) in its first bytes.
 */
export function fillChunk(dst: Uint8Array, seed: number, k: number, chunk: number): void {
  const h = mix(seed, k, chunk);
  const w = new Uint32Array(dst.buffer, dst.byteOffset, CHUNK / 4);
  if (h % 11 === 0) {
    w.fill(0);
    return;
  }
  let x = h;
  const random = h % 8 === 1;
  for (let i = 0; i < w.length; i++) {
    if (random || (i & 1023) < 16) {
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      w[i] = x;
    } else {
      w[i] = (h + (i & 7)) >>> 0;
    }
  }
  w[0] = seed >>> 0;
  w[1] = k >>> 0;
  w[2] = chunk >>> 0;
}

/** Applies step k to the region's bytes. */
export function applyStep(bytes: Uint8Array, seed: number, k: number, perStep: number): void {
  const n = Math.floor(bytes.length / CHUNK);
  for (const c of stepChunks(seed, k, n, perStep)) fillChunk(bytes.subarray(c * CHUNK, (c + 1) * CHUNK), seed, k, c);
}

/** The region's bytes after steps 0..k of run `seed`. */
export function imageAt(seed: number, k: number, size: number, perStep: number): Uint8Array {
  const n = Math.floor(size / CHUNK);
  const last = new Int32Array(n).fill(-1);
  for (let j = 0; j <= k; j++) for (const c of stepChunks(seed, j, n, perStep)) last[c] = j;
  const img = new Uint8Array(size);
  for (let c = 0; c < n; c++) if (last[c]! >= 0) fillChunk(img.subarray(c * CHUNK, (c + 1) * CHUNK), seed, last[c]!, c);
  return img;
}
