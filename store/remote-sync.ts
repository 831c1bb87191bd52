// Copies snapshots between a local store and a remote: push (chunks first, the manifest last)
// and pull (chunks fetched, then committed to the store as a complete snapshot).
import type { Database } from 'better-sqlite3';
import { SnapshotError } from '../core/errors';
import type { PullOptions, PullResult, PushOptions, PushResult } from './types';
import { native } from '../core/native';
import { forEachLimit, sha256, type Manifest, type ManifestChunk, type Remote } from './remote';
import type { RemoteLock } from './remote-lock';
import { CODEC } from './schema';
import type { Store } from './store';
import { chunkTag, snapshotTag } from './tags';

export type { PushOptions, PushResult, PullOptions, PullResult } from './types';

const CORRUPT_HINT = 'Run `usnap verify` on the store to see what is damaged.';

export async function push(store: Store, remote: Remote, opts: PushOptions = {}): Promise<PushResult> {
  const order = snapshotsToPush(store, opts);
  // A shared lock: gc (which takes it alone) cannot delete a chunk this push finds present.
  return remote._withLock('push', 'push', (lock) => pushLocked(store, remote, order, opts, lock));
}

/** The snapshots asked for and those they stand on, parents first; checked before any request. */
function snapshotsToPush(store: Store, opts: PushOptions): number[] {
  const wanted = opts.snapshot === undefined ? store.list(opts.region === undefined ? {} : { region: opts.region }).map((s) => s.id) : [opts.snapshot].flat();
  const ids = new Set<number>();
  for (const id of wanted) {
    const info = store.info(id);  // NOT_FOUND / NOT_PERSISTED for what cannot be pushed
    if (opts.region !== undefined && info.region !== opts.region) {
      throw new SnapshotError('REGION_MISMATCH', `snapshot ${id} is of region "${info.region}", not "${opts.region}"`);
    }
    for (const a of store.ancestors(id)) ids.add(a);
  }
  return [...ids].sort((a, b) => a - b);  // a parent always has a smaller id than its children
}

async function pushLocked(store: Store, remote: Remote, order: number[], opts: PushOptions, lock: RemoteLock): Promise<PushResult> {
  const infos = new Map(order.map((id) => [id, store.info(id)]));
  const total = order.reduce((n, id) => n + infos.get(id)!.chunks, 0);
  const before = remote.stats().bytesUploaded;
  const result: PushResult = { snapshots: [], chunksUploaded: 0, chunksPresent: 0, bytesUploaded: 0 };
  const remoteId = new Map<number, string>();
  const shaOfBlob = new Map<number, string>();
  let done = 0;
  await remote.presentChunks();
  for (const id of order) {
    const info = infos.get(id)!;
    const rows = store._blobIds(id);
    const chunks: ManifestChunk[] = new Array(rows.length);
    await forEachLimit(rows.keys(), remote.concurrency, async (i) => {
      const { chunk, blob } = rows[i]!;
      if (blob === null) {
        chunks[i] = { chunk, sha: null };
      } else {
        const b = store._blob(blob);
        if (!b) throw new SnapshotError('STORE_CORRUPT', `snapshot ${id} chunk ${chunk}: blob ${blob} is missing`, { hint: CORRUPT_HINT });
        let sha = shaOfBlob.get(blob);
        if (sha === undefined) {
          let raw: Buffer;
          try {
            native().codec_verify(b.codec, b.rawLen, b.hash, b.data);
            raw = b.codec === CODEC.raw ? b.data : native().codec_decode(b.codec, b.rawLen, b.data);
          } catch (err) {
            throw new SnapshotError('STORE_CORRUPT', `snapshot ${id} chunk ${chunk}: ${(err as Error).message}`, { hint: CORRUPT_HINT });
          }
          sha = sha256(raw);
          shaOfBlob.set(blob, sha);
        }
        chunks[i] = { chunk, sha };
        if (await remote.putChunk(sha, b.codec, b.rawLen, b.data)) result.chunksUploaded++;
        else result.chunksPresent++;
      }
      opts.onProgress?.(++done, total);
    });
    const parent = info.parent === null ? null : remoteId.get(info.parent)!;
    const manifest: Manifest = {
      region: info.region,
      parent: info.full ? null : parent,
      label: info.label,
      createdAt: info.createdAt.getTime(),
      regionSize: info.regionSize,
      full: info.full,
      chunks,
    };
    lock.assertHeld('push');
    const { id: rid } = await remote.putManifest(manifest);
    remoteId.set(id, rid);
    result.snapshots.push({ local: id, id: rid });
  }
  result.bytesUploaded = remote.stats().bytesUploaded - before;
  return result;
}

