// Lazy restore from a remote: the remote's PageSource (store/restore.ts), on the one restore
// path local stores use. It reads the manifests, then hands the native page source to the
// remote's fetch worker (store/remote-worker.ts). When every chunk is in memory, the local
// store the region writes to gets the restored image as a full snapshot, so the region's next
// snapshot is incremental against it and a later restore of the same remote snapshot from that
// store (the `cache`) needs no request.
import * as path from 'node:path';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { SnapshotError } from '../core/errors';
import { native, packageRoot } from '../core/native';
import type { Remote } from './remote';
import { remoteImage, type RemoteImage } from './remote-sync';
import type { RemoteJob, RemoteMessage } from './remote-worker';
import type { PageSource } from './restore';
import { Store } from './store';

interface Fill {
  plan: RemoteImage;
  store: Store;
  head: number;
  chunks: Map<string, { codec: number; data: Buffer }>;
  resolve: () => void;
  reject: (e: SnapshotError) => void;
}

/** One fetch worker per Remote, started by its first lazy restore and ended by close(). */
class Fetcher {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly fills = new Map<number, Fill>();
  private closing = false;

  constructor(remote: Remote) {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(path.join(packageRoot, 'dist', 'store', 'remote-worker.js'), {
      workerData: { config: remote._config, port: port2 },
      transferList: [port2],
    });
    port1.on('message', (m: RemoteMessage) => this.onMessage(m));
    port1.unref();
    this.worker.unref();
    this.worker.on('error', (err) => this.failAll(new SnapshotError('INTERNAL', `remote fetch worker crashed: ${err.message}`, { cause: err })));
    this.worker.on('exit', (code) =>
      this.failAll(
        this.closing
          ? new SnapshotError('CLOSED', `remote ${remote.url} was closed before the restore finished`)
          : new SnapshotError('INTERNAL', `remote fetch worker exited (code ${code}) before the restore finished`),
      ),
    );
  }

  start(source: number, plan: RemoteImage, opts: { prefetch: boolean; store: Store; head: number; what: string }): Promise<void> {
    this.worker.ref();
    return new Promise((resolve, reject) => {
      this.fills.set(source, { plan, store: opts.store, head: opts.head, chunks: new Map(), resolve, reject });
      this.port.postMessage({ source, shas: plan.shas, prefetch: opts.prefetch, what: opts.what } satisfies RemoteJob);
    });
  }

  private onMessage(m: RemoteMessage): void {
    const f = this.fills.get(m.source);
    if (!f) return;
    if (m.type === 'chunks') {
      for (const c of m.chunks) f.chunks.set(c.sha, { codec: c.codec, data: Buffer.from(c.data.buffer, c.data.byteOffset, c.data.byteLength) });
      return;
    }
    this.fills.delete(m.source);
    if (this.fills.size === 0) this.worker.unref();
    if (m.type === 'closed') return f.reject(new SnapshotError('CLOSED', `the region restored from remote snapshot ${f.plan.id} was closed before it was fully restored`));
    if (m.type === 'failed') {
      return f.reject(new SnapshotError(m.code as SnapshotError['code'], `restore of remote snapshot ${f.plan.id} failed: ${m.message}`, m.hint ? { hint: m.hint } : {}));
    }
    try {
      f.store._importRemote(f.head, f.plan, f.chunks);
      f.resolve();
    } catch (err) {
      f.reject(err instanceof SnapshotError ? err : new SnapshotError('IO', (err as Error).message, { cause: err }));
    }
  }

  private failAll(err: SnapshotError): void {
    for (const [source, f] of this.fills) {
      try {
        // Nobody will supply the missing chunks now: a touch must stop, not wait forever.
        native().source_fail(source, `${err.code}: ${err.message}`);
      } catch {
        // the region was closed meanwhile
      }
      f.reject(err);
    }
    this.fills.clear();
  }

  async close(): Promise<void> {
    this.closing = true;
    this.port.close();
    await this.worker.terminate();
  }
}

const fetchers = new WeakMap<Remote, Fetcher>();

function fillFromRemote(remote: Remote, source: number, plan: RemoteImage, opts: { prefetch: boolean; store: Store; head: number; what: string }): Promise<void> {
  let f = fetchers.get(remote);
  if (!f) {
    const fetcher = new Fetcher(remote);
    fetchers.set(remote, fetcher);
    remote._onClose(() => fetcher.close());
    f = fetcher;
  }
  const p = f.start(source, plan, opts);
  p.catch(() => {});  // surfaces where `ready` is awaited
  return p;
}

/**
 * The page source for remote snapshot `id`: from `cache` when it holds it already, else
 * fetched lazily into `cache` (default: a private in-memory store the region closes).
 */
export async function remotePageSource(remote: Remote, id: string, opts: { cache?: Store; prefetch: boolean }): Promise<PageSource> {
  const cached = opts.cache?._remoteOrigin(id);
  if (opts.cache && cached !== undefined) return opts.cache._pageSource(cached);
  const image = await remoteImage(remote, id);
  const store = opts.cache ?? Store.open(':memory:');
  let head: number;
  try {
    // The restored image becomes this local snapshot once all of it is in.
    head = store._allocateId();
  } catch (err) {
    if (!opts.cache) store.close();
    throw err;
  }
  const what = `remote snapshot ${id}`;
  return {
    region: image.region,
    size: image.regionSize,
    label: `remote ${remote.url}, region "${image.region}", snapshot ${id}`,
    store,
    ownsStore: !opts.cache,
    head,
    fill: (source) => fillFromRemote(remote, source, image, { prefetch: opts.prefetch, store, head, what }),
  };
}
