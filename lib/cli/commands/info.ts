// usnap info <store> <snap>: one snapshot in detail.
import type { Command } from 'commander';
import { CHUNK_SIZE } from '../../../core/native';
import { chunkMap } from '../../../store/image';
import { snapshotJson } from '../shape';
import { act, type Ctx, examples, formatBytes, formatRatio, formatTime, isRemoteUrl, keyValues, parseSnapshotRef, print, printJson, resolveSnapshot, snapshotRefFor, type SnapshotRef, withRemote, withStore } from '../util';

/** usnap info s3://... <id>: one remote snapshot and its history. */
function infoRemote(ctx: Ctx, url: string, id: string): Promise<void> {
  return withRemote(ctx, url, {}, async (remote) => {
    const s = await remote.info(id);
    const chain = (await remote.chain(id)).map((l) => l.id);
    if (ctx.json) {
      printJson({ remote: url, ...s, createdAt: s.createdAt.toISOString(), chain });
      return;
    }
    print(
      keyValues(ctx, [
        ['snapshot', ctx.c.bold(s.id)],
        ['region', `${s.region} (${formatBytes(s.regionSize)})`],
        ['parent', s.parent ?? 'none (full snapshot)'],
        ['chain', chain.join(' <- ')],
        ['label', s.label ?? '-'],
        ['created', `${formatTime(s.createdAt)} (${s.createdAt.toISOString()})`],
        ['chunks', `${s.chunks} recorded by this snapshot`],
      ]),
    );
  });
}

export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('show one snapshot: region, parent, label, time, pages, sizes, compression and dedup ratios')
    .argument('<store>', 'store file, or s3://bucket/prefix')
    .argument('<snap>', 'snapshot id, or latest', parseSnapshotRef)
    .addHelpText(
      'after',
      examples([
        ['usnap info state.usnap 3', 'human summary'],
        ['usnap info state.usnap 3 --json', 'all fields (see docs/cli.md)'],
      ]) +
        '\ncompression ratio = raw bytes / stored bytes (LZ4); dedup ratio = stored bytes / bytes new to the store.\n',
    )
    .action(
      act((ctx, file: string, ref: SnapshotRef | string) =>
        isRemoteUrl(file) ? infoRemote(ctx, file, snapshotRefFor(file, ref) as string) : withStore(file, {}, (store) => {
          const id = resolveSnapshot(store, snapshotRefFor(file, ref) as SnapshotRef);
          const s = store.info(id);
          const chain = store.ancestors(id);
          const children = store.list().filter((x) => x.parent === id).map((x) => x.id);
          const map = chunkMap(store, id);
          let dataChunks = 0;
          for (let i = 0; i < map.chunks; i++) if (map.blob[i] !== 0) dataChunks++;
          const j = {
            ...snapshotJson(s),
            chain,
            children,
            image: {
              chunks: map.chunks,
              dataChunks,
              zeroChunks: map.chunks - dataChunks,
              dataBytes: Math.min(dataChunks * CHUNK_SIZE, s.regionSize),
            },
          };
          if (ctx.json) {
            printJson(j);
            return;
          }
          const { c } = ctx;
          print(
            keyValues(ctx, [
              ['snapshot', c.bold(String(s.id))],
              ['region', `${s.region} (${formatBytes(s.regionSize)}, ${map.chunks} chunks of 64 KiB)`],
              ['parent', s.parent === null ? 'none (full snapshot)' : String(s.parent)],
              ['chain', chain.join(' <- ')],
              ['children', children.length ? children.join(', ') : '-'],
              ['label', s.label ?? '-'],
              ['created', `${formatTime(s.createdAt)} (${s.createdAt.toISOString()})`],
              ['pages', `${s.pages} (${s.chunks} chunks saved by this snapshot)`],
              ['raw', `${formatBytes(s.rawBytes)} (${s.rawBytes} bytes)`],
              ['stored', `${formatBytes(s.storedBytes)} (${s.storedBytes} bytes)`],
              ['new', `${formatBytes(s.uniqueBytes)} (${s.uniqueBytes} bytes added to the store after dedup)`],
              ['compression', `${formatRatio(j.compressionRatio)} (raw / stored)`],
              ['dedup', `${formatRatio(j.dedupRatio)} (stored / new)`],
              ['image', `${dataChunks} data chunks, ${map.chunks - dataChunks} zero chunks`],
            ]),
          );
        }),
      ),
    );
}