export async function pull(store: Store, db: Database, remote: Remote, opts: PullOptions = {}): Promise<PullResult> {
  let wanted: string[];
  if (opts.snapshot === undefined) wanted = (await remote.list(opts.region === undefined ? {} : { region: opts.region })).map((s) => s.id);
  else wanted = [opts.snapshot].flat();
  // Root first; each snapshot once.
  const order: { id: string; manifest: Manifest }[] = [];
  const seen = new Set<string>();
  for (const id of wanted) {
    const chain = await remote.chain(id);
    if (opts.region !== undefined && chain[0]!.manifest.region !== opts.region) {
      throw new SnapshotError('REGION_MISMATCH', `remote snapshot ${id} is of region "${chain[0]!.manifest.region}", not "${opts.region}"`);
    }
    for (const link of chain.reverse()) {
      if (!seen.has(link.id)) {
        seen.add(link.id);
        order.push(link);
      }
    }
  }
  const before = remote.stats();
  const result: PullResult = { snapshots: [], chunksFetched: 0, bytesDownloaded: 0 };
  const total = order.reduce((n, l) => n + l.manifest.chunks.length, 0);
  let done = 0;
  const local = new Map<string, number>();
  for (const { id, manifest: m } of order) {
    const have = localOfRemote(db, id);
    if (have !== undefined) {
      local.set(id, have);
      result.snapshots.push({ id, local: have });
      opts.onProgress?.((done += m.chunks.length), total);
      continue;
    }
    const fetched = new Map<string, { codec: number; data: Buffer }>();
    await forEachLimit(m.chunks, remote.concurrency, async (c) => {
      if (c.sha !== null && !fetched.has(c.sha)) {
        fetched.set(c.sha, { codec: 0, data: Buffer.alloc(0) });  // claimed: fetched once
        const got = await remote.getChunk(c.sha, `remote snapshot ${id} chunk ${c.chunk}`);
        fetched.set(c.sha, { codec: got.codec, data: got.data });
      }
      opts.onProgress?.(++done, total);
    });
    const parent = m.parent === null ? null : local.get(m.parent)!;
    const localId = store._allocateId();
    commitPulled(db, localId, id, parent, m, fetched);
    local.set(id, localId);
    result.snapshots.push({ id, local: localId });
  }
  const after = remote.stats();
  result.chunksFetched = after.chunksFetched - before.chunksFetched;
  result.bytesDownloaded = after.bytesDownloaded - before.bytesDownloaded;
  return result;
}

/** The local snapshot remote snapshot `id` was pulled or restored into, if it is still there. */
export function localOfRemote(db: Database, id: string): number | undefined {
  const row = db.prepare("SELECT s.id FROM meta m JOIN snapshots s ON s.id = CAST(m.value AS INTEGER) WHERE m.key = ? AND s.complete = 1").get(`remote:${id}`) as
    | { id: number }
    | undefined;
  return row?.id;
}

