// Row tags: an xxh64 over the fields that say where a row belongs, stored in the row. A flipped
// chunk index, snapshot id, parent or blob reference then reads as damage instead of as a
// different, valid-looking store. (Blob contents carry their own checksum; a chunk row also
// names the checksum its blob must have, so a row pointing at the wrong blob is caught too.)
import { native } from '../core/native';

const buf = Buffer.alloc(48);

function hashFields(kind: bigint, fields: (bigint | number | null)[]): bigint {
  buf.writeBigInt64LE(kind, 0);
  fields.forEach((f, i) => buf.writeBigInt64LE(f === null ? -1n : BigInt(f), 8 + i * 8));
  return native().codec_hash(buf.subarray(0, 8 + fields.length * 8));
}

/** Tag of chunk row (snapshot, chunk) whose blob has checksum `hash` (null: a zero chunk). */
export function chunkTag(snapshot: number | bigint, chunk: number | bigint, hash: bigint | null): bigint {
  return hashFields(0x43n, [snapshot, chunk, hash === null ? 0n : 1n, hash ?? 0n]);
}

/** Tag of a snapshot row: what its history and size are. */
export function snapshotTag(id: number | bigint, regionId: number | bigint, parent: number | bigint | null, regionSize: number | bigint, full: number | bigint | boolean): bigint {
  return hashFields(0x53n, [id, regionId, parent, regionSize, full ? 1n : 0n]);
}
