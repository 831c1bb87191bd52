// Feeds regions restored lazily from a remote: fetches chunk objects on its own thread with its
// own S3 client, faulted chunks first, and hands their raw bytes to the page source, whose
// native threads copy them in. Nothing on the fault path waits on the JS main thread.
import { workerData, type MessagePort } from 'node:worker_threads';
import { SnapshotError } from '../core/errors';
import { native } from '../core/native';
import { Remote, type RemoteConfig } from './remote';

export interface RemoteJob {
  source: number;
  /** Per chunk of the region: the SHA-256 of its raw bytes, or '' where it is zero. */
  shas: string[];
  prefetch: boolean;
  what: string;
}

/** Fetched chunks in their stored encoding, for the local store the region writes to. */
export interface FetchedChunk {
  sha: string;
  codec: number;
  data: Uint8Array;
}

export type RemoteMessage =
  | { type: 'chunks'; source: number; chunks: FetchedChunk[] }
  | { type: 'ready'; source: number }
  | { type: 'failed'; source: number; code: string; message: string; hint?: string }
  | { type: 'closed'; source: number };

const POST_BATCH = 64;

class Job {
  inflight = 0;
  done = false;
  pending: FetchedChunk[] = [];
  constructor(readonly j: RemoteJob) {}
}

function main(): void {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';  // once is enough: the main thread warned
  const { config, port } = workerData as { config: RemoteConfig; port: MessagePort };
  const addon = native();
  const remote = Remote._fromConfig(config);
  const limit = config.concurrency;
  const jobs = new Map<number, Job>();

  const finish = (job: Job, msg: RemoteMessage): void => {
    if (job.done) return;
    job.done = true;
    jobs.delete(job.j.source);
    if (job.pending.length) port.postMessage({ type: 'chunks', source: job.j.source, chunks: job.pending } satisfies RemoteMessage);
    job.pending = [];
    port.postMessage({ ...msg });
  };

  const fail = (job: Job, err: unknown): void => {
    let open = false;
    try {
      open = addon.source_stats(job.j.source).open;
    } catch {
      // gone: closed
    }
    if (!open) return finish(job, { type: 'closed', source: job.j.source });
    const e = err instanceof SnapshotError ? err : new SnapshotError('REMOTE_ERROR', (err as Error)?.message ?? String(err));
    try {
      // No thread may wait for a chunk that will never come: the chunks still missing fail.
      addon.source_fail(job.j.source, `${e.code}: ${e.message}`);
    } catch {
      // The region was closed meanwhile.
    }
    finish(job, { type: 'failed', source: job.j.source, code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) });
  };

  const fetch = (job: Job, chunk: number): void => {
    const sha = job.j.shas[chunk]!;
    job.inflight++;
    remote
      .getChunk(sha, `${job.j.what} chunk ${chunk}`)
      .then((got) => {
        job.inflight--;
        if (job.done) return;
        const arrays = {
          chunk: Uint32Array.of(chunk),
          codec: Uint8Array.of(1),  // raw: checked against its SHA-256 already; native copies it in
          rawLen: Uint32Array.of(got.raw.length),
          hash: BigInt64Array.of(addon.codec_hash(got.raw)),
          offset: Uint32Array.of(0, got.raw.length),
          data: got.raw,
        };
        if (!addon.source_supply(job.j.source, arrays)) {
          finish(job, { type: 'closed', source: job.j.source });
          return;
        }
        job.pending.push({ sha, codec: got.codec, data: got.data });
        if (job.pending.length >= POST_BATCH) {
          port.postMessage({ type: 'chunks', source: job.j.source, chunks: job.pending } satisfies RemoteMessage);
          job.pending = [];
        }
        pump(job);
      })
      .catch((err) => {
        job.inflight--;
        if (!job.done) fail(job, err);
      });
  };

  // Starts fetches, up to the limit in flight: the page source hands over faulted chunks first
  // (and alone), then, unless the region's prefetch is off, the rest. Polls while fetches are
  // in flight; blocks briefly when idle.
  const pump = (job: Job): void => {
    if (job.done) return;
    try {
      const src = job.j.source;
      if (job.inflight < limit) for (const c of addon.source_next(src, limit - job.inflight, 0)) fetch(job, c);
      const st = addon.source_stats(src);
      if (!st.open) return finish(job, { type: 'closed', source: src });
      if (st.ready && job.inflight === 0) {
        if (st.corrupt) return fail(job, new SnapshotError('STORE_CORRUPT', st.corrupt));
        return finish(job, { type: 'ready', source: src });
      }
    } catch (err) {
      return fail(job, err);
    }
  };

  port.on('message', (j: RemoteJob) => {
    const job = new Job(j);
    jobs.set(j.source, job);
    try {
      addon.source_set_plan(j.source, Uint8Array.from(j.shas, (s) => (s ? 1 : 0)));
    } catch (err) {
      return fail(job, err);
    }
    pump(job);
  });

  // Faults arrive without a message: look for them every millisecond while a job runs, and
  // block up to 10 ms in native code when nothing is in flight.
  const tick = (): void => {
    for (const job of jobs.values()) {
      if (job.inflight === 0 && !job.done) {
        try {
          for (const c of addon.source_next(job.j.source, limit, jobs.size > 1 ? 0 : 10)) fetch(job, c);
        } catch (err) {
          fail(job, err);
          continue;
        }
      }
      pump(job);
    }
    setTimeout(tick, jobs.size ? 1 : 20);
  };
  tick();
}

main();