/** One transaction: the snapshot, its chunks and new blobs, and the remote id it came from. */
export function commitPulled(db: Database, id: number, remoteId: string, parent: number | null, m: Manifest, blobs: Map<string, { codec: number; data: Buffer }>): void {
  db.transaction(() => {
    let region = db.prepare('SELECT id, size FROM regions WHERE name = ?').get(m.region) as { id: number; size: number } | undefined;
    if (!region) {
      const rid = Number(db.prepare('INSERT INTO regions (name, size, created_at) VALUES (?, ?, ?)').run(m.region, m.regionSize, Date.now()).lastInsertRowid);
      region = { id: rid, size: m.regionSize };
    }
    const findBlob = db.prepare('SELECT id, data FROM blobs WHERE hash = ? AND codec = ? AND raw_len = ?');
    const insertBlob = db.prepare('INSERT INTO blobs (hash, codec, raw_len, size, data) VALUES (?, ?, ?, ?, ?)');
    const insertChunk = db.prepare('INSERT INTO chunks (snapshot_id, chunk, blob_id, hash, tag) VALUES (?, ?, ?, ?, ?)');
    const full = m.full;
    db.prepare(
      `INSERT INTO snapshots (id, region_id, parent_id, label, created_at, region_size, full, complete, tag) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)`,
    ).run(id, region.id, parent, m.label, m.createdAt, m.regionSize, full ? 1 : 0, snapshotTag(id, region.id, parent, m.regionSize, full));
    let rawBytes = 0;
    let storedBytes = 0;
    let uniqueBytes = 0;
    const blobIdOf = new Map<string, number>();
    for (const c of m.chunks) {
      if (c.sha === null) {
        insertChunk.run(id, c.chunk, null, null, chunkTag(id, c.chunk, null));
        continue;
      }
      const b = blobs.get(c.sha)!;
      const hash = native().codec_hash(b.data);
      let blobId = blobIdOf.get(c.sha);
      if (blobId === undefined) {
        for (const row of findBlob.all(hash, b.codec, 65536) as { id: number; data: Buffer }[]) {
          if (row.data.equals(b.data)) {
            blobId = row.id;
            break;
          }
        }
        if (blobId === undefined) {
          blobId = Number(insertBlob.run(hash, b.codec, 65536, b.data.length, b.data).lastInsertRowid);
          uniqueBytes += b.data.length;
        }
        blobIdOf.set(c.sha, blobId);
      }
      rawBytes += 65536;
      storedBytes += b.data.length;
      insertChunk.run(id, c.chunk, blobId, hash, chunkTag(id, c.chunk, hash));
    }
    db.prepare('UPDATE snapshots SET complete = 1, chunks = ?, raw_bytes = ?, stored_bytes = ?, unique_bytes = ? WHERE id = ?').run(
      m.chunks.length,
      rawBytes,
      storedBytes,
      uniqueBytes,
      id,
    );
    db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)').run(`remote:${remoteId}`, String(id));
  }).immediate();
}

/** A remote snapshot as one image: per chunk, the SHA-256 of its raw bytes, or '' where it is zero. */
export interface RemoteImage {
  id: string;
  region: string;
  regionSize: number;
  label: string | null;
  createdAt: number;
  shas: string[];
}

/** Reads the manifests from `id` back to the root: which object holds each chunk at `id`. */
export async function remoteImage(remote: Remote, id: string): Promise<RemoteImage> {
  const chain = await remote.chain(id);
  const top = chain[0]!.manifest;
  const n = top.regionSize / 65536;
  const shas = new Array<string>(n).fill('');
  const seen = new Uint8Array(n);
  let left = n;
  for (const { manifest } of chain) {
    for (const c of manifest.chunks) {
      if (c.chunk >= n) {
        throw new SnapshotError('STORE_CORRUPT', `remote snapshot ${id}: chunk ${c.chunk} lies outside its ${n}-chunk region`, {
          hint: 'The manifest was damaged; push the snapshot again.',
        });
      }
      if (seen[c.chunk]) continue;
      seen[c.chunk] = 1;
      left--;
      if (c.sha) shas[c.chunk] = c.sha;
    }
    if (left === 0 || manifest.full) break;
  }
  return { id, region: top.region, regionSize: top.regionSize, label: top.label, createdAt: top.createdAt, shas };
}

/** The image as one full snapshot (data chunks only: the rest is zero). */
export function imageManifest(image: RemoteImage): Manifest {
  const chunks: ManifestChunk[] = [];
  for (let c = 0; c < image.shas.length; c++) if (image.shas[c]) chunks.push({ chunk: c, sha: image.shas[c]! });
  return { region: image.region, parent: null, label: image.label, createdAt: image.createdAt, regionSize: image.regionSize, full: true, chunks };
}
