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
    // Hang detectors only, far above any test's duration on a loaded machine or a sanitizer build.
    testTimeout: 600_000,
    hookTimeout: 300_000,
  },
});
