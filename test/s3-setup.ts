// vitest globalSetup: the S3 server the remote tests use. CI starts it with
// scripts/s3-server.sh before the tests and sets USNAP_TEST_S3_ENV; elsewhere this starts one
// for the run (installing Ceph if needed) and stops it after, so `npm test` works alone.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';

const script = path.join(__dirname, '..', 'scripts', 's3-server.sh');

declare module 'vitest' {
  export interface ProvidedContext {
    s3env: string;
  }
}

// Only runs that include a remote test need the server (`vitest run test/region.test.ts` does not).
function wanted(): boolean {
  const files = process.argv.filter((a) => /\.test\.ts$|^test\//.test(a));
  return files.length === 0 || files.some((f) => f.includes('remote'));
}

export default function setup(project: TestProject): (() => void) | undefined {
  if (process.env.USNAP_TEST_S3_ENV) {
    project.provide('s3env', process.env.USNAP_TEST_S3_ENV);
    return undefined;
  }
  if (process.env.CI === 'true') {
    throw new Error('USNAP_TEST_S3_ENV is not set: in CI, .ci/run starts the S3 server with scripts/s3-server.sh and exports it');
  }
  if (!wanted()) return undefined;
  const env = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-s3env-')), 's3.env');
  execFileSync(script, ['start', env], { stdio: ['ignore', 'inherit', 'inherit'] });
  project.provide('s3env', env);
  return () => {
    execFileSync(script, ['stop', env], { stdio: ['ignore', 'inherit', 'inherit'] });
    fs.rmSync(path.dirname(env), { recursive: true, force: true });
  };
}
