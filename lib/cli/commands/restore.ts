// usnap restore <store> <snap> -o image.bin: the region's memory at a snapshot, as a sparse file.
import type { Command } from 'commander';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CHUNK_SIZE } from '../../../core/native';
import { forEachChunkAt } from '../../../store/image';
import { progressBar } from '../progress';
import { Store } from '../../../store/store';
import { act, CliError, type Ctx, examples, EXIT_FAIL, EXIT_OK, EXIT_USAGE, formatBytes, isRemoteUrl, keyValues, parseSnapshotRef, print, printJson, resolveSnapshot, snapshotRefFor, type SnapshotRef, withRemote, withStore } from '../util';

/**
 * Runs `fn` on a store holding the snapshot: the store file itself, or for an s3:// URL an
 * in-memory store the snapshot is pulled into (every chunk checked against its SHA-256).
 */
async function withSnapshot<T>(ctx: Ctx, where: string, ref: SnapshotRef | string, fn: (store: Store, id: number) => T | Promise<T>): Promise<T> {
  if (!isRemoteUrl(where)) return withStore(where, {}, (store) => fn(store, resolveSnapshot(store, snapshotRefFor(where, ref) as SnapshotRef)));
  return withRemote(ctx, where, {}, async (remote) => {
    const store = Store.open(':memory:');
    try {
      const bar = progressBar(ctx, 'fetching', 1, 'chunks');
      let pulled;
      try {
        pulled = await store.pull(remote, { snapshot: snapshotRefFor(where, ref) as string, onProgress: (done, total) => bar.update(done, total) });
      } finally {
        bar.stop();
      }
      return await fn(store, pulled.snapshots.at(-1)!.local);
    } finally {
      store.close();
    }
  });
}

const ZERO = Buffer.alloc(CHUNK_SIZE);

function isZero(b: Buffer): boolean {
  return b.equals(b.length === CHUNK_SIZE ? ZERO : ZERO.subarray(0, b.length));
}

interface Written {
  regionSize: number;
  chunks: number;
  dataChunks: number;
  zeroChunks: number;
  bytesWritten: number;
  sha256: string;
}

/** Writes the image to `fd`: non-zero chunks at their offsets, holes elsewhere. */
function writeImage(ctx: Ctx, store: Store, id: number, fd: number, total: number): Written {
  const hash = createHash('sha256');
  let dataChunks = 0;
  let bytesWritten = 0;
  const regionSize = store.info(id).regionSize;
  const bar = progressBar(ctx, 'restoring', total, 'chunks');
  try {
    const map = forEachChunkAt(
      store,
      id,
      (k, data) => {
        const len = Math.min(CHUNK_SIZE, regionSize - k * CHUNK_SIZE);
        if (data === null || isZero(data)) {
          hash.update(len === CHUNK_SIZE ? ZERO : ZERO.subarray(0, len));
          return;
        }
        hash.update(data);
        let off = 0;
        while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off, k * CHUNK_SIZE + off);
        dataChunks++;
        bytesWritten += data.length;
      },
      { onProgress: (done) => bar.update(done) },
    );
    fs.ftruncateSync(fd, map.regionSize);
    fs.fsyncSync(fd);
    return { regionSize: map.regionSize, chunks: map.chunks, dataChunks, zeroChunks: map.chunks - dataChunks, bytesWritten, sha256: hash.digest('hex') };
  } finally {
    bar.stop();
  }
}

/** Re-reads the image and compares every chunk with the store's decoded data. */
function verifyImage(ctx: Ctx, store: Store, id: number, file: string, total: number): { ok: boolean; mismatches: number[] } {
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(CHUNK_SIZE);
  const mismatches: number[] = [];
  const regionSize = store.info(id).regionSize;
  const bar = progressBar(ctx, 'verifying', total, 'chunks');
  try {
    const size = fs.fstatSync(fd).size;
    const map = forEachChunkAt(
      store,
      id,
      (k, data) => {
        const want = Math.min(CHUNK_SIZE, size - k * CHUNK_SIZE);
        let got = 0;
        while (got < want) {
          const n = fs.readSync(fd, buf, got, want - got, k * CHUNK_SIZE + got);
          if (n === 0) break;
          got += n;
        }
        const actual = buf.subarray(0, got);
        const expected = data ?? ZERO.subarray(0, Math.min(CHUNK_SIZE, regionSize - k * CHUNK_SIZE));
        if (!actual.equals(expected)) mismatches.push(k);
      },
      { onProgress: (done) => bar.update(done) },
    );
    if (size !== map.regionSize) mismatches.push(-1);
  } finally {
    bar.stop();
    fs.closeSync(fd);
  }
  return { ok: mismatches.length === 0, mismatches };
}

/**
 * What -o may name: a new file, or (with --force) an existing regular file that is not the
 * store itself. A device, FIFO or socket is never replaced, --force or not.
 */
