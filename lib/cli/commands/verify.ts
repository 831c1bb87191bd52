// usnap verify <store> [snap]: checksums, lengths and chain completeness.
import type { Command } from 'commander';
import type { VerifyResult } from '../../../store/store';
import type { Store } from '../../../store/store';
import { progressBar } from '../progress';
import { act, type Ctx, examples, EXIT_FAIL, EXIT_OK, parseSnapshotId, print, resolveSnapshot, type SnapshotRef, printJson, table, withStore } from '../util';

/** store.verify() with a progress bar on a terminal. */
function verifyWithProgress(ctx: Ctx, store: Store, id: number | undefined): VerifyResult {
  if (!ctx.progress) return store.verify(id);
  if (id !== undefined) store.info(id);  // NOT_FOUND before any work
  let bar: ReturnType<typeof progressBar> | undefined;
  try {
    return store.verify(id, {
      onProgress: (done, total) => {
        bar ??= progressBar(ctx, 'verifying', total, 'chunks');
        bar.update(done);
      },
    });
  } finally {
    bar?.stop();
  }
}

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('check checksums, lengths and snapshot chains of a whole store, or of one snapshot and what it stands on')
    .argument('<store>', 'store file')
    .argument('[snap]', 'snapshot id, or latest (default: every snapshot)', parseSnapshotId)
    .addHelpText(
      'after',
      examples([
        ['usnap verify state.usnap', 'the whole store (also runs SQLite quick_check)'],
        ['usnap verify state.usnap 7', 'snapshot 7 and its ancestors'],
        ['usnap verify state.usnap --json', '{ ok, snapshots, chunks, problems: [{ code, snapshot?, chunk?, blob?, message }] }'],
      ]) + '\nExits 0 when everything checks out, 1 when a problem is found.\n',
    )
    .action(
      act((ctx, file: string, ref: SnapshotRef | undefined) =>
        withStore(file, {}, (store) => {
          const id = ref === undefined ? undefined : resolveSnapshot(store, ref);
          const r = verifyWithProgress(ctx, store, id);
          if (ctx.json) {
            printJson({ ok: r.ok, store: store.path, snapshot: id ?? null, snapshots: r.snapshots, chunks: r.chunks, problems: r.problems });
            return r.ok ? EXIT_OK : EXIT_FAIL;
          }
          const { c } = ctx;
          const scope = id === undefined ? `${r.snapshots} snapshot(s)` : `snapshot ${id} and ${r.snapshots - 1} ancestor(s)`;
          if (r.ok) {
            print(`${c.green('ok')}: ${scope}, ${r.chunks} stored chunks, every checksum matches`);
            return EXIT_OK;
          }
          print(`${c.red('FAILED')}: ${r.problems.length} problem(s) in ${scope} (${r.chunks} stored chunks checked)`);
          print();
          print(
            table(
              ctx,
              ['SNAPSHOT', 'CHUNK', 'BLOB', 'PROBLEM'],
              r.problems.map((p) => [p.snapshot ?? '-', p.chunk ?? '-', p.blob ?? '-', p.message]),
              ['r', 'r', 'r', 'l'],
            ),
          );
          process.stderr.write(`usnap: verification failed: ${r.problems.length} problem(s) [STORE_CORRUPT]\n`);
          process.stderr.write('hint: restore the store from a backup; a snapshot whose chain (`usnap info`) avoids the damaged ones is still restorable.\n');
          return EXIT_FAIL;
        }),
      ),
    );
}
