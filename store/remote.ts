// The object-storage tier: snapshots in any S3-compatible bucket (AWS S3, Ceph RGW, MinIO, R2).
// Layout, consistency and costs: docs/remote.md. Chunks are content-addressed by the SHA-256 of
// their raw bytes (one object each, deduplicated across every store pushing to the remote); a
// snapshot is a manifest written last with If-None-Match: *, named by a hash of its contents.
import type * as S3 from '@aws-sdk/client-s3';
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import type * as Zlib from 'node:zlib';
import { SnapshotError } from '../core/errors';
import { native } from '../core/native';
import { CODEC } from './schema';
import { withLock, type LockKind, type RemoteLock } from './remote-lock';

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface RemoteOptions {
  /** S3 endpoint URL (default: AWS_ENDPOINT_URL, else AWS's own). */
  endpoint?: string;
  /** Signing region (default: AWS_REGION, else us-east-1). */
  region?: string;
  /** Keys (default: the SDK's credential chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, shared files, ...). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Path-style URLs (default: true when an endpoint is given, as RGW and MinIO need). */
  forcePathStyle?: boolean;
  /** Create the bucket when it does not exist (default false). */
  createBucket?: boolean;
  /** 32 bytes: seal every object with AES-256-GCM (docs/remote.md, "Encryption"). */
  encryptionKey?: Uint8Array;
  /** Requests in flight at once for push, pull and restore (default 16). */
  concurrency?: number;
  /** Attempts per request, with exponential back-off between them (default 4). */
  maxAttempts?: number;
  /** Milliseconds without an answer before a request attempt fails (default 20000). */
  requestTimeout?: number;
  /**
   * Milliseconds after which a lock not renewed is taken for a dead process's and ignored
   * (default 30 min; at least 1000). Holders renew theirs every sixth of it (docs/remote.md).
   */
  lockStaleMs?: number;
}

export interface RemoteSnapshotInfo {
  /** Unique across every store pushing to this remote: a hash of the snapshot's manifest. */
  id: string;
  region: string;
  parent: string | null;
  label: string | null;
  createdAt: Date;
  regionSize: number;
  /** Chunks this snapshot itself records (data or zero), as in the store it came from. */
  chunks: number;
}

export interface RemoteVerifyResult {
  ok: boolean;
  snapshots: number;
  /** Distinct chunk objects checked. */
  chunks: number;
  problems: { code: 'STORE_CORRUPT'; snapshot: string; chunk?: number; message: string }[];
}

export interface RemoteStats {
  requests: number;
  bytesDownloaded: number;
  bytesUploaded: number;
  chunksFetched: number;
}

/** One chunk a snapshot records: `sha` null for a zero chunk. */
export interface ManifestChunk {
  chunk: number;
  sha: string | null;
}

export interface Manifest {
  region: string;
  parent: string | null;
  label: string | null;
  createdAt: number;
  regionSize: number;
  full: boolean;
  chunks: ManifestChunk[];
}

/** What a worker thread needs to open the same remote. */
export interface RemoteConfig {
  url: string;
  client: { endpoint?: string; region: string; forcePathStyle: boolean; credentials?: RemoteOptions['credentials'] };
  key?: Uint8Array;
  concurrency: number;
  maxAttempts: number;
  requestTimeout: number;
  lockStaleMs: number;
  /** requests, bytesDownloaded, bytesUploaded, chunksFetched: shared with the fetch worker. */
  counters: SharedArrayBuffer;
}

// Loaded on first use: the SDK takes a few hundred milliseconds to load, which programs that
// never open a remote should not pay at require('uffd-snapshot').
let loaded: typeof S3 | undefined;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const zlib = (): typeof Zlib => require('node:zlib') as typeof Zlib;
function sdk(): typeof S3 {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (loaded ??= require('@aws-sdk/client-s3') as typeof S3);
}

const FORMAT = 'uffd-snapshot-remote';
const [REQUESTS, DOWNLOADED, UPLOADED, FETCHED] = [0, 1, 2, 3];
const CHUNK_MAGIC = Buffer.from('USC1');
const OPTION_KEYS = ['endpoint', 'region', 'credentials', 'forcePathStyle', 'createBucket', 'encryptionKey', 'concurrency', 'maxAttempts', 'requestTimeout', 'lockStaleMs'];
const CORRUPT_HINT = 'The object was damaged or replaced in the bucket; push the snapshot again from a store that has it.';

