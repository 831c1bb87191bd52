// The writer's lifecycle: the snapshots this process took and has yet to persist, the writer
// that persists them (a worker thread with its own connection for files, the main thread for
// ':memory:'), and settling each snapshot's `persisted` promise.
import * as path from 'node:path';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { SnapshotError } from '../core/errors';
import { native, packageRoot } from '../core/native';
import { rowToInfo, selectSnapshots, type SnapshotInfo, type SnapshotRow } from './catalog';
import { gcInUse, runJob, type GcResult, type JobOutcome, type StoreJob } from './delete';
import { maxPages, sqliteError } from './open';
import type { StoreState } from './state';
import { StoreWriter, batchIsEmpty, type SnapshotMeta, type WriteResult } from './writer';
import type { WriterMessage, WriterRequest } from './writer-worker';

export class Persister {
  private closed = false;
  private fatal: SnapshotError | undefined;
  private worker: Worker | undefined;
  private port: MessagePort | undefined;
  private workerDone: Int32Array | undefined;
  private mainWriter: StoreWriter | undefined;
  private pumping = false;
  /** Deletes and gcs handed to the writer, by job number. */
  private readonly jobs = new Map<number, { resolve: (r: GcResult | null) => void; reject: (e: SnapshotError) => void }>();
  private nextJob = 1;
  private retaining = false;

  /** `nextId`: the id the next snapshot gets. */
  constructor(
    private readonly st: StoreState,
    private nextId: number,
    private readonly batchBytes: number,
    private readonly checkpointBytes: number,
    private readonly maxBytes: number | undefined,
    private readonly durability: 'power' | 'process',
    /** Retention: after each persisted snapshot, gc({ keep }) in the background. */
    private readonly keep?: number,
  ) {
    // Started now rather than in the first snapshot()'s pause; idle, it keeps nothing alive.
    if (!st.readonly && !st.memory) {
      this.startWorker();
      this.worker!.unref();
    }
  }

  /** The id the next snapshot gets. */
  allocateId(): number {
    if (this.fatal) throw this.fatal;
    return this.nextId++;
  }

  /** Tracks a snapshot whose chunks are on their way to the store. */
  track(meta: SnapshotMeta, regionName: string, chunks: Uint32Array): Settlement<SnapshotInfo> {
    const settlement = new Settlement<SnapshotInfo>();
    this.st.inflight.set(meta.id, { meta, regionName, chunks, settlement });
    this.pumpWriter();
    return settlement;
  }

  /**
   * Runs a delete or gc on the writer: its thread for a file store (the program never waits
   * on it), in order with the batches it commits; this thread for ':memory:'.
   */
  run(job: StoreJob): Promise<GcResult | null> {
    if (this.fatal) return Promise.reject(this.fatal);
    if (this.closed) return Promise.reject(new SnapshotError('CLOSED', `store ${this.st.path} is closed`));
    if (this.st.memory) return this.settle(runJob(this.st.db, this.st.path, true, job));
    if (!this.worker) this.startWorker();
    const n = this.nextJob++;
    const p = new Promise<GcResult | null>((resolve, reject) => this.jobs.set(n, { resolve, reject }));
    this.worker!.ref();
    this.port!.postMessage({ type: 'job', job: n, ...job } satisfies WriterRequest);
    return p;
  }

  private settle(o: JobOutcome): Promise<GcResult | null> {
    this.st.rowCache.clear();  // chunk rows moved to the deleted snapshots' children
    if ('error' in o) return Promise.reject(new SnapshotError(o.error.code as SnapshotError['code'], o.error.message, o.error.hint ? { hint: o.error.hint } : {}));
    return Promise.resolve(o.result);
  }

  /** Retention: one background gc at a time, after snapshots persisted. */
  private retain(): void {
    if (this.keep === undefined || this.retaining || this.closed) return;
    this.retaining = true;
    this.run({ op: 'gc', keep: this.keep, inUse: gcInUse(this.st), compact: false }).then(
      () => (this.retaining = false),
      (err: SnapshotError) => {
        this.retaining = false;
        process.emitWarning(`uffd-snapshot: retention (keep ${this.keep}) on ${this.st.path} failed: ${err.message}`);
      },
    );
  }

  private idle(): boolean {
    return this.st.inflight.size === 0 && this.jobs.size === 0;
  }

  private pumpWriter(): void {
    if (this.st.memory) {
      if (!this.mainWriter) this.mainWriter = new StoreWriter(this.st.db, this.st.sink);
      if (!this.pumping) {
        this.pumping = true;
        setImmediate(() => this.pumpMain());
      }
      return;
    }
    if (!this.worker) this.startWorker();
    this.worker!.ref();
  }

  private pumpMain(): void {
    if (this.closed) return;
    let wrote = false;
    try {
      const batch = native().sink_drain(this.st.sink, this.batchBytes, 0);
      if (!batchIsEmpty(batch)) {
        this.deliver(this.mainWriter!.apply(batch));
        wrote = true;
      }
    } catch (err) {
      this.failAll(sqliteError(err, this.st.path));
    }
    if (this.st.inflight.size > 0) setTimeout(() => this.pumpMain(), wrote ? 0 : 1);
    else this.pumping = false;
  }

