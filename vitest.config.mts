import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // A real S3 server (Ceph RGW) for test/remote*.test.ts; see scripts/s3-server.sh.
    globalSetup: ['./test/s3-setup.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    // Native code, threads and signals: each test file in its own process.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 60_000,
  },
});
