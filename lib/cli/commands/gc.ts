// usnap gc <store> [--keep N]: drop unreferenced data and, optionally, old snapshots.
import type { Command } from 'commander';
import { act, CliError, examples, EXIT_USAGE, formatBytes, keyValues, parseCount, print, printJson, withStore } from '../util';

export function registerGc(program: Command): void {
  program
    .command('gc')
    .description('remove unreferenced data and, with --keep, all but the newest N snapshots of each region')
    .argument('<store>', 'store file (opened for writing: no other process may be writing to it)')
    .option('-k, --keep <n>', 'snapshots to keep per region (newest first); later snapshots stay restorable', parseCount)
    .option('-f, --force', 'allow --keep 0, which deletes every snapshot')
    .addHelpText(
      'after',
      examples([
        ['usnap gc state.usnap', 'reclaim space only; no snapshot is deleted'],
        ['usnap gc state.usnap --keep 10', 'keep the newest 10 snapshots of each region'],
        ['usnap gc state.usnap --keep 1 --json', '{ deletedSnapshots, freedBlobs, freedBytes, fileBytesBefore, fileBytesAfter }'],
      ]) + '\nDeleting a snapshot merges its chunks into its children, so every kept snapshot stays restorable.\n',
    )
    .action(
      act((ctx, file: string, opts: { keep?: number; force?: boolean }) => {
        if (opts.keep === 0 && !opts.force) {
          throw new CliError('USAGE', '--keep 0 would delete every snapshot', 'Pass --force with --keep 0 to delete them all, or keep at least 1.', EXIT_USAGE);
        }
        return withStore(file, { write: true }, async (store) => {
          const before = store.stats();
          const r = await store.gc(opts.keep === undefined ? {} : { keep: opts.keep, force: opts.force === true });
          const after = store.stats();
          const result = {
            store: store.path,
            keep: opts.keep ?? null,
            deletedSnapshots: r.deletedSnapshots,
            freedBlobs: r.freedBlobs,
            freedBytes: r.freedBytes,
            snapshotsLeft: after.snapshots,
            fileBytesBefore: before.fileBytes,
            fileBytesAfter: after.fileBytes,
          };
          if (ctx.json) {
            printJson(result);
            return;
          }
          print(
            keyValues(ctx, [
              ['deleted', r.deletedSnapshots.length ? `${r.deletedSnapshots.length} snapshot(s): ${r.deletedSnapshots.join(', ')}` : 'no snapshots'],
              ['freed', `${r.freedBlobs} chunk blob(s), ${formatBytes(r.freedBytes)}`],
              ['left', `${after.snapshots} snapshot(s)`],
              ['file', `${formatBytes(before.fileBytes)} -> ${formatBytes(after.fileBytes)}`],
            ]),
          );
        });
      }),
    );
}
