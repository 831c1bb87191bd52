// Progress bars on stderr, shown only when stderr is a terminal and output is not --json.
import cliProgress from 'cli-progress';
import type { Ctx } from './util';

export interface Progress {
  update(done: number, total?: number): void;
  stop(): void;
}

const NONE: Progress = { update() {}, stop() {} };

/** A bar titled `title` counting `unit`s (e.g. chunks); a no-op when progress is off. */
export function progressBar(ctx: Ctx, title: string, total: number, unit: string): Progress {
  if (!ctx.progress || total <= 0) return NONE;
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${title.padEnd(10)} ${ctx.c.cyan('{bar}')} {percentage}% | {value}/{total} ${unit} | {eta_formatted}`,
      barCompleteChar: '\u2588',
      barIncompleteChar: '\u2591',
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 50,
      fps: 12,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  let stopped = false;
  return {
    update(done, newTotal) {
      if (newTotal !== undefined && newTotal !== bar.getTotal()) bar.setTotal(newTotal);
      bar.update(done);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}
