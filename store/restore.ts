// Restore into a new region has one home: a region asks its backend for a PageSource for a
// snapshot and lets it fill the region's native page source (lib/region.ts, Region.restore).
// A local Store serves it here; a remote backend implements the same interface.
import * as path from 'node:path';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { SnapshotError } from '../core/errors';
import { CHUNK_SIZE, native, packageRoot } from '../core/native';
import { checkChunkRanges, hasUnpersistedHistory, snapshotRegion } from './catalog';
import type { ReaderJob, ReaderMessage } from './reader-worker';
import { BlobReader, buildPlan } from './restore-plan';
import type { StoreState } from './state';
import { readWorkingSet, recordWorkingSet } from './working-set';
import type { Store } from './store';

/**
 * One snapshot, ready to be restored into a new region. `Region.restore` maps `size` bytes,
 * registers them for missing-page faults (native page source `source`, from `region_source`)
 * and calls `fill(source)`, which returns at once. `fill` sets the plan (`source_set_plan`:
 * which chunks hold data; the rest are zero), serves faults without the JS thread (stage
 * chunks in native memory, or feed `source_supply` from a worker: `source_next` names the
 * wanted chunks, faulted ones first), prefetches the rest in the background, and resolves
 * when every chunk holding data is in memory. Otherwise it rejects (STORE_CORRUPT, IO,
 * CLOSED...), after `source_fail`, so that touching a chunk that will never come stops the
 * process instead of hanging. The promise becomes `region.ready`.
 * Without `fill`, the region is created empty and rolled back in place to `head` in `store`
 * (a local store whose snapshot is still partly only in this process's memory).
 */
export interface PageSource {
  /** The name of the region the snapshot was taken of. */
  readonly region: string;
  /** Bytes: the snapshot's region size, a multiple of 64 KiB. */
  readonly size: number;
  /** Where the pages come from, for error messages. */
  readonly label: string;
  /** The store the restored region takes its next snapshots into. */
  readonly store: Store;
  /** The region closes `store` with itself (a private store made for this restore). */
  readonly ownsStore?: boolean;
  /** The snapshot in `store` those next snapshots are incremental against. */
  readonly head: number;
  fill?(source: number): Promise<void>;
  /** The working set an earlier restore of `head` recorded (chunk indices, first touched first), if the backend keeps one. */
  workingSet?(): Uint32Array | null;
  /** Keeps the working set this restore saw, for the next restore of `head` (best effort). */
  recordWorkingSet?(chunks: Uint32Array): void;
}

/** A local store's lazy restores: staged natively for ':memory:', fed by a reader worker for files. */
export class LocalRestore {
  private reader: Worker | undefined;
  private readerPort: MessagePort | undefined;
  private readonly fills = new Map<number, { what: string; resolve: () => void; reject: (e: SnapshotError) => void }>();

  constructor(private readonly st: StoreState) {}

  /** The page source for snapshot `id` of `store`; NOT_FOUND when it has no such snapshot. */
  pageSource(store: Store, id: number): PageSource {
    const info = snapshotRegion(this.st, id);
    // A file store's reader checks every row of the history itself, off this thread, and a
    // damaged one rejects `ready` (touching what it would have served stops the process).
    if (this.st.memory) checkChunkRanges(this.st, id, info.size);
    const label = `store ${this.st.path}, region "${info.name}", snapshot ${id}`;
    const src: PageSource = { region: info.name, size: info.size, label, store, head: id };
    // Part of its history exists only in this process's memory: it is copied in eagerly.
    if (hasUnpersistedHistory(this.st, id)) return src;
    const chunks = info.size / CHUNK_SIZE;
    return {
      ...src,
      workingSet: () => readWorkingSet(this.st, id),
      // A read-only handle cannot keep a recording: its restores do not hold prefetching back for one.
      ...(this.st.readonly ? {} : { recordWorkingSet: (ws: Uint32Array) => void recordWorkingSet(this.st, id, ws) }),
      fill: (source) => {
        const p = this.st.memory ? this.fillFromMemory(source, id, chunks, label) : this.fillFromReader(source, id, chunks);
        p.catch(() => {});  // surfaces where `ready` is awaited
        return p;
      },
    };
  }