  private startWorker(): void {
    const { port1, port2 } = new MessageChannel();
    this.workerDone = new Int32Array(new SharedArrayBuffer(4));
    this.port = port1;
    this.worker = new Worker(path.join(packageRoot, 'dist', 'store', 'writer-worker.js'), {
      workerData: {
        path: this.st.path,
        sink: this.st.sink,
        port: port2,
        done: this.workerDone,
        batchBytes: this.batchBytes,
        checkpointBytes: this.checkpointBytes,
        maxPageCount: this.maxBytes === undefined ? undefined : maxPages(this.st.db, this.maxBytes),
        durability: this.durability,
      },
      transferList: [port2],
    });
    port1.on('message', (m: WriterMessage) => this.onWriterMessage(m));
    port1.unref();
    this.worker.on('error', (err) => this.failAll(new SnapshotError('INTERNAL', `store writer crashed: ${err.message}`, { cause: err })));
    const worker = this.worker;
    // Ended early without an error (never by design before close): never leave `persisted` waiting.
    this.worker.on('exit', (code) => {
      if (this.worker !== worker || this.closed) return;
      // Its last words (a fatal error, results) may still be queued behind the exit event.
      for (let m = receiveMessageOnPort(port1); m; m = receiveMessageOnPort(port1)) this.onWriterMessage(m.message as WriterMessage);
      this.worker = undefined;
      if (!this.idle()) this.failAll(new SnapshotError('INTERNAL', `store writer exited (code ${code}) with snapshots or a delete still to save`));
    });
  }

  private onWriterMessage(m: WriterMessage): void {
    if (m.type === 'job') {
      const j = this.jobs.get(m.job);
      this.jobs.delete(m.job);
      if (j) this.settle(m).then(j.resolve, j.reject);
    } else if (m.type === 'fatal') {
      const cause = Object.assign(new Error(m.message), { code: m.code });
      const e = sqliteError(cause, this.st.path);
      this.failAll(new SnapshotError(e.code, `store writer failed: ${e.message}`, { hint: e.hint ?? 'Check free disk space and the store file.', cause }));
    }
    else this.deliver(m);
    if (this.idle()) this.worker?.unref();
  }

  private deliver(r: Pick<WriteResult, 'persisted' | 'failed'>): void {
    const addon = native();
    for (const id of r.persisted) {
      const f = this.st.inflight.get(id);
      addon.sink_release(this.st.sink, id);
      this.st.inflight.delete(id);
      if (!f) continue;
      const row = selectSnapshots(this.st, 'WHERE s.id = ?').get(id) as SnapshotRow | undefined;
      if (row) f.settlement.resolve(rowToInfo(row));
      else f.settlement.reject(new SnapshotError('INTERNAL', `snapshot ${id} was committed but cannot be read back`));
    }
    for (const { id, error } of r.failed) {
      const f = this.st.inflight.get(id);
      addon.sink_release(this.st.sink, id);
      this.st.inflight.delete(id);
      f?.settlement.reject(new SnapshotError('SNAPSHOT_FAILED', `snapshot ${id} could not be saved: ${error}`, {
        hint: 'The next snapshot of the region saves all of it again.',
      }));
    }
    if (r.persisted.length > 0) this.retain();
  }

  private failAll(err: SnapshotError): void {
    this.fatal = err;
    for (const [n, j] of this.jobs) {
      this.jobs.delete(n);
      j.reject(err);
    }
    for (const [id, f] of this.st.inflight) {
      this.st.inflight.delete(id);
      f.settlement.reject(err);
    }
  }

  /** Waits until every snapshot taken so far is persisted (or failed), then stops the writer. */
  finish(): void {
    try {
      this.finishWriter();
    } finally {
      this.closed = true;
    }
  }

  private finishWriter(): void {
    const addon = native();
    if (this.st.memory) {
      if (!this.mainWriter) return;
      while (this.st.inflight.size > 0 && !this.fatal) {
        const batch = addon.sink_drain(this.st.sink, this.batchBytes, 20);
        if (!batchIsEmpty(batch)) this.deliver(this.mainWriter.apply(batch));
      }
      return;
    }
    if (!this.worker) return;
    // Even when it was given nothing to write (a store opened to read or gc), the writer may be
    // opening its connection: it must close it before ours closes, or the WAL stays behind
    // (the last connection to close removes it) and a lock may be held past close().
    this.port!.postMessage('finish');
    while (Atomics.wait(this.workerDone!, 0, 0, 60_000) === 'timed-out') {
      process.emitWarning(`uffd-snapshot: still waiting for the store writer of ${this.st.path}`);
    }
    for (let m = receiveMessageOnPort(this.port!); m; m = receiveMessageOnPort(this.port!)) this.onWriterMessage(m.message as WriterMessage);
    this.port!.close();
    void this.worker.terminate();
    this.worker = undefined;
    if (!this.idle()) this.failAll(new SnapshotError('INTERNAL', 'store closed before every snapshot was saved'));
  }}

/**
 * A promise made only when asked for: many programs never look at a snapshot's `persisted`,
 * and two promises per snapshot() (one for its catch) cost 21-45 us of a cold call here
 * (docs/benchmark.md, sixth session).
 */
export class Settlement<T> {
  private made: Promise<T> | undefined;
  private settle: { resolve: (v: T) => void; reject: (e: unknown) => void } | undefined;
  private outcome: { value: T } | { error: unknown } | undefined;

  promise(): Promise<T> {
    if (this.made) return this.made;
    const o = this.outcome;
    if (!o) this.made = new Promise<T>((resolve, reject) => (this.settle = { resolve, reject }));
    else this.made = 'value' in o ? Promise.resolve(o.value) : Promise.reject(o.error);
    this.made.catch(() => {});  // failures surface where the promise is awaited, not as unhandled rejections
    return this.made;
  }

  resolve(value: T): void {
    if (this.outcome) return;
    this.outcome = { value };
    this.settle?.resolve(value);
  }

  reject(error: unknown): void {
    if (this.outcome) return;
    this.outcome = { error };
    this.settle?.reject(error);
  }
}