/** Names, chunk keys and sealing: the crypto of one remote (no key: plain objects). */
export class Sealer {
  private readonly nameKey: Buffer | undefined;
  private readonly manifestKey: Buffer | undefined;
  constructor(private readonly key: Buffer | undefined) {
    if (key) {
      this.nameKey = Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'uffd-snapshot names', 32));
      this.manifestKey = Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'uffd-snapshot manifests', 32));
    }
  }

  get encrypted(): boolean {
    return this.key !== undefined;
  }

  /** A check value stored in the remote's config: tells a wrong key from damage. */
  keyCheck(): string | null {
    return this.nameKey ? createHmac('sha256', this.nameKey).update('key check').digest('hex') : null;
  }

  /** The object name of a chunk: its SHA-256, or an HMAC of it that reveals nothing. */
  chunkName(sha: string): string {
    return this.nameKey ? createHmac('sha256', this.nameKey).update(sha).digest('hex') : sha;
  }

  /** A snapshot's id: a hash of its manifest (keyed when sealed, so ids reveal nothing either). */
  snapshotId(manifest: Buffer): string {
    return (this.nameKey ? createHmac('sha256', this.nameKey).update(manifest) : createHash('sha256').update(manifest)).digest('hex').slice(0, 32);
  }

  /** Chunk object bytes: magic, codec, raw length, data; sealed under a key derived from `sha`. */
  sealChunk(sha: string, codec: number, rawLen: number, data: Uint8Array): Buffer {
    const head = Buffer.alloc(12);
    CHUNK_MAGIC.copy(head, 0);
    head.writeUInt32LE(codec, 4);
    head.writeUInt32LE(rawLen, 8);
    const plain = Buffer.concat([head, data]);
    if (!this.key) return plain;
    return seal(Buffer.from(hkdfSync('sha256', this.key, Buffer.from(sha, 'hex'), 'uffd-snapshot chunk', 32)), plain);
  }

  /** The inverse of sealChunk; throws STORE_CORRUPT for anything that is not what was sealed. */
  openChunk(sha: string, bytes: Buffer, what: string): { codec: number; rawLen: number; data: Buffer } {
    let plain = bytes;
    if (this.key) {
      const k = Buffer.from(hkdfSync('sha256', this.key, Buffer.from(sha, 'hex'), 'uffd-snapshot chunk', 32));
      plain = open(k, bytes, what);
    }
    if (plain.length < 12 || !plain.subarray(0, 4).equals(CHUNK_MAGIC)) throw corrupt(`${what} is not a chunk object`);
    const codec = plain.readUInt32LE(4);
    const rawLen = plain.readUInt32LE(8);
    if ((codec !== 1 && codec !== 2) || rawLen === 0 || rawLen > 65536) throw corrupt(`${what} has a damaged header`);
    return { codec, rawLen, data: plain.subarray(12) };
  }

  /** A lock's description (host, pid, what): sealed like a manifest. */
  sealNote(plain: Buffer): Buffer {
    return this.manifestKey ? seal(this.manifestKey, plain) : plain;
  }

  openNote(bytes: Buffer, what: string): Buffer {
    return this.manifestKey ? open(this.manifestKey, bytes, what) : bytes;
  }

  sealManifest(m: Manifest): { id: string; bytes: Buffer } {
    const plain = encodeManifest(m);
    const id = this.snapshotId(plain);
    const packed = zlib().gzipSync(plain);
    return { id, bytes: this.manifestKey ? seal(this.manifestKey, packed) : packed };
  }

  openManifest(id: string, bytes: Buffer): Manifest {
    const what = `manifest of remote snapshot ${id}`;
    const packed = this.manifestKey ? open(this.manifestKey, bytes, what) : bytes;
    let plain: Buffer;
    try {
      plain = zlib().gunzipSync(packed);
    } catch {
      throw corrupt(`${what} is damaged (not gzip)`);
    }
    if (this.snapshotId(plain) !== id) throw corrupt(`${what} does not match its id (damaged or replaced)`);
    return decodeManifest(plain, what);
  }
}

function seal(key: Buffer, plain: Buffer): Buffer {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  const body = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([iv, body, c.getAuthTag()]);
}

function open(key: Buffer, bytes: Buffer, what: string): Buffer {
  if (bytes.length < 28) throw corrupt(`${what} is too short to be sealed`);
  try {
    const d = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, 12));
    d.setAuthTag(bytes.subarray(bytes.length - 16));
    return Buffer.concat([d.update(bytes.subarray(12, bytes.length - 16)), d.final()]);
  } catch {
    throw corrupt(`${what} fails authentication (damaged, replaced, or sealed under another key)`);
  }
}

