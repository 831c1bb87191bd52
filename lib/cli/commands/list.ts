// usnap list <store>: the snapshots in a store, oldest first.
import type { Command } from 'commander';
import { snapshotJson } from '../shape';
import { act, examples, formatBytes, formatTime, print, printJson, table, withStore } from '../util';

export function registerList(program: Command): void {
  program
    .command('list')
    .description('list the snapshots in a store, oldest first, with their regions and sizes')
    .argument('<store>', 'store file')
    .option('-r, --region <name>', 'only snapshots of this region')
    .addHelpText(
      'after',
      examples([
        ['usnap list state.usnap', 'table of snapshots'],
        ['usnap list state.usnap --region heap', 'one region only'],
        ['usnap list state.usnap --json', '{ store, regions[], snapshots[], totals }'],
      ]),
    )
    .action(
      act((ctx, file: string, opts: { region?: string }) =>
        withStore(file, {}, (store) => {
          const snaps = store.list(opts.region === undefined ? {} : { region: opts.region });
          const regions = store.regionsInfo().filter((r) => opts.region === undefined || r.name === opts.region);
          const st = store.stats();
          if (ctx.json) {
            printJson({
              store: store.path,
              regions: regions.map((r) => ({ name: r.name, size: r.size, snapshots: r.snapshots })),
              snapshots: snaps.map(snapshotJson),
              totals: { snapshots: st.snapshots, regions: store.regionsInfo().length, blobs: st.blobs, storedBytes: st.storedBytes, fileBytes: st.fileBytes },
            });
            return;
          }
          const { c } = ctx;
          if (snaps.length === 0) {
            print(c.dim(opts.region === undefined ? `no snapshots in ${store.path}` : `no snapshots of region "${opts.region}" in ${store.path}`));
          } else {
            print(
              table(
                ctx,
                ['ID', 'REGION', 'PARENT', 'LABEL', 'CREATED', 'PAGES', 'RAW', 'STORED', 'NEW'],
                snaps.map((s) => [
                  c.bold(String(s.id)),
                  s.region,
                  s.parent === null ? c.dim('full') : s.parent,
                  s.label ?? c.dim('-'),
                  formatTime(s.createdAt),
                  s.pages,
                  formatBytes(s.rawBytes),
                  formatBytes(s.storedBytes),
                  formatBytes(s.uniqueBytes),
                ]),
                ['r', 'l', 'r', 'l', 'l', 'r', 'r', 'r', 'r'],
              ),
            );
          }
          print(
            c.dim(
              `${st.snapshots} snapshot${st.snapshots === 1 ? '' : 's'} of ${store.regionsInfo().length} region(s); ` +
                `${st.blobs} distinct chunks, ${formatBytes(st.storedBytes)} stored, file ${formatBytes(st.fileBytes)}`,
            ),
          );
        }),
      ),
    );
}
