// usnap verify <store> [snap]: checksums, lengths and chain completeness.
import type { Command } from 'commander';
import type { VerifyResult } from '../../../store/store';
import type { Store } from '../../../store/store';
import { progressBar } from '../progress';
import { act, type Ctx, examples, EXIT_FAIL, EXIT_OK, isRemoteUrl, parseSnapshotRef, print, printJson, resolveSnapshot, snapshotRefFor, type SnapshotRef, table, withRemote, withStore } from '../util';

/** usnap verify s3://... [id]: fetches every chunk and checks it against its SHA-256. */
function verifyRemote(ctx: Ctx, url: string, id: string | undefined): Promise<number> {
  return withRemote(ctx, url, {}, async (remote) => {
    const bar = progressBar(ctx, 'verifying', 1, 'chunks');
    let r;
    try {
      r = await remote.verify(id, { onProgress: (done, total) => bar.update(done, total) });
    } finally {
      bar.stop();
    }
    if (ctx.json) printJson({ ok: r.ok, remote: url, snapshot: id ?? null, snapshots: r.snapshots, chunks: r.chunks, problems: r.problems });
    else if (r.ok) print(`${ctx.c.green('ok')}: ${r.snapshots} snapshot(s), ${r.chunks} chunk objects, every hash matches`);
    else {
      print(`${ctx.c.red('FAILED')}: ${r.problems.length} problem(s) (${r.chunks} chunk objects checked)`);
      print(table(ctx, ['SNAPSHOT', 'CHUNK', 'PROBLEM'], r.problems.map((p) => [p.snapshot, p.chunk ?? '-', p.message]), ['l', 'r', 'l']));
    }
    if (!r.ok) process.stderr.write(`usnap: verification failed: ${r.problems.length} problem(s) [STORE_CORRUPT]\nhint: push the damaged snapshots again from a store that has them.\n`);
    return r.ok ? EXIT_OK : EXIT_FAIL;
  });
}

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
    .argument('<store>', 'store file, or s3://bucket/prefix')
    .argument('[snap]', 'snapshot id, or latest (default: every snapshot)', parseSnapshotRef)
    .addHelpText(
      'after',
      examples([
        ['usnap verify state.usnap', 'the whole store (also runs SQLite quick_check)'],
        ['usnap verify state.usnap 7', 'snapshot 7 and its ancestors'],
        ['usnap verify state.usnap --json', '{ ok, snapshots, chunks, problems: [{ code, snapshot?, chunk?, blob?, message }] }'],
      ]) + '\nExits 0 when everything checks out, 1 when a problem is found.\n',
    )
    .action(
      act((ctx, file: string, ref: SnapshotRef | string | undefined) =>
        isRemoteUrl(file) ? verifyRemote(ctx, file, ref === undefined ? undefined : (snapshotRefFor(file, ref) as string)) : withStore(file, {}, (store) => {
          const id = ref === undefined ? undefined : resolveSnapshot(store, snapshotRefFor(file, ref) as SnapshotRef);
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
