// usnap list <store>: the snapshots in a store, oldest first.
import type { Command } from 'commander';
import type { SnapshotInfo } from '../../../store/store';
import { snapshotJson } from '../shape';
import { act, type Ctx, examples, formatBytes, formatTime, isRemoteUrl, print, printJson, table, withRemote, withStore } from '../util';

/** usnap list s3://...: the snapshots on a remote. */
function listRemote(ctx: Ctx, url: string, region: string | undefined): Promise<void> {
  return withRemote(ctx, url, {}, async (remote) => {
    const snaps = await remote.list(region === undefined ? {} : { region });
    if (ctx.json) {
      printJson({ remote: url, snapshots: snaps.map((s) => ({ ...s, createdAt: s.createdAt.toISOString() })) });
      return;
    }
    const { c } = ctx;
    if (snaps.length === 0) print(c.dim(`no snapshots in ${url}`));
    else {
      print(
        table(
          ctx,
          ['ID', 'REGION', 'PARENT', 'LABEL', 'CREATED', 'CHUNKS', 'SIZE'],
          snaps.map((s) => [c.bold(s.id), s.region, s.parent === null ? c.dim('full') : s.parent.slice(0, 8), s.label ?? c.dim('-'), formatTime(s.createdAt), s.chunks, formatBytes(s.regionSize)]),
          ['l', 'l', 'l', 'l', 'l', 'r', 'r'],
        ),
      );
    }
    print(c.dim(`${snaps.length} snapshot(s) in ${url}`));
  });
}

export function registerList(program: Command): void {
  program
    .command('list')
    .description('list the snapshots in a store, oldest first, with their regions and sizes')
    .argument('<store>', 'store file, or s3://bucket/prefix')
    .option('-r, --region <name>', 'only snapshots of this region')
    .option('-t, --tree', 'the history as a tree: each snapshot under its parent, clones as branches of another region')
    .addHelpText(
      'after',
      examples([
        ['usnap list state.usnap', 'table of snapshots'],
        ['usnap list state.usnap --region heap', 'one region only'],
        ['usnap list state.usnap --tree', 'histories and branches (clones) as a tree'],
        ['usnap list state.usnap --json', '{ store, regions[], snapshots[], totals }'],
        ['usnap list s3://backups/app', 'snapshots on a remote'],
      ]),
    )
    .action(
      act((ctx, file: string, opts: { region?: string; tree?: boolean }) =>
        isRemoteUrl(file) ? listRemote(ctx, file, opts.region) : withStore(file, {}, (store) => {
          const snaps = store.list(opts.region === undefined ? {} : { region: opts.region });
          const byId = new Map(snaps.map((s) => [s.id, s]));
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
          if (opts.tree && snaps.length) {
            print(tree(snaps, (s) => {
              const parent = s.parent === null ? undefined : byId.get(s.parent);
              const branch = parent && parent.region !== s.region ? c.yellow(` branch "${s.region}" from "${parent.region}"`) : '';
              return `${c.bold(String(s.id))} ${s.region}${branch}${s.label ? ` ${JSON.stringify(s.label)}` : ''} ${c.dim(`${formatTime(s.createdAt)}, ${s.pages} pages, ${formatBytes(s.uniqueBytes)} new`)}`;
            }));
          } else if (snaps.length === 0) {
            print(c.dim(opts.region === undefined ? `no snapshots in ${store.path}` : `no snapshots of region "${opts.region}" in ${store.path}`));
          } else {
            print(
              table(
                ctx,
                ['ID', 'REGION', 'PARENT', 'LABEL', 'CREATED', 'PAGES', 'RAW', 'STORED', 'NEW'],
                snaps.map((s) => [
                  c.bold(String(s.id)),
                  s.region,
                  s.parent === null ? c.dim('full') : byId.get(s.parent) && byId.get(s.parent)!.region !== s.region ? `${s.parent} (${byId.get(s.parent)!.region})` : s.parent,
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

/** Snapshots drawn under their parents; roots are those whose parent is not listed. */
function tree(snaps: SnapshotInfo[], line: (s: SnapshotInfo) => string): string {
  const listed = new Set(snaps.map((s) => s.id));
  const children = new Map<number | null, SnapshotInfo[]>();
  for (const s of snaps) {
    const p = s.parent !== null && listed.has(s.parent) ? s.parent : null;
    children.set(p, [...(children.get(p) ?? []), s]);
  }
  const out: string[] = [];
  // lead: what precedes the snapshot's line; indent: where its children's lines start.
  // Iterative: a history can be far deeper than the call stack.
  const stack: { s: SnapshotInfo; lead: string; indent: string }[] = [];
  const push = (list: SnapshotInfo[], indent: string) => {
    for (let i = list.length - 1; i >= 0; i--) {
      const last = i === list.length - 1;
      stack.push({ s: list[i]!, lead: indent + (last ? '└─ ' : '├─ '), indent: indent + (last ? '   ' : '│  ') });
    }
  };
  for (const r of [...(children.get(null) ?? [])].reverse()) stack.push({ s: r, lead: '', indent: '' });
  while (stack.length) {
    const { s, lead, indent } = stack.pop()!;
    out.push(lead + line(s));
    const kids = children.get(s.id) ?? [];
    // A single child goes on the next line at the same column: a long chain stays flat.
    if (kids.length === 1) stack.push({ s: kids[0]!, lead: indent, indent });
    else push(kids, indent);
  }
  return out.join('\n');
}