  /** Stops the reader worker, if one was started; restores it had not finished reject with CLOSED. */
  close(): void {
    if (this.reader) {
      this.readerPort!.close();
      void this.reader.terminate();
      this.reader = undefined;
    }
    for (const f of this.fills.values()) f.reject(new SnapshotError('CLOSED', `${f.what}: the store was closed before it was fully restored`));
    this.fills.clear();
  }

  /** A region closed during its lazy restore: its `ready` rejects with CLOSED. */
  cancel(source: number): void {
    const f = this.fills.get(source);
    if (!f) return;
    this.fills.delete(source);
    f.reject(new SnapshotError('CLOSED', `${f.what}: the region was closed before it was fully restored`));
  }

  private fillFromMemory(source: number, id: number, chunks: number, label: string): Promise<void> {
    const addon = native();
    // Everything goes to native memory now: a fault must never need this thread.
    const plan = buildPlan(this.st.db, id, chunks);
    addon.source_set_plan(source, plan.hasData);
    const reader = new BlobReader(this.st.db);
    const data: number[] = [];
    for (let c = 0; c < chunks; c++) if (plan.hasData[c]) data.push(c);
    for (let i = 0; i < data.length; i += 1024) addon.source_stage(source, reader.read(plan, data.slice(i, i + 1024)));
    addon.source_start_prefetch(source);
    return new Promise((resolve, reject) => {
      const poll = () => {
        const st = addon.source_stats(source);
        if (!st.open) return reject(new SnapshotError('CLOSED', `${label} was closed before it was fully restored`));
        if (!st.ready) return void setTimeout(poll, 1);
        if (st.corrupt) return reject(corruptRestore(label, st.corrupt));
        resolve();
      };
      poll();
    });
  }

  private fillFromReader(source: number, id: number, chunks: number): Promise<void> {
    if (!this.reader) {
      const { port1, port2 } = new MessageChannel();
      this.readerPort = port1;
      this.reader = new Worker(path.join(packageRoot, 'dist', 'store', 'reader-worker.js'), {
        workerData: { path: this.st.path, port: port2 },
        transferList: [port2],
      });
      port1.on('message', (m: ReaderMessage) => {
        const f = this.fills.get(m.source);
        this.fills.delete(m.source);
        if (this.fills.size === 0) this.reader?.unref();
        if (!f) return;
        if (m.type === 'failed') f.reject(new SnapshotError('IO', `restore from ${this.st.path} failed: ${m.message}`));
        else if (m.corrupt) f.reject(corruptRestore(f.what, m.corrupt));
        else f.resolve();
      });
      port1.unref();
      const reader = this.reader;
      this.reader.on('error', (err) => {
        for (const f of this.fills.values()) f.reject(new SnapshotError('INTERNAL', `store reader crashed: ${err.message}`, { cause: err }));
        this.fills.clear();
      });
      // Ended without an error while restores were pending: never leave `ready` waiting.
      this.reader.on('exit', (code) => {
        if (this.reader !== reader) return;
        for (let m = receiveMessageOnPort(port1); m; m = receiveMessageOnPort(port1)) port1.emit('message', m.message);
        this.reader = undefined;
        for (const f of this.fills.values()) f.reject(new SnapshotError('INTERNAL', `store reader exited (code ${code}) before the restore finished`));
        this.fills.clear();
      });
    }
    this.reader.ref();
    return new Promise((resolve, reject) => {
      this.fills.set(source, { what: `snapshot ${id} in ${this.st.path}`, resolve, reject });
      this.readerPort!.postMessage({ source, snapshot: id, chunks } satisfies ReaderJob);
    });
  }
}

function corruptRestore(what: string, detail: string): SnapshotError {
  return new SnapshotError('STORE_CORRUPT', `${what}: ${detail}`, {
    hint: 'That chunk was not restored; the program stops if it touches it. Run `usnap verify` on the store.',
  });
}
