// usnap cat <store> <snap> [--offset N] [--length N]: a snapshot's bytes on stdout, no region needed.
import type { Command } from 'commander';
import { SnapshotError } from '../../../core/errors';
import { chunkMap } from '../../../store/image';
import { act, examples, parseCount, parseSize, parseSnapshotId, resolveSnapshot, type SnapshotRef, withStore } from '../util';

/** Bytes read from the store per step: bounded memory for any length. */
const STEP = 4 << 20;

function parseBytes(value: string): number {
  return /^[0-9]+$/.test(value) ? parseCount(value) : parseSize(value);
}

async function writeOut(buf: Buffer): Promise<void> {
  if (process.stdout.write(buf)) return;
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      process.stdout.off('drain', done);
      process.stdout.off('error', done);
      if (err) reject(err);
      else resolve();
    };
    process.stdout.on('drain', done);
    process.stdout.on('error', done);
  });
}

export function registerCat(program: Command): void {
  program
    .command('cat')
    .description("write a snapshot's bytes to stdout (zeros where it has zeros), every chunk checksum-checked")
    .argument('<store>', 'store file')
    .argument('<snap>', 'snapshot id, or latest', parseSnapshotId)
    .option('--offset <bytes>', 'first byte (e.g. 4096, 64K)', parseBytes, 0)
    .option('--length <bytes>', 'bytes to write (default: to the end of the region)', parseBytes)
    .addHelpText(
      'after',
      examples([
        ['usnap cat state.usnap 3 --offset 64K --length 4096 | xxd | head', 'one page of snapshot 3'],
        ['usnap cat state.usnap 3 > heap.bin', 'the whole image (not sparse: see `usnap restore`)'],
      ]) + '\nA range beyond the region is an INVALID_ARGUMENT error (exit 1); a damaged chunk is STORE_CORRUPT, and nothing past it is written.\n',
    )
    .action(
      act((_ctx, file: string, ref: SnapshotRef, opts: { offset: number; length?: number }) =>
        withStore(file, {}, async (store) => {
          const id = resolveSnapshot(store, ref);
          const size = chunkMap(store, id).regionSize;
          const length = opts.length ?? Math.max(0, size - opts.offset);
          if (opts.offset + length > size) {
            throw new SnapshotError('INVALID_ARGUMENT', `range ${opts.offset}+${length} goes beyond snapshot ${id} (${size} bytes)`, {
              hint: `Read within [0, ${size}).`,
            });
          }
          for (let at = opts.offset; at < opts.offset + length; at += STEP) {
            await writeOut(store.read(id, at, Math.min(STEP, opts.offset + length - at)));
          }
        }),
      ),
    );
}
