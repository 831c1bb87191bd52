import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    // Native code, threads and signals: each test file in its own process.
    pool: 'forks',
    maxWorkers: 2,
    // Hang detectors only, far above any test's duration on a loaded machine or a sanitizer build.
    testTimeout: 600_000,
    hookTimeout: 300_000,
  },
});