function corrupt(message: string): SnapshotError {
  return new SnapshotError('STORE_CORRUPT', message, { hint: CORRUPT_HINT });
}

function encodeManifest(m: Manifest): Buffer {
  return Buffer.from(
    JSON.stringify({
      format: FORMAT,
      version: 1,
      region: m.region,
      parent: m.parent,
      label: m.label,
      createdAt: m.createdAt,
      regionSize: m.regionSize,
      full: m.full,
      chunks: m.chunks.map((c) => [c.chunk, c.sha]),
    }),
  );
}

function decodeManifest(plain: Buffer, what: string): Manifest {
  try {
    const j = JSON.parse(plain.toString('utf8'));
    if (j.format !== FORMAT || j.version !== 1) throw new Error('unknown format');
    const chunks: ManifestChunk[] = (j.chunks as [number, string | null][]).map(([chunk, sha]) => {
      if (!Number.isInteger(chunk) || chunk < 0 || chunk >= j.regionSize / 65536) throw new Error(`chunk ${chunk} outside the region`);
      if (sha !== null && !/^[0-9a-f]{64}$/.test(sha)) throw new Error('bad chunk hash');
      return { chunk, sha };
    });
    return { region: j.region, parent: j.parent, label: j.label, createdAt: j.createdAt, regionSize: j.regionSize, full: j.full, chunks };
  } catch (err) {
    throw corrupt(`${what} is damaged: ${(err as Error).message}`);
  }
}

/** Parses `s3://bucket/prefix` (the prefix may be empty). */
export function parseRemoteUrl(url: string): { bucket: string; prefix: string } {
  const m = typeof url === 'string' ? /^s3:\/\/([^/]+)\/?(.*)$/.exec(url) : null;
  if (!m) {
    throw new SnapshotError('INVALID_ARGUMENT', `Expected an s3://bucket/prefix URL for url but received ${JSON.stringify(url)}`, {
      hint: 'Pass e.g. s3://my-bucket/snapshots.',
    });
  }
  const prefix = m[2]!.replace(/\/+$/, '');
  return { bucket: m[1]!, prefix: prefix ? `${prefix}/` : '' };
}

