// usnap pull <url> <store> [snap...]: copy remote snapshots (and what they stand on) into a store.
import type { Command } from 'commander';
import { Store } from '../../../store/store';
import { progressBar } from '../progress';
import { act, examples, formatBytes, keyValues, print, printJson, table, withRemote } from '../util';

export function registerPull(program: Command): void {
  program
    .command('pull')
    .description('copy snapshots from an S3 remote into a store (created if missing), with the snapshots they stand on')
    .argument('<url>', 'remote, s3://bucket/prefix')
    .argument('<store>', 'store file (created if it does not exist)')
    .argument('[snap...]', 'remote snapshot ids (default: all)')
    .option('-r, --region <name>', 'only snapshots of this region')
    .addHelpText(
      'after',
      examples([
        ['usnap pull s3://backups/app copy.usnap', 'every snapshot'],
        ['usnap pull s3://backups/app copy.usnap 3f2a...', 'one snapshot and its ancestors'],
        ['usnap pull s3://backups/app copy.usnap --json', '{ snapshots: [{ id, local }], chunksFetched, bytesDownloaded }'],
      ]) + '\nSnapshots pulled before are not fetched again.\n',
    )
    .action(
      act((ctx, url: string, file: string, snaps: string[], opts: { region?: string }) =>
        withRemote(ctx, url, {}, async (remote) => {
          const store = Store.open(file);
          const bar = progressBar(ctx, 'pulling', 1, 'chunks');
          let r;
          try {
            r = await store.pull(remote, {
              ...(snaps.length ? { snapshot: snaps } : {}),
              ...(opts.region !== undefined ? { region: opts.region } : {}),
              onProgress: (done, total) => bar.update(done, total),
            });
          } finally {
            bar.stop();
            store.close();
          }
          if (ctx.json) return printJson({ remote: url, store: store.path, ...r, requests: remote.stats().requests });
          if (r.snapshots.length) print(table(ctx, ['REMOTE ID', 'LOCAL'], r.snapshots.map((s) => [s.id, s.local]), ['l', 'r']));
          print(
            keyValues(ctx, [
              ['pulled', `${r.snapshots.length} snapshot(s) into ${store.path}`],
              ['fetched', `${r.chunksFetched} chunks, ${formatBytes(r.bytesDownloaded)}`],
            ]),
          );
        }),
      ),
    );
}
