// The store writer for file stores: its own SQLite connection on its own thread, so the
// program never waits on SQLite. It drains the native sink (blocking in native code, never
// on the main thread) and reports each commit back over `port`.
//
// Checkpoints: automatic checkpoints are off (schema.ts pragmas); the writer checkpoints
// (PASSIVE) when the sink has nothing for it, or once `checkpointBytes` of WAL built up while
// busy. A commit never waits for a checkpoint, and the WAL stays bounded.
import Database from 'better-sqlite3';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { workerData, type MessagePort } from 'node:worker_threads';
import { CHUNK_SIZE, native } from '../core/native';
import { runJob, type JobOutcome, type StoreJob } from './delete';
import { pragmas } from './schema';
import { StoreWriter, batchIsEmpty } from './writer';

interface WriterData {
  path: string;
  sink: number;
  port: MessagePort;
  /** [0] set to 1 when the worker is done; main may Atomics.wait on it. */
  done: Int32Array;
  batchBytes: number;
  checkpointBytes: number;
  maxPageCount?: number;
  /** 'power': fsync the WAL in each commit that completes a snapshot (see writer.ts). */
  durability: 'power' | 'process';
}

export type WriterMessage =
  | { type: 'result'; persisted: number[]; failed: { id: number; error: string }[]; bytes: number }
  | ({ type: 'job'; job: number } & JobOutcome)
  | { type: 'fatal'; message: string; code?: string };

/** From the main thread: finish (once the sink is empty), or run a delete/gc between batches. */
export type WriterRequest = 'finish' | ({ type: 'job'; job: number } & StoreJob);

async function main(): Promise<void> {
  const { path, sink, port, done, batchBytes, checkpointBytes, maxPageCount, durability } = workerData as WriterData;
  const addon = native();
  let background = false;
  let finishing = false;
  const jobs: ({ type: 'job'; job: number } & StoreJob)[] = [];
  port.on('message', (m: WriterRequest) => {
    if (m === 'finish') finishing = true;
    else jobs.push(m);
  });
  let db: Database.Database | undefined;
  try {
    db = new Database(path);
    pragmas(db, false);
    db.pragma('cache_size = -8192');  // it mostly appends: a small cache keeps its memory low
    if (maxPageCount !== undefined) db.pragma(`max_page_count = ${maxPageCount}`);
    const writer = new StoreWriter(db, sink, durability === 'power');
    let sinceCheckpoint = 0;
    const checkpoint = () => {
      sinceCheckpoint = 0;
      try {
        db!.pragma('wal_checkpoint(PASSIVE)');
      } catch {
        // Readers or a busy main connection: the next idle moment tries again.
      }
    };
    // Batches end at the first chunk past batchBytes; a larger one gets a buffer of its own.
    const scratch = Buffer.alloc(batchBytes + 2 * CHUNK_SIZE);
    for (;;) {
      for (let j = jobs.shift(); j; j = jobs.shift()) {
        port.postMessage({ type: 'job', job: j.job, ...runJob(db, path, false, j) } satisfies WriterMessage);
        sinceCheckpoint = 0;
      }
      const batch = addon.sink_drain(sink, batchBytes, finishing ? 20 : 50, 10, scratch);
      if (!batchIsEmpty(batch)) {
        // From the first batch on, only on CPU the program does not want (as the savers); opening
        // and closing stay prompt, so closing a store nobody wrote to does not wait on spare CPU.
        if (!background) addon.thread_set_background();
        background = true;
        const r = writer.apply(batch);
        port.postMessage({ type: 'result', ...r } satisfies WriterMessage);
        sinceCheckpoint += r.bytes + 4096;
        if (sinceCheckpoint >= checkpointBytes) checkpoint();
      } else if (finishing && jobs.length === 0 && addon.sink_stats(sink).inflight === 0) {
        break;
      } else if (sinceCheckpoint > 0) {
        checkpoint();
      }
      await yieldToLoop();
    }
  } catch (err) {
    const e = err as { message?: string; code?: string };
    port.postMessage({ type: 'fatal', message: e.message ?? String(err), code: e.code } satisfies WriterMessage);
  } finally {
    try {
      db?.close();
    } catch {
      // Closing after a failure: nothing more to save.
    }
    Atomics.store(done, 0, 1);
    Atomics.notify(done, 0);
    port.close();
  }
}

void main();
