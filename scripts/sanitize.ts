// npm run test:sanitize: the addon built with AddressSanitizer and UndefinedBehaviorSanitizer
// into build-sanitize/ (the normal build/ is untouched), then the test suite, a short store fuzz
// and a short soak against it, with the ASan runtime preloaded into every node process.
//
// Node itself is not instrumented: leak checking is off (Node keeps memory until exit by
// design), and V8 keeps its own SIGSEGV handler (wasm bounds checks). Every report goes to a
// file under the log directory as well as stderr, and any report fails the run, even one from
// a child process whose exit a test tolerated.
//   node dist/scripts/sanitize.js [--skip-build] [--only tests|fuzz|soak] [vitest args...]
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { packageRoot } from '../core/native';

const SANITIZE = ['-fsanitize=address,undefined', '-fno-omit-frame-pointer', '-fno-sanitize-recover=undefined', '-g'];

function run(what: string, cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd = packageRoot): number {
  const t0 = Date.now();
  console.log(`\n== ${what}: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd, env, stdio: 'inherit' });
  const secs = ((Date.now() - t0) / 1000).toFixed(0);
  console.log(`== ${what}: ${r.status === 0 ? 'ok' : `FAILED (status ${r.status}, signal ${r.signal})`} in ${secs} s`);
  return r.status ?? 1;
}

/** build-sanitize/binding.gyp: the addon target of binding.gyp with sanitizer flags, sources from the package. */
function writeGyp(dir: string): void {
  type Target = { target_name: string; sources: string[]; cflags: string[]; cflags_cc: string[]; ldflags?: string[] };
  const gyp = JSON.parse(fs.readFileSync(path.join(packageRoot, 'binding.gyp'), 'utf8')) as {
    variables: Record<string, string>;
    conditions: [string, { targets: Target[] }][];
  };
  // binding.gyp keeps each target under a condition (USNAP_ONLY, and the testing target only in the repository).
  const target = gyp.conditions.flatMap(([, c]) => c.targets).find((t) => t.target_name === 'uffd_snapshot')!;
  target.sources = target.sources.map((s) => path.join('..', s));
  const opt = (flags: string[]) => [...flags.filter((f) => !f.startsWith('-O')), '-O1', ...SANITIZE];
  target.cflags = opt(target.cflags);
  target.cflags_cc = opt(target.cflags_cc);
  target.ldflags = [...(target.ldflags ?? []), ...SANITIZE];
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'binding.gyp'), JSON.stringify({ variables: gyp.variables, targets: [target] }, null, 2));
}

function main(): void {
  const argv = process.argv.slice(2);
  const skipBuild = argv.includes('--skip-build');
  const onlyAt = argv.indexOf('--only');
  const only = onlyAt >= 0 ? argv[onlyAt + 1] : undefined;
  const vitestArgs = argv.filter((a, i) => a !== '--skip-build' && i !== onlyAt && i !== onlyAt + 1);
  const buildDir = path.join(packageRoot, 'build-sanitize');
  const addon = path.join(buildDir, 'build', 'Release', 'uffd_snapshot.node');
  const t0 = Date.now();
  if (!skipBuild) {
    writeGyp(buildDir);
    // The node-gyp npm runs install scripts with (npm sets npm_config_node_gyp), else npm's own.
    const gyp = [
      process.env.npm_config_node_gyp,
      path.join(packageRoot, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
      path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    ].find((f) => f && fs.existsSync(f));
    if (!gyp) throw new Error('node-gyp not found: run this through npm (npm run test:sanitize)');
    const nodeGyp = [process.execPath, gyp];
    if (run('sanitized build', nodeGyp[0]!, [...nodeGyp.slice(1), 'rebuild', '-j', String(os.availableParallelism())], process.env, buildDir) !== 0) process.exit(1);
  }
  const libasan = spawnSync('gcc', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).stdout.trim();
  if (!libasan || !fs.existsSync(libasan)) throw new Error(`gcc -print-file-name=libasan.so gave "${libasan}": no ASan runtime`);
  // World-writable: privileges.test.ts runs node as nobody.
  const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-sanitize-'));
  fs.chmodSync(logs, 0o1777);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    USNAP_ADDON: addon,
    LD_PRELOAD: [libasan, process.env.LD_PRELOAD].filter(Boolean).join(':'),
    ASAN_OPTIONS: `detect_leaks=0:allow_user_segv_handler=1:handle_segv=0:handle_sigbus=0:abort_on_error=0:halt_on_error=1:log_path=${logs}/asan:log_exe_name=1`,
    UBSAN_OPTIONS: `halt_on_error=1:print_stacktrace=1:log_path=${logs}/ubsan:log_exe_name=1`,
    USNAP_SANITIZED: '1',
  };
  const failed: string[] = [];
  const step = (name: string, cmd: string, args: string[]) => {
    if (only && only !== name) return;
    if (run(name, cmd, args, env) !== 0) failed.push(name);
  };
  const vitest = path.join(packageRoot, 'node_modules', 'vitest', 'vitest.mjs');
  step('tests', process.execPath, [vitest, 'run', ...vitestArgs]);
  step('fuzz', process.execPath, [path.join(packageRoot, 'dist', 'scripts', 'fuzz-store.js'), '40', '5']);
  step('soak', process.execPath, [path.join(packageRoot, 'dist', 'scripts', 'soak.js'), '3000', '1']);
  const reports = fs.readdirSync(logs);
  for (const f of reports) {
    console.log(`\n== sanitizer report ${f}:`);
    console.log(fs.readFileSync(path.join(logs, f), 'utf8'));
  }
  fs.rmSync(logs, { recursive: true, force: true });
  if (reports.length) failed.push(`${reports.length} sanitizer report(s)`);
  const secs = ((Date.now() - t0) / 1000).toFixed(0);
  if (failed.length) {
    console.log(`\ntest:sanitize FAILED in ${secs} s: ${failed.join(', ')}`);
    process.exit(1);
  }
  console.log(`\ntest:sanitize passed in ${secs} s: no ASan or UBSan report`);
}

main();
