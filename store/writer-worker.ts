// The store writer for file stores: its own SQLite connection on its own thread, so the
// program never waits on SQLite. It drains the native sink (blocking in native code, never
// on the main thread) and reports each commit back over `port`.
import Database from 'better-sqlite3';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { workerData, type MessagePort } from 'node:worker_threads';
import { native } from '../lib/native';
import { pragmas } from './schema';
import { StoreWriter, batchIsEmpty } from './writer';

interface WriterData {
  path: string;
  sink: number;
  port: MessagePort;
  /** [0] set to 1 when the worker is done; main may Atomics.wait on it. */
  done: Int32Array;
  batchBytes: number;
}

export type WriterMessage =
  | { type: 'result'; persisted: number[]; failed: { id: number; error: string }[]; bytes: number }
  | { type: 'fatal'; message: string };

async function main(): Promise<void> {
  const { path, sink, port, done, batchBytes } = workerData as WriterData;
  const addon = native();
  let finishing = false;
  port.on('message', (m: string) => {
    if (m === 'finish') finishing = true;
  });
  let db: Database.Database | undefined;
  try {
    db = new Database(path);
    pragmas(db, false);
    const writer = new StoreWriter(db);
    for (;;) {
      const batch = addon.sink_drain(sink, batchBytes, finishing ? 20 : 50, 10);
      if (!batchIsEmpty(batch)) {
        const r = writer.apply(batch);
        port.postMessage({ type: 'result', ...r } satisfies WriterMessage);
      } else if (finishing && addon.sink_stats(sink).inflight === 0) {
        break;
      }
      await yieldToLoop();
    }
  } catch (err) {
    port.postMessage({ type: 'fatal', message: (err as Error).message } satisfies WriterMessage);
  } finally {
    db?.close();
    Atomics.store(done, 0, 1);
    Atomics.notify(done, 0);
    port.close();
  }
}

void main();
