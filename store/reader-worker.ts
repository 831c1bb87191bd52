// Feeds lazily restored regions of a file store: its own read-only SQLite connection on its
// own thread, so a page fault on the main thread is served without the main thread.
import Database from 'better-sqlite3';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { workerData, type MessagePort } from 'node:worker_threads';
import { native } from '../core/native';
import { BlobReader, EarlyPlan, StoreCorrupt, buildPlan, type RestorePlan } from './restore-plan';
import { pragmas } from './schema';

export interface ReaderJob {
  source: number;
  snapshot: number;
  chunks: number;
}

export type ReaderMessage = { type: 'ready'; source: number; corrupt: string } | { type: 'failed'; source: number; message: string };

const FETCH_BATCH = 64;

async function main(): Promise<void> {
  const { path, port } = workerData as { path: string; port: MessagePort };
  const addon = native();
  const db = new Database(path, { readonly: true, fileMustExist: true });
  pragmas(db, true);
  const reader = new BlobReader(db);
  const jobs = new Map<number, { job: ReaderJob; plan?: RestorePlan; early?: EarlyPlan | null }>();
  let wake: (() => void) | undefined;
  port.on('message', (job: ReaderJob) => {
    jobs.set(job.source, { job });
    wake?.();
  });
  for (;;) {
    if (jobs.size === 0) {
      await new Promise<void>((r) => (wake = r));
      wake = undefined;
    }
    for (const [source, j] of jobs) {
      try {
        if (!j.plan) {
          // Faulted and recorded chunks first, found row by row; the plan for the rest after.
          if (j.early === undefined) j.early = EarlyPlan.open(db, j.job.snapshot, j.job.chunks);
          const first = j.early ? addon.source_next(source, FETCH_BATCH, 0) : [];
          if (first.length > 0) {
            j.early!.resolve(first);
            if (!addon.source_supply(source, reader.read(j.early!.plan, first))) jobs.delete(source);
            continue;
          }
          j.plan = buildPlan(db, j.job.snapshot, j.job.chunks);
          j.early = null;
          addon.source_set_plan(source, j.plan.hasData);
        }
        const chunks = addon.source_next(source, FETCH_BATCH, jobs.size > 1 ? 0 : 20);
        if (chunks.length > 0 && !addon.source_supply(source, reader.read(j.plan, chunks))) {
          jobs.delete(source);  // the region was closed
          continue;
        }
        const st = addon.source_stats(source);
        if (!st.open) {
          jobs.delete(source);
        } else if (st.ready) {
          jobs.delete(source);
          port.postMessage({ type: 'ready', source, corrupt: st.corrupt ?? '' } satisfies ReaderMessage);
        }
      } catch (err) {
        jobs.delete(source);
        // No thread may wait for a chunk that will never come: the chunks still missing fail.
        const message = (err as Error).message;
        try {
          addon.source_fail(source, message);
        } catch {
          // The region was closed meanwhile: nobody can be waiting on it.
        }
        if (err instanceof StoreCorrupt) port.postMessage({ type: 'ready', source, corrupt: message } satisfies ReaderMessage);
        else port.postMessage({ type: 'failed', source, message } satisfies ReaderMessage);
      }
    }
    await yieldToLoop();
  }
}

void main();