/** Turns an SDK or network error into a SnapshotError naming the fix. */
export function remoteError(err: unknown, what: string, endpoint: string | undefined): SnapshotError {
  if (err instanceof SnapshotError) return err;
  const e = err as { name?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const name = e?.name ?? '';
  const status = e?.$metadata?.httpStatusCode;
  const where = endpoint ?? 'AWS S3';
  const msg = `${what}: ${e?.message || name || String(err)}`;
  if (name === 'CredentialsProviderError' || /credential/i.test(e?.message ?? '') && !status) {
    return new SnapshotError('REMOTE_AUTH', `${what}: no S3 credentials found`, {
      hint: 'Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass { credentials } to Remote.open.',
      cause: err,
    });
  }
  if (['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'InvalidToken', 'ExpiredToken'].includes(name) || status === 403) {
    return new SnapshotError('REMOTE_AUTH', `${msg} (${where} refused the credentials)`, {
      hint: 'Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the credentials passed to Remote.open), and that they may use this bucket.',
      cause: err,
    });
  }
  if (name === 'NoSuchBucket') {
    return new SnapshotError('REMOTE_NO_BUCKET', `${msg}`, { hint: 'Create the bucket, or pass { createBucket: true } to Remote.open.', cause: err });
  }
  if (status === undefined || status >= 500 || name === 'TimeoutError' || name === 'RequestTimeout') {
    return new SnapshotError('REMOTE_UNAVAILABLE', `${msg} (${where} did not answer after retries)`, {
      hint: 'Check that the S3 endpoint is reachable (AWS_ENDPOINT_URL) and up; the request was retried with back-off.',
      cause: err,
    });
  }
  return new SnapshotError('REMOTE_ERROR', `${msg} (HTTP ${status})`, { cause: err });
}

function isStatus(err: unknown, code: number, ...names: string[]): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.$metadata?.httpStatusCode === code || names.includes(e?.name ?? '');
}

/** Runs `fn` over `items` with at most `limit` in flight; the first failure stops the rest. */
export async function forEachLimit<T>(items: Iterable<T>, limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  const it = items[Symbol.iterator]();
  let failed: unknown;
  const lane = async () => {
    for (let n = it.next(); !n.done && failed === undefined; n = it.next()) {
      try {
        await fn(n.value);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, lane));
  if (failed !== undefined) throw failed;
}

export class Remote {
  readonly url: string;
  readonly bucket: string;
  readonly prefix: string;
  /** @internal */ readonly sealer: Sealer;
  /** @internal */ readonly concurrency: number;
  private readonly client: S3.S3Client;
  private readonly cfg: RemoteConfig;
  // Shared with the fetch worker's copy of this remote, so stats() is current while it fetches.
  private readonly counters: Float64Array;
  private readonly manifests = new Map<string, Manifest>();
  private chunkNames: Set<string> | undefined;
  /** The gc-epoch object's contents when chunkNames was listed. */
  private chunkEpoch: string | undefined;
  private closed = false;
  private readonly closers: (() => Promise<void>)[] = [];

  private constructor(cfg: RemoteConfig) {
    const { bucket, prefix } = parseRemoteUrl(cfg.url);
    this.url = cfg.url;
    this.bucket = bucket;
    this.prefix = prefix;
    this.cfg = cfg;
    this.counters = new Float64Array(cfg.counters);
    this.concurrency = cfg.concurrency;
    this.sealer = new Sealer(cfg.key ? Buffer.from(cfg.key) : undefined);
    const conf: S3.S3ClientConfig = {
      region: cfg.client.region,
      forcePathStyle: cfg.client.forcePathStyle,
      maxAttempts: cfg.maxAttempts,
      requestHandler: { connectionTimeout: Math.min(5000, cfg.requestTimeout), requestTimeout: cfg.requestTimeout, throwOnRequestTimeout: true, httpsAgent: { maxSockets: 64 }, httpAgent: { maxSockets: 64 } },
      ...(cfg.client.endpoint ? { endpoint: cfg.client.endpoint } : {}),
      ...(cfg.client.credentials ? { credentials: cfg.client.credentials } : {}),
    };
    this.client = new (sdk().S3Client)(conf);
    // Counted per attempt (below the retry middleware): what the server sees and bills.
    this.client.middlewareStack.add(
      (next) => async (args) => {
        this.count(REQUESTS, 1);
        return next(args);
      },
      { step: 'finalizeRequest', priority: 'low', name: 'usnapCountRequests' },
    );
  }

  /**
   * Opens the remote at `url` (`s3://bucket/prefix`). Checks that the bucket answers with these
   * credentials, and that `encryptionKey` matches the one the remote was first used with.
   */
  static async open(url: string, opts: RemoteOptions = {}): Promise<Remote> {
    parseRemoteUrl(url);
    if (opts === null || typeof opts !== 'object') throw new SnapshotError('INVALID_ARGUMENT', 'Expected an object for options');
    for (const k of Object.keys(opts)) {
      if (!OPTION_KEYS.includes(k)) throw new SnapshotError('INVALID_ARGUMENT', `Unknown option "${k}" for Remote.open`);
    }
    const key = opts.encryptionKey;
    if (key !== undefined && (!(key instanceof Uint8Array) || key.length !== 32)) {
      throw new SnapshotError('INVALID_ARGUMENT', 'Expected 32 bytes (a Uint8Array) for encryptionKey', { hint: 'Use crypto.randomBytes(32) once and keep it.' });
    }
    for (const k of ['concurrency', 'maxAttempts', 'requestTimeout'] as const) {
      const v = opts[k];
      if (v !== undefined && (!Number.isSafeInteger(v) || v <= 0)) throw new SnapshotError('INVALID_ARGUMENT', `Expected a positive integer for ${k} but received ${String(v)}`);
    }
    if (opts.lockStaleMs !== undefined && (!Number.isSafeInteger(opts.lockStaleMs) || opts.lockStaleMs < 1000)) {
      throw new SnapshotError('INVALID_ARGUMENT', `Expected an integer of at least 1000 for lockStaleMs but received ${String(opts.lockStaleMs)}`);
    }
    const endpoint = opts.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
    const cfg: RemoteConfig = {
      url,
      client: {
        ...(endpoint ? { endpoint } : {}),
        region: opts.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
        forcePathStyle: opts.forcePathStyle ?? !!endpoint,
        ...(opts.credentials ? { credentials: opts.credentials } : {}),
      },
      ...(key ? { key: Uint8Array.from(key) } : {}),
      concurrency: opts.concurrency ?? 16,
      maxAttempts: opts.maxAttempts ?? 4,
      requestTimeout: opts.requestTimeout ?? 20000,
      lockStaleMs: opts.lockStaleMs ?? 30 * 60_000,
      counters: new SharedArrayBuffer(40),
    };
    const remote = new Remote(cfg);
    try {
      await remote.checkBucket(opts.createBucket === true);
      await remote.checkConfig();
    } catch (err) {
      remote.client.destroy();
      throw err;
    }
    return remote;
  }

  /** @internal Opens the remote a config describes, without the checks (a worker thread's copy). */
  static _fromConfig(cfg: RemoteConfig): Remote {
    return new Remote(cfg);
  }

  /** @internal */
  get _config(): RemoteConfig {
    return this.cfg;
  }

  private async checkBucket(create: boolean): Promise<void> {
    try {
      await this.send(new (sdk().HeadBucketCommand)({ Bucket: this.bucket }), 'open');
    } catch (err) {
      if (!isStatus(err, 404, 'NotFound', 'NoSuchBucket')) throw remoteError(err, `cannot open ${this.url}`, this.cfg.client.endpoint);
      if (!create) {
        throw new SnapshotError('REMOTE_NO_BUCKET', `bucket "${this.bucket}" does not exist at ${this.cfg.client.endpoint ?? 'AWS S3'}`, {
          hint: 'Create it, or pass { createBucket: true } to Remote.open (`--create-bucket` on the command line).',
        });
      }
      try {
        await this.send(new (sdk().CreateBucketCommand)({ Bucket: this.bucket }), 'create bucket');
      } catch (err2) {
        if (!isStatus(err2, 409, 'BucketAlreadyOwnedByYou', 'BucketAlreadyExists')) throw remoteError(err2, `cannot create bucket "${this.bucket}"`, this.cfg.client.endpoint);
      }
    }
  }

  /** The remote's config object records whether it is encrypted, and a check of the key. */
  private async checkConfig(): Promise<void> {
    const key = `${this.prefix}config`;
    const mine = { format: FORMAT, version: 1, encrypted: this.sealer.encrypted, keyCheck: this.sealer.keyCheck() };
    let body = await this.getObject(key);
    if (!body) {
      if (await this.putIfAbsent(key, Buffer.from(JSON.stringify(mine)))) return;
      body = await this.getObject(key);
      if (!body) throw new SnapshotError('REMOTE_ERROR', `${this.url}: the config object vanished while it was being created`);
    }
    let theirs: typeof mine;
    try {
      theirs = JSON.parse(body.toString('utf8'));
    } catch {
      throw corrupt(`${this.url}: its config object is damaged`);
    }
    if (theirs.format !== FORMAT) throw corrupt(`${this.url}: its config object is not a uffd-snapshot remote's`);
    if (theirs.encrypted && !mine.encrypted) {
      throw new SnapshotError('REMOTE_KEY', `${this.url} is encrypted`, { hint: 'Pass its encryptionKey to Remote.open (--key-file on the command line).' });
    }
    if (!theirs.encrypted && mine.encrypted) {
      throw new SnapshotError('REMOTE_KEY', `${this.url} is not encrypted, but an encryptionKey was given`, {
        hint: 'Open it without encryptionKey, or use another prefix for encrypted snapshots.',
      });
    }
    if (theirs.keyCheck !== mine.keyCheck) {
      throw new SnapshotError('REMOTE_KEY', `${this.url} was encrypted with another key`, { hint: 'Pass the key the remote was first pushed with.' });
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new SnapshotError('CLOSED', `remote ${this.url} is closed`);
  }

  /** @internal Sends with the SDK's retries; errors become SnapshotErrors naming the fix. */
  async send<T>(cmd: object, what: string): Promise<T> {
    this.assertOpen();
    try {
      return (await this.client.send(cmd as never)) as T;
    } catch (err) {
      if (isStatus(err, 404) || isStatus(err, 412) || isStatus(err, 409)) throw err;
      throw remoteError(err, `${this.url}: ${what}`, this.cfg.client.endpoint);
    }
  }

  /** @internal An object's bytes, or undefined when it does not exist. Ranged with `range`. */
  async getObject(key: string, range?: string): Promise<Buffer | undefined> {
    try {
      const r = await this.send<{ Body?: { transformToByteArray(): Promise<Uint8Array> } }>(
        new (sdk().GetObjectCommand)({ Bucket: this.bucket, Key: key, ...(range ? { Range: range } : {}) }),
        `GET ${key}`,
      );
      const bytes = Buffer.from(await r.Body!.transformToByteArray());
      this.count(DOWNLOADED, bytes.length);
      return bytes;
    } catch (err) {
      if (isStatus(err, 404, 'NoSuchKey', 'NotFound')) return undefined;
      throw remoteError(err, `${this.url}: GET ${key}`, this.cfg.client.endpoint);
    }
  }

  /** @internal PUT with If-None-Match: *; false when the object already exists. */
  async putIfAbsent(key: string, body: Buffer): Promise<boolean> {
    try {
      await this.send(new (sdk().PutObjectCommand)({ Bucket: this.bucket, Key: key, Body: body, IfNoneMatch: '*' }), `PUT ${key}`);
      this.count(UPLOADED, body.length);
      return true;
    } catch (err) {
      if (isStatus(err, 412, 'PreconditionFailed') || isStatus(err, 409, 'ConditionalRequestConflict')) return false;
      throw remoteError(err, `${this.url}: PUT ${key}`, this.cfg.client.endpoint);
    }
  }

  /** @internal Plain PUT (chunk objects: equal names hold equal contents). */
  async put(key: string, body: Buffer): Promise<void> {
    await this.send(new (sdk().PutObjectCommand)({ Bucket: this.bucket, Key: key, Body: body }), `PUT ${key}`);
    this.count(UPLOADED, body.length);
  }

  /** @internal Every key under `prefix` (relative to it), with its last-modified time. */
  async listKeys(sub: string): Promise<{ name: string; modified: number }[]> {
    const out: { name: string; modified: number }[] = [];
    const full = this.prefix + sub;
    let token: string | undefined;
    do {
      const r = await this.send<{ Contents?: { Key?: string; LastModified?: Date }[]; NextContinuationToken?: string; IsTruncated?: boolean }>(
        new (sdk().ListObjectsV2Command)({ Bucket: this.bucket, Prefix: full, ...(token ? { ContinuationToken: token } : {}) }),
        `list ${full}`,
      );
      for (const o of r.Contents ?? []) out.push({ name: o.Key!.slice(full.length), modified: o.LastModified?.getTime() ?? 0 });
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  /** @internal The object key of a chunk whose raw bytes hash to `sha`. */
  chunkKey(sha: string): string {
    return `${this.prefix}chunks/${this.sealer.chunkName(sha)}`;
  }

  /** @internal Plain DELETE of some keys (full keys), up to 1000 per request. */
  async deleteKeys(keys: string[], what: string): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const part = keys.slice(i, i + 1000);
      await this.send(new (sdk().DeleteObjectsCommand)({ Bucket: this.bucket, Delete: { Objects: part.map((Key) => ({ Key })), Quiet: true } }), what);
    }
  }

  /** @internal Runs `fn` holding a lock on the remote (store/remote-lock.ts). */
  _withLock<T>(kind: LockKind, what: string, fn: (lock: RemoteLock) => Promise<T>): Promise<T> {
    this.assertOpen();
    return withLock(this, kind, what, this.cfg.lockStaleMs, fn);
  }

  /**
   * @internal Names of the chunk objects present, for a push holding its lock: listed once and
   * kept up to date by this object's pushes, listed again when a gc has run since (every gc
   * writes a new gc-epoch before it deletes anything).
   */
  async presentChunks(): Promise<Set<string>> {
    const epoch = (await this.getObject(`${this.prefix}gc-epoch`))?.toString('utf8') ?? '';
    if (this.chunkNames && this.chunkEpoch === epoch) return this.chunkNames;
    this.chunkNames = new Set((await this.listKeys('chunks/')).map((o) => o.name));
    this.chunkEpoch = epoch;
    return this.chunkNames;
  }

  /** @internal Uploads a chunk unless the remote holds it (per presentChunks()); true when it was uploaded. */
  async putChunk(sha: string, codec: number, rawLen: number, data: Uint8Array): Promise<number> {
    const names = this.chunkNames ?? (await this.presentChunks());
    const name = this.sealer.chunkName(sha);
    if (names.has(name)) return 0;
    const body = this.sealer.sealChunk(sha, codec, rawLen, data);
    await this.put(`${this.prefix}chunks/${name}`, body);
    names.add(name);
    return body.length;
  }

  /**
   * @internal Fetches a chunk: its stored encoding and its raw bytes, checked against `sha`.
   * STORE_CORRUPT when it is missing or damaged.
   */
  async getChunk(sha: string, what: string): Promise<{ codec: number; data: Buffer; raw: Buffer }> {
    const name = this.sealer.chunkName(sha);
    const body = await this.getObject(this.chunkKey(sha));
    if (!body) throw corrupt(`${what}: chunk object ${name} is missing from ${this.url}`);
    this.count(FETCHED, 1);
    const c = this.sealer.openChunk(sha, body, `${what}: chunk object ${name}`);
    let raw: Buffer;
    try {
      raw = c.codec === CODEC.raw ? c.data : native().codec_decode(c.codec, c.rawLen, c.data);
    } catch {
      throw corrupt(`${what}: chunk object ${name} does not decode`);
    }
    if (raw.length !== c.rawLen || sha256(raw) !== sha) throw corrupt(`${what}: chunk object ${name} does not hold the chunk the manifest names (damaged or replaced)`);
    return { codec: c.codec, data: c.data, raw };
  }

  /** @internal A snapshot's manifest (cached: manifests never change). NOT_FOUND when absent. */
  async manifest(id: string): Promise<Manifest> {
    checkRemoteId(id);
    const cached = this.manifests.get(id);
    if (cached) return cached;
    const body = await this.getObject(`${this.prefix}snapshots/${id}`);
    if (!body) throw new SnapshotError('NOT_FOUND', `no snapshot ${id} in ${this.url}`, { hint: 'List them with remote.list() or `usnap list <url>`.' });
    const m = this.sealer.openManifest(id, body);
    this.manifests.set(id, m);
    return m;
  }

  /** @internal Writes a manifest unless one with its id exists (same id: same contents). */
  async putManifest(m: Manifest): Promise<{ id: string; created: boolean }> {
    const { id, bytes } = this.sealer.sealManifest(m);
    const created = await this.putIfAbsent(`${this.prefix}snapshots/${id}`, bytes);
    this.manifests.set(id, m);
    return { id, created };
  }

  /** @internal Ids of the snapshots present. */
  async snapshotIds(): Promise<string[]> {
    return (await this.listKeys('snapshots/')).map((o) => o.name).filter((n) => /^[0-9a-f]{32}$/.test(n));
  }

  /** @internal Manifests from `id` back to the root of its history (`id` first). */
  async chain(id: string): Promise<{ id: string; manifest: Manifest }[]> {
    const out: { id: string; manifest: Manifest }[] = [];
    for (let cur: string | null = id; cur !== null; ) {
      if (out.length > 100_000) throw corrupt(`the history of remote snapshot ${id} loops`);
      let m: Manifest;
      try {
        m = await this.manifest(cur);
      } catch (err) {
        if (cur !== id && err instanceof SnapshotError && err.code === 'NOT_FOUND') {
          throw corrupt(`remote snapshot ${id} stands on ${cur}, which is missing from ${this.url}`);
        }
        throw err;
      }
      out.push({ id: cur, manifest: m });
      cur = m.parent;
    }
    return out;
  }

  /** Snapshots on the remote, oldest first. */
  async list(opts: { region?: string } = {}): Promise<RemoteSnapshotInfo[]> {
    this.assertOpen();
    const ids = await this.snapshotIds();
    const out: RemoteSnapshotInfo[] = [];
    await forEachLimit(ids, this.concurrency, async (id) => {
      const m = await this.manifest(id);
      if (opts.region !== undefined && m.region !== opts.region) return;
      out.push({ id, region: m.region, parent: m.parent, label: m.label, createdAt: new Date(m.createdAt), regionSize: m.regionSize, chunks: m.chunks.length });
    });
    return out.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.id.localeCompare(b.id));
  }

  /** One snapshot's info; NOT_FOUND when absent. */
  async info(id: string): Promise<RemoteSnapshotInfo> {
    const m = await this.manifest(id);
    return { id, region: m.region, parent: m.parent, label: m.label, createdAt: new Date(m.createdAt), regionSize: m.regionSize, chunks: m.chunks.length };
  }

  /**
   * Deletes a snapshot's manifest. Refused (SNAPSHOT_IN_USE) while another snapshot stands on
   * it: delete those first. Its chunks go at the next gc().
   */
  async delete(id: string): Promise<void> {
    this.assertOpen();
    await this.manifest(id);
    // Exclusive: a push in flight may be about to write a snapshot standing on this one.
    await this._withLock('exclusive', `delete ${id}`, async () => {
      for (const other of await this.snapshotIds()) {
        if (other === id) continue;
        if ((await this.manifest(other)).parent === id) {
          throw new SnapshotError('SNAPSHOT_IN_USE', `remote snapshot ${other} stands on ${id}`, { hint: `Delete ${other} (and what stands on it) first.` });
        }
      }
      await this.deleteKeys([`${this.prefix}snapshots/${id}`], `delete ${id}`);
      this.manifests.delete(id);
    });
  }

  /**
   * Deletes chunk objects no snapshot references. Holds the remote alone: REMOTE_LOCKED while a
   * push or delete is in flight. A chunk younger than `graceMs` (default one hour) is kept: it
   * may belong to a push that takes no lock (an older version of this library).
   */
  async gc(opts: { graceMs?: number } = {}): Promise<{ deletedChunks: number; keptYoung: number }> {
    this.assertOpen();
    const grace = opts.graceMs ?? 3_600_000;
    return this._withLock('exclusive', 'gc', async () => {
      // Before anything goes: pushes that listed the chunks earlier list them again.
      await this.put(`${this.prefix}gc-epoch`, Buffer.from(randomBytes(16).toString('hex')));
      this.chunkNames = undefined;
      return this.collect(grace);
    });
  }

  private async collect(grace: number): Promise<{ deletedChunks: number; keptYoung: number }> {
    const chunks = await this.listKeys('chunks/');
    const referenced = new Set<string>();
    for (const id of await this.snapshotIds()) {
      for (const c of (await this.manifest(id)).chunks) if (c.sha) referenced.add(this.sealer.chunkName(c.sha));
    }
    const now = Date.now();
    let keptYoung = 0;
    const doomed: string[] = [];
    for (const o of chunks) {
      if (referenced.has(o.name)) continue;
      if (now - o.modified < grace) keptYoung++;
      else doomed.push(o.name);
    }
    await this.deleteKeys(doomed.map((n) => `${this.prefix}chunks/${n}`), 'delete chunks');
    return { deletedChunks: doomed.length, keptYoung };
  }

  /**
   * Fetches every chunk that snapshot `id` (default: every snapshot) and its history reference,
   * and checks each against its SHA-256. Damage is reported, not thrown.
   */
  async verify(id?: string, opts: { onProgress?: (done: number, total: number) => void } = {}): Promise<RemoteVerifyResult> {
    this.assertOpen();
    const ids = id === undefined ? await this.snapshotIds() : (await this.chain(id)).map((l) => l.id);
    const problems: RemoteVerifyResult['problems'] = [];
    const owner = new Map<string, { snapshot: string; chunk: number }>();
    for (const s of ids) {
      let m: Manifest;
      try {
        m = await this.manifest(s);
      } catch (err) {
        if (!(err instanceof SnapshotError) || err.code !== 'STORE_CORRUPT') throw err;
        problems.push({ code: 'STORE_CORRUPT', snapshot: s, message: err.message });
        continue;
      }
      if (m.parent !== null && !ids.includes(m.parent) && id === undefined) {
        problems.push({ code: 'STORE_CORRUPT', snapshot: s, message: `stands on ${m.parent}, which is missing` });
      }
      for (const c of m.chunks) if (c.sha && !owner.has(c.sha)) owner.set(c.sha, { snapshot: s, chunk: c.chunk });
    }
    let done = 0;
    await forEachLimit(owner, this.concurrency, async ([sha, o]) => {
      try {
        await this.getChunk(sha, `remote snapshot ${o.snapshot} chunk ${o.chunk}`);
      } catch (err) {
        if (!(err instanceof SnapshotError) || err.code !== 'STORE_CORRUPT') throw err;
        problems.push({ code: 'STORE_CORRUPT', snapshot: o.snapshot, chunk: o.chunk, message: err.message });
      }
      opts.onProgress?.(++done, owner.size);
    });
    return { ok: problems.length === 0, snapshots: ids.length, chunks: owner.size, problems };
  }

  /** Requests sent (every attempt), bytes moved, chunks fetched by this object (and its restores). */
  stats(): RemoteStats {
    const c = this.counters;
    return { requests: c[REQUESTS]!, bytesDownloaded: c[DOWNLOADED]!, bytesUploaded: c[UPLOADED]!, chunksFetched: c[FETCHED]! };
  }

  // Two threads add to these: a lock word serializes them (Float64Array has no Atomics.add).
  private count(i: number, n: number): void {
    const lock = new Int32Array(this.cfg.counters, 32, 1);
    while (Atomics.compareExchange(lock, 0, 0, 1) !== 0);
    this.counters[i]! += n;
    Atomics.store(lock, 0, 0);
  }

  /** @internal Runs `fn` when the remote is closed (its restores' fetch worker). */
  _onClose(fn: () => Promise<void>): void {
    this.closers.push(fn);
  }

  /** Ends the client and the fetch worker; lazy restores still fetching fail (`ready` rejects). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.closers.map((fn) => fn()));
    this.client.destroy();
  }
}

export function checkRemoteId(id: unknown): asserts id is string {
  if (typeof id !== 'string' || !/^[0-9a-f]{32}$/.test(id)) {
    throw new SnapshotError('INVALID_ARGUMENT', `Expected a remote snapshot id (32 hex digits) but received ${JSON.stringify(id)}`, {
      hint: 'List them with remote.list() or `usnap list <url>`.',
    });
  }
}
