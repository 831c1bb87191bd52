// usnap info <store> <snap>: one snapshot in detail.
import type { Command } from 'commander';
import { CHUNK_SIZE } from '../../../core/native';
import { chunkMap } from '../../../store/image';
import { snapshotJson } from '../shape';
import { act, examples, formatBytes, formatRatio, formatTime, keyValues, parseSnapshotId, print, resolveSnapshot, type SnapshotRef, printJson, withStore } from '../util';

export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('show one snapshot: region, parent, label, time, pages, sizes, compression and dedup ratios')
    .argument('<store>', 'store file')
    .argument('<snap>', 'snapshot id, or latest', parseSnapshotId)
    .addHelpText(
      'after',
      examples([
        ['usnap info state.usnap 3', 'human summary'],
        ['usnap info state.usnap 3 --json', 'all fields (see docs/cli.md)'],
      ]) +
        '\ncompression ratio = raw bytes / stored bytes (LZ4); dedup ratio = stored bytes / bytes new to the store.\n',
    )
    .action(
      act((ctx, file: string, ref: SnapshotRef) =>
        withStore(file, {}, (store) => {
          const id = resolveSnapshot(store, ref);
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