function checkOutput(store: Store, given: string, out: string, force: boolean): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(out);
  } catch {
    return;  // does not exist (or cannot be read): creating the temporary file reports it
  }
  if (st.isDirectory()) throw new CliError('NOT_A_FILE', `${given} is a directory`, 'Pass a file name to -o.', EXIT_USAGE);
  if (!st.isFile()) {
    throw new CliError('NOT_A_FILE', `${given} is not a regular file (a device, FIFO or socket): usnap never replaces one`, 'Pass the name of a regular file to -o.', EXIT_USAGE);
  }
  for (const f of [store.path, `${store.path}-wal`, `${store.path}-shm`]) {
    let s: fs.Stats;
    try {
      s = fs.statSync(f);
    } catch {
      continue;
    }
    if (s.dev === st.dev && s.ino === st.ino) {
      throw new CliError('SAME_FILE', `${given} is the store being read (${f})`, 'Write the image to another file.', EXIT_USAGE);
    }
  }
  if (!force) throw new CliError('EXISTS', `${given} already exists`, 'Pass --force to overwrite it, or choose another -o file.');
}

export function registerRestore(program: Command): void {
  program
    .command('restore')
    .description("write a region's memory at a snapshot to a file (sparse: zero chunks become holes)")
    .argument('<store>', 'store file, or s3://bucket/prefix')
    .argument('<snap>', 'snapshot id, or latest', parseSnapshotRef)
    .requiredOption('-o, --output <file>', 'image file to write')
    .option('-f, --force', 'overwrite the output file if it exists')
    .option('--verify', 're-read the written image and check every chunk against the store')
    .addHelpText(
      'after',
      examples([
        ['usnap restore state.usnap 3 -o heap.bin', 'the region image at snapshot 3'],
        ['usnap restore state.usnap 3 -o heap.bin --verify --force', 'overwrite, then check it'],
        ['usnap restore state.usnap 3 -o heap.bin --json', '{ snapshot, region, output, regionSize, sha256, ... }'],
      ]) +
        '\nEvery stored chunk is checksum-verified before it is written: a damaged store fails with STORE_CORRUPT\n' +
        'and leaves no output file. The image is written to a temporary file next to the output, then renamed.\n',
    )
    .action(
      act((ctx, file: string, ref: SnapshotRef | string, opts: { output: string; force?: boolean; verify?: boolean }) =>
        withSnapshot(ctx, file, ref, (store, id) => {
          const info = store.info(id);
          const out = path.resolve(opts.output);
          checkOutput(store, opts.output, out, opts.force === true);
          const total = Math.ceil(info.regionSize / CHUNK_SIZE);
          const tmp = path.join(path.dirname(out), `.${path.basename(out)}.usnap-${process.pid}.tmp`);
          let w: Written;
          let fd: number;
          try {
            fd = fs.openSync(tmp, 'w', 0o644);
          } catch (err) {
            const e = err as NodeJS.ErrnoException;
            throw new CliError('IO', `cannot write ${opts.output}: ${e.code === 'ENOENT' ? 'no such directory' : e.message}`, 'Check that the directory exists and is writable.');
          }
          try {
            w = writeImage(ctx, store, id, fd, total);
            fs.closeSync(fd);
            fs.renameSync(tmp, out);
          } catch (err) {
            try {
              fs.closeSync(fd);
            } catch {
              // already closed
            }
            fs.rmSync(tmp, { force: true });
            throw err;
          }
          const st = fs.statSync(out);
          const check = opts.verify ? verifyImage(ctx, store, id, out, total) : null;
          const result = {
            snapshot: ref,
            region: info.region,
            output: out,
            regionSize: w.regionSize,
            chunks: w.chunks,
            dataChunks: w.dataChunks,
            zeroChunks: w.zeroChunks,
            bytesWritten: w.bytesWritten,
            allocatedBytes: st.blocks * 512,
            sha256: w.sha256,
            verified: check === null ? null : check.ok,
            ...(check && !check.ok ? { mismatchedChunks: check.mismatches } : {}),
          };
          if (ctx.json) printJson(result);
          else {
            const { c } = ctx;
            print(
              keyValues(ctx, [
                ['wrote', `${out}`],
                ['snapshot', `${ref} of region ${info.region}`],
                ['size', `${formatBytes(w.regionSize)} (${w.dataChunks} data chunks, ${w.zeroChunks} holes)`],
                ['on disk', formatBytes(st.blocks * 512)],
                ['sha256', w.sha256],
                ...(check ? ([['verify', check.ok ? c.green('ok: every chunk matches the store') : c.red(`FAILED: ${check.mismatches.length} chunk(s) differ`)]] as [string, string][]) : []),
              ]),
            );
          }
          if (check && !check.ok) {
            process.stderr.write(`usnap: the written image differs from the store in ${check.mismatches.length} chunk(s) [VERIFY_FAILED]\n`);
            process.stderr.write('hint: check the disk and the file system holding the output, then restore again.\n');
            return EXIT_FAIL;
          }
          return EXIT_OK;
        }),
      ),
    );
}
