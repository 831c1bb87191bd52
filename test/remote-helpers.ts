// The S3 server the remote tests use (test/s3-setup.ts starts it, or CI does).
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { inject } from 'vitest';
import { Remote, type RemoteOptions } from '../lib/index';

// Node 20 is supported here; the SDK's notice about its future releases is noise in test output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

export interface S3Env {
  file: string;
  vars: Record<string, string>;
  options: RemoteOptions;
}

export function s3(): S3Env {
  const file = inject('s3env');
  if (!file) throw new Error('no S3 server: set USNAP_TEST_S3_ENV (scripts/s3-server.sh start FILE) or run through vitest.config.mts');
  const vars: Record<string, string> = {};
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)="?(.*?)"?$/.exec(line);
    if (m) vars[m[1]!] = m[2]!;
  }
  return {
    file,
    vars,
    options: {
      endpoint: vars.AWS_ENDPOINT_URL!,
      region: vars.AWS_REGION!,
      credentials: { accessKeyId: vars.AWS_ACCESS_KEY_ID!, secretAccessKey: vars.AWS_SECRET_ACCESS_KEY! },
    },
  };
}

/** A fresh bucket name per call: tests never see each other's objects. */
export function freshUrl(prefix = 'snaps'): string {
  return `s3://usnap-${randomBytes(6).toString('hex')}/${prefix}`;
}

export async function openRemote(url: string, extra: RemoteOptions = {}): Promise<Remote> {
  return Remote.open(url, { ...s3().options, createBucket: true, ...extra });
}

/** The AWS_* variables a child process needs to open the remote without options. */
export function s3ChildEnv(): NodeJS.ProcessEnv {
  const v = s3().vars;
  return { AWS_ENDPOINT_URL: v.AWS_ENDPOINT_URL, AWS_REGION: v.AWS_REGION, AWS_ACCESS_KEY_ID: v.AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: v.AWS_SECRET_ACCESS_KEY };
}
