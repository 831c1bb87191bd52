#!/usr/bin/env node
// usnap: look into uffd-snapshot stores from the shell. One file per command in ./commands.
import { Command, CommanderError, Option } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SnapshotError } from '../../core/errors';
import { packageRoot } from '../../core/native';
import { CliError, EXIT_FAIL, EXIT_OK, EXIT_USAGE, examples } from './util';
import { registerProbe } from './commands/probe';
import { registerList } from './commands/list';
import { registerInfo } from './commands/info';
import { registerDiff } from './commands/diff';
import { registerVerify } from './commands/verify';
import { registerRestore } from './commands/restore';
import { registerCat } from './commands/cat';
import { registerGc } from './commands/gc';
import { registerBench } from './commands/bench';
import { registerPush } from './commands/push';
import { registerPull } from './commands/pull';

function version(): string {
  try {
    return JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')).version as string;
  } catch {
    return 'unknown';
  }
}

/** The program, with every command registered. Exported for tests and embedding. */
export function buildProgram(): Command {
  const program = new Command('usnap');
  program
    .description('Inspect, diff, verify, restore and garbage-collect uffd-snapshot stores; push and pull them to S3.')
    .version(version(), '-V, --version', 'print the version')
    .addOption(new Option('--json', 'machine-readable JSON on stdout (stable field names; see docs/cli.md)'))
    .addOption(new Option('--debug', 'print stack traces of errors'))
    .addOption(new Option('--key-file <file>', 'encryption key of an s3:// remote (32 bytes, or 64 hex digits)'))
    .addOption(new Option('--no-color', 'no colours even on a terminal (NO_COLOR works too)'))
    .helpOption('-h, --help', 'show help')
    .helpCommand('help [command]', 'show help for a command')
    .showSuggestionAfterError(true)
    .allowExcessArguments(false)
    .allowUnknownOption(false)
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .exitOverride()
    .configureOutput({
      // Errors are printed by main() in one format; help and version go through as usual.
      outputError: () => {},
    })
    .addHelpText(
      'after',
      examples([
        ['usnap probe', 'can this machine take snapshots?'],
        ['usnap list state.usnap', 'snapshots in a store'],
        ['usnap info state.usnap 3', 'one snapshot in detail'],
        ['usnap diff state.usnap 2 3', 'which 64 KiB chunks changed'],
        ['usnap verify state.usnap', 'check every checksum'],
        ['usnap restore state.usnap 3 -o heap.bin', 'write the region image (sparse)'],
        ['usnap cat state.usnap 3 --offset 64K --length 4096', 'bytes of a snapshot on stdout'],
        ['usnap gc state.usnap --keep 10', 'keep the newest 10 snapshots per region'],
        ['usnap push state.usnap s3://bucket/app', 'upload snapshots to S3 (AWS_* variables)'],
        ['usnap pull s3://bucket/app copy.usnap', 'copy them into another store'],
        ['usnap list state.usnap --json | jq .snapshots[].id', 'scripting'],
      ]) + '\nExit codes: 0 ok, 1 failure (verification failed, not found, other errors), 2 usage error.\n',
    );
  for (const register of [registerProbe, registerList, registerInfo, registerDiff, registerVerify, registerRestore, registerCat, registerGc, registerPush, registerPull, registerBench]) {
    register(program);
  }
  // Subcommands inherit exitOverride/configureOutput/help settings from `program.command()`;
  // make them strict too.
  for (const cmd of program.commands) cmd.allowExcessArguments(false).allowUnknownOption(false);
  return program;
}

interface ErrorReport {
  code: string;
  message: string;
  hint?: string;
  exitCode: number;
}

function describe(err: unknown, command: string | undefined): ErrorReport {
  if (err instanceof CommanderError) {
    const lines = err.message.replace(/^error: /, '').split('\n').map((l) => l.trim()).filter(Boolean);
    const suggestion = lines.find((l) => l.startsWith('(Did you mean'));
    const message = lines.filter((l) => l !== suggestion).join(' ');
    const helpFor = command ? `usnap ${command} --help` : 'usnap --help';
    const hint = suggestion ? `${suggestion.slice(1, -1)} See \`${helpFor}\`.` : `See \`${helpFor}\`.`;
    return { code: 'USAGE', message: message || 'usage error', hint, exitCode: EXIT_USAGE };
  }
  if (err instanceof SnapshotError) return { code: err.code, message: err.message, hint: err.hint, exitCode: EXIT_FAIL };
  if (err instanceof CliError) return { code: err.code, message: err.message, hint: err.hint, exitCode: err.exitCode };
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e.code === 'string' && typeof e.syscall === 'string') {
    return { code: 'IO', message: e.message, hint: undefined, exitCode: EXIT_FAIL };
  }
  return {
    code: 'INTERNAL',
    message: e?.message ?? String(err),
    hint: 'This is a bug in usnap: rerun with --debug and report the stack trace.',
    exitCode: EXIT_FAIL,
  };
}

function printStack(err: unknown): void {
  let e: unknown = err;
  for (let depth = 0; e && depth < 5; depth++) {
    const x = e as Error;
    process.stderr.write((depth ? 'caused by: ' : '') + (x.stack ?? String(x)) + '\n');
    e = x.cause;
  }
}

/** Runs the CLI; resolves to the exit code. */
export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  let command: string | undefined;
  program.hook('preSubcommand', (_thisCommand, sub) => {
    command = sub.name();
  });
  const args = argv.slice(2);
  const json = args.includes('--json');
  const debug = args.includes('--debug');
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
      if (err.code === 'commander.help') {
        if (args[0] === 'help') return EXIT_OK;  // `usnap help`: asked for
        // `usnap` alone: help went to stderr
        process.stderr.write('usnap: a command is required [USAGE]\n');
        return EXIT_USAGE;
      }
    }
    const r = describe(err, command);
    process.stderr.write(`usnap: ${r.message} [${r.code}]\n`);
    if (r.hint) process.stderr.write(`hint: ${r.hint}\n`);
    if (debug) printStack(err);
    if (json) process.stdout.write(JSON.stringify({ error: { code: r.code, message: r.message, ...(r.hint ? { hint: r.hint } : {}) } }, null, 2) + '\n');
    return r.exitCode;
  }
}

if (require.main === module) {
  // `usnap list x | head` closes the pipe early: that is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`usnap: ${(err as Error)?.message ?? String(err)} [INTERNAL]\n`);
      process.exitCode = EXIT_FAIL;
    },
  );
}
