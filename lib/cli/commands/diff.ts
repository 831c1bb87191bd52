// usnap diff <store> <a> <b>: the 64 KiB chunks whose contents differ between two snapshots,
// and a map of the region showing where.
import type { Command } from 'commander';
import { CHUNK_SIZE } from '../../../core/native';
import { chunkRanges, diffChunks, type ChangeKind, type DiffResult } from '../../../store/image';
import { act, type Ctx, examples, formatBytes, parseCount, parseSnapshotId, print, resolveSnapshot, type SnapshotRef, printJson, table, withStore } from '../util';

const MAP_WIDTH = 64;
const MAP_MAX_CELLS = 256;

export interface DiffRange {
  /** Byte offsets in the region, end exclusive. */
  start: number;
  end: number;
  /** Chunk indices, both inclusive. */
  firstChunk: number;
  lastChunk: number;
  chunks: number;
}

export function rangesOf(d: DiffResult): DiffRange[] {
  return chunkRanges(d.changed.map((x) => x.chunk)).map(({ first, last }) => ({
    start: first * CHUNK_SIZE,
    end: Math.min((last + 1) * CHUNK_SIZE, d.regionSize),
    firstChunk: first,
    lastChunk: last,
    chunks: last - first + 1,
  }));
}

function hex(n: number, width: number): string {
  return '0x' + n.toString(16).padStart(width, '0');
}

/** Rows of block characters: one cell per `per` chunks, shaded by the fraction that changed. */
export function drawMap(ctx: Ctx, d: DiffResult): { lines: string[]; per: number } {
  const per = Math.max(1, Math.ceil(d.chunks / MAP_MAX_CELLS));
  const cells = Math.ceil(d.chunks / per);
  const count = new Uint32Array(cells);
  const kinds: Record<ChangeKind, Uint32Array> = { added: new Uint32Array(cells), removed: new Uint32Array(cells), modified: new Uint32Array(cells) };
  for (const x of d.changed) {
    const cell = Math.floor(x.chunk / per);
    count[cell]!++;
    kinds[x.kind][cell]!++;
  }
  const { c } = ctx;
  const width = Math.max(1, (d.regionSize - 1).toString(16).length);
  const lines: string[] = [];
  for (let row = 0; row * MAP_WIDTH < cells; row++) {
    // Runs of cells with one style share one colour escape.
    let s = '';
    let run = '';
    let style: ((x: string) => string) | null = null;
    const put = (glyph: string, st: (x: string) => string) => {
      if (st !== style) {
        if (run) s += style!(run);
        run = '';
        style = st;
      }
      run += glyph;
    };
    for (let i = row * MAP_WIDTH; i < Math.min(cells, (row + 1) * MAP_WIDTH); i++) {
      const inCell = Math.min(per, d.chunks - i * per);
      const f = count[i]! / inCell;
      if (f === 0) {
        put('\u00b7', c.dim);
        continue;
      }
      const glyph = f >= 1 ? '\u2588' : f > 2 / 3 ? '\u2593' : f > 1 / 3 ? '\u2592' : '\u2591';
      const a = kinds.added[i]!, r = kinds.removed[i]!, m = kinds.modified[i]!;
      put(glyph, m >= a && m >= r ? c.yellow : a >= r ? c.green : c.red);
    }
    if (run) s += style!(run);
    lines.push(`${c.dim(hex(row * MAP_WIDTH * per * CHUNK_SIZE, width))} ${s}`);
  }
  return { lines, per };
}

export function registerDiff(program: Command): void {
  program
    .command('diff')
    .description('list the chunks whose contents differ between two snapshots, with a map of the region')
    .argument('<store>', 'store file')
    .argument('<a>', 'older snapshot id', parseSnapshotId)
    .argument('<b>', 'newer snapshot id, or latest', parseSnapshotId)
    .option('--limit <n>', 'ranges listed in human output (0: all)', parseCount, 20)
    .addHelpText(
      'after',
      examples([
        ['usnap diff state.usnap 2 3', 'map and changed ranges'],
        ['usnap diff state.usnap 1 9 --limit 0', 'every range'],
        ['usnap diff state.usnap 2 3 --json', '{ a, b, ranges: [{ start, end, firstChunk, lastChunk }], changed: [{ chunk, kind }] }'],
      ]) +
        '\nA chunk counts as changed only when its contents differ (compared by stored blob, nothing is decoded).\n' +
        'Map: one cell per N chunks (N shown), \u00b7 unchanged, \u2591\u2592\u2593\u2588 share of the cell that changed;\n' +
        'on a terminal: yellow modified, green added (was zero), red removed (now zero).\n',
    )
    .action(
      act((ctx, file: string, refA: SnapshotRef, refB: SnapshotRef, opts: { limit: number }) =>
        withStore(file, {}, (store) => {
          const a = resolveSnapshot(store, refA);
          const b = resolveSnapshot(store, refB);
          const ia = store.info(a);
          const ib = store.info(b);
          const d = diffChunks(store, a, b);
          const ranges = rangesOf(d);
          const changedBytes = ranges.reduce((n, r) => n + (r.end - r.start), 0);
          const counts = { added: 0, removed: 0, modified: 0 };
          for (const x of d.changed) counts[x.kind]++;
          if (ctx.json) {
            printJson({
              a,
              b,
              regionA: ia.region,
              regionB: ib.region,
              regionSize: d.regionSize,
              chunkSize: CHUNK_SIZE,
              chunks: d.chunks,
              changedChunks: d.changed.length,
              changedBytes,
              counts,
              ranges,
              changed: d.changed,
            });
            return;
          }
          const { c } = ctx;
          const regionNote = ia.region === ib.region ? `region ${ia.region}` : `regions ${ia.region} and ${ib.region}`;
          print(
            `${c.bold(`snapshot ${a} -> ${b}`)} (${regionNote}, ${formatBytes(d.regionSize)}): ` +
              `${d.changed.length} of ${d.chunks} chunks changed (${formatBytes(changedBytes)}; ` +
              `${counts.modified} modified, ${counts.added} added, ${counts.removed} zeroed)`,
          );
          if (ia.region !== ib.region) print(c.yellow('note: the two snapshots are of different regions'));
          const map = drawMap(ctx, d);
          print();
          for (const l of map.lines) print(l);
          print(c.dim(`${' '.repeat(Math.max(1, (d.regionSize - 1).toString(16).length) + 3)}1 cell = ${map.per} chunk${map.per === 1 ? '' : 's'} (${formatBytes(map.per * CHUNK_SIZE)})`));
          if (ranges.length === 0) return;
          print();
          const shown = opts.limit === 0 ? ranges : ranges.slice(0, opts.limit);
          const w = Math.max(1, (d.regionSize - 1).toString(16).length);
          print(
            table(
              ctx,
              ['START', 'END', 'CHUNKS', 'SIZE'],
              shown.map((r) => [hex(r.start, w), hex(r.end, w), r.chunks === 1 ? String(r.firstChunk) : `${r.firstChunk}-${r.lastChunk}`, formatBytes(r.end - r.start)]),
              ['r', 'r', 'r', 'r'],
            ),
          );
          if (shown.length < ranges.length) print(c.dim(`... ${ranges.length - shown.length} more ranges (--limit 0 lists all, --json gives them all)`));
        }),
      ),
    );
}
