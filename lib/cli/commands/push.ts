// usnap push <store> <url> [snap...]: upload snapshots (and what they stand on) to an S3 remote.
import type { Command } from 'commander';
import { progressBar } from '../progress';
import { act, examples, formatBytes, keyValues, parseSnapshotId, print, resolveSnapshot, printJson, table, withRemote, withStore } from '../util';

export function registerPush(program: Command): void {
  program
    .command('push')
    .description('upload snapshots, and the snapshots they stand on, to an S3 remote (chunks the remote holds are skipped)')
    .argument('<store>', 'store file')
    .argument('<url>', 'remote, s3://bucket/prefix')
    .argument('[snap...]', 'snapshot ids (default: all)')
    .option('-r, --region <name>', 'only snapshots of this region')
    .option('--create-bucket', 'create the bucket if it does not exist')
    .addHelpText(
      'after',
      examples([
        ['usnap push state.usnap s3://backups/app', 'every snapshot'],
        ['usnap push state.usnap s3://backups/app 7', 'snapshot 7 and its ancestors'],
        ['usnap --key-file key push state.usnap s3://backups/app', 'sealed with AES-256-GCM'],
        ['usnap push state.usnap s3://backups/app --json', '{ snapshots: [{ local, id }], chunksUploaded, ... }'],
      ]) +
        '\nThe endpoint and keys come from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\n' +
        '(or the AWS SDK\'s shared config files). See docs/remote.md.\n',
    )
    .action(
      act((ctx, file: string, url: string, snaps: string[], opts: { region?: string; createBucket?: boolean }) =>
        withStore(file, {}, (store) =>
          withRemote(ctx, url, { createBucket: opts.createBucket }, async (remote) => {
            const ids = snaps.map((s) => resolveSnapshot(store, parseSnapshotId(s)));
            const bar = progressBar(ctx, 'pushing', 1, 'chunks');
            let r;
            try {
              r = await store.push(remote, {
                ...(ids.length ? { snapshot: ids } : {}),
                ...(opts.region !== undefined ? { region: opts.region } : {}),
                onProgress: (done, total) => bar.update(done, total),
              });
            } finally {
              bar.stop();
            }
            const st = remote.stats();
            if (ctx.json) return printJson({ remote: url, ...r, requests: st.requests });
            if (r.snapshots.length) print(table(ctx, ['LOCAL', 'REMOTE ID'], r.snapshots.map((s) => [s.local, s.id]), ['r', 'l']));
            print(
              keyValues(ctx, [
                ['pushed', `${r.snapshots.length} snapshot(s) to ${url}`],
                ['chunks', `${r.chunksUploaded} uploaded, ${r.chunksPresent} already there`],
                ['uploaded', `${formatBytes(r.bytesUploaded)} in ${st.requests} requests`],
              ]),
            );
          }),
        ),
      ),
    );
}
