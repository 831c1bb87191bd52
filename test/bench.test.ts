// Runs the compiled bench entry in --quick --json mode and validates the report.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { CHART_INSTALL_HINT, writeOutputs } from '../lib/bench/run';
import { LOWER_IS_BETTER, METRICS, type BenchReport } from '../lib/bench/types';

const ENTRY = path.join(__dirname, '..', 'dist', 'lib', 'bench', 'main.js');

/** The baselines each metric must carry (issue 8). */
const EXPECTED: Record<string, string[]> = {
  pause_full: ['wp_ioctl_raw', 'fork', 'memcpy', 'wp_async_scan', 'mprotect_sigsegv'],
  pause_incremental_1pct: ['wp_ioctl_raw', 'wp_ioctl_raw_warm', 'fork', 'memcpy', 'wp_async_scan', 'mprotect_sigsegv'],
  pause_incremental_10pct: ['wp_ioctl_raw', 'wp_ioctl_raw_warm', 'fork', 'memcpy', 'wp_async_scan', 'mprotect_sigsegv'],
  pause_incremental_100pct: ['wp_ioctl_raw', 'fork', 'memcpy', 'wp_async_scan', 'mprotect_sigsegv'],
  write_overhead_per_page: ['fork', 'mprotect_sigsegv', 'wp_async_scan'],
  persist_throughput: ['lz4_raw', 'sqlite_raw'],
  store_ratio: ['lz4_raw'],
  restore_return: ['read_image'],
  materialize_throughput: ['uffdio_copy_raw', 'read_image'],
  rollback_resets_per_s: ['fork_reset', 'memcpy'],
  peak_extra_memory: ['fork'],
  pause_incremental_1pct_pause_mode: ['wp_ioctl_raw', 'wp_ioctl_raw_warm', 'fork', 'memcpy', 'wp_async_scan', 'mprotect_sigsegv'],
  write_overhead_per_page_pause_mode: ['fork', 'mprotect_sigsegv', 'wp_async_scan'],
  rollback_resets_per_s_pause_mode: ['fork_reset', 'memcpy'],
  pause_full_huge_pages: ['wp_ioctl_raw', 'fork', 'memcpy', 'wp_async_scan', 'mprotect_sigsegv'],
  restore_first_work: ['warm', 'no_recording', 'recording', 'uffdio_copy_raw'],
  clone_open: ['memcpy'],
  continuous_loss_1pct: ['fork_bgsave', 'memcpy', 'uffd_wp_raw', 'wp_ioctl_raw'],
  continuous_loss_5pct: ['fork_bgsave', 'memcpy', 'uffd_wp_raw', 'wp_ioctl_raw'],
  continuous_stall_p99_1pct: ['fork_bgsave', 'memcpy', 'uffd_wp_raw'],
  capture_amplification: [],
  capture_faults: [],
  reset_small_dirty: ['fork_reset', 'memcpy', 'wp_ioctl_raw', 'uffd_reset_raw'],
  reset_small_dirty_1g: ['fork_reset', 'memcpy', 'wp_ioctl_raw', 'uffd_reset_raw'],
};

function finiteNumbers(x: unknown, where: string): void {
  if (typeof x === 'number') {
    expect(Number.isFinite(x), `${where} is ${x}`).toBe(true);
  } else if (Array.isArray(x)) {
    x.forEach((v, i) => finiteNumbers(v, `${where}[${i}]`));
  } else if (x && typeof x === 'object') {
    for (const [k, v] of Object.entries(x)) finiteNumbers(v, `${where}.${k}`);
  }
}

describe('usnap bench --quick --json', () => {
  it('reports every metric with finite figures and ratios from the same run', async () => {
    // No bound on its duration here (a loaded machine or a sanitizer build is 2-3x slower):
    // the bench reports its own timings; the kill timer below only catches a hang.
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [ENTRY, '--quick', '--json'], { maxBuffer: 64 << 20, timeout: 900_000 }, (err, out, errOut) => {
        if (err) reject(new Error(`${err.message}\n${errOut}`));
        else resolve(out);
      });
    });

    const report = JSON.parse(stdout) as BenchReport;
    expect(report.mode).toBe('quick');
    expect(Number.isNaN(Date.parse(report.date))).toBe(false);
    expect(typeof report.machine.kernel).toBe('string');
    expect(report.machine.cpu.length).toBeGreaterThan(0);
    expect(report.machine.cores).toBeGreaterThan(0);
    expect(report.machine.node).toBe(process.version);
    finiteNumbers(report, 'report');

    for (const m of METRICS) {
      const rows = report.results.filter((r) => r.metric === m);
      expect(rows.length, `metric ${m}`).toBeGreaterThan(0);
      for (const r of rows) {
        expect(r.size).toBeGreaterThan(0);
        expect(typeof r.unit).toBe('string');
        expect(r.ours.min).toBeGreaterThan(0);
        expect(r.ours.min).toBeLessThanOrEqual(r.ours.median);
        expect(r.baselines.map((b) => b.name).sort()).toEqual([...EXPECTED[m]!].sort());
        for (const b of r.baselines) {
          expect(b.min).toBeGreaterThan(0);
          expect(b.min).toBeLessThanOrEqual(b.median);
          // ratio > 1: ours better; recomputed from this run's medians.
          const want = LOWER_IS_BETTER[m] ? b.median / r.ours.median : r.ours.median / b.median;
          expect(b.ratio).toBeCloseTo(want, 9);
        }
      }
    }
    for (const r of report.results) expect((METRICS as readonly string[]).includes(r.metric)).toBe(true);
  }, 900_000);
});

describe('usnap bench --out', () => {
  const report = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'docs', 'benchmark-report.json'), 'utf8')) as BenchReport;

  it('draws pause.svg with vega and vega-lite installed', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-bench-out-'));
    try {
      expect(await writeOutputs(report, dir)).toBe(true);
      expect(fs.readdirSync(dir).sort()).toEqual(['pause.svg', 'report.json', 'report.md']);
      expect(fs.readFileSync(path.join(dir, 'pause.svg'), 'utf8')).toMatch(/^<svg[^>]*>/);
      expect(fs.readFileSync(path.join(dir, 'report.md'), 'utf8')).toContain('![pause chart](pause.svg)');
      expect(JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8'))).toEqual(report);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('without them writes the JSON and markdown and says how to get the chart', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'usnap-bench-out-'));
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await writeOutputs(report, dir, async () => null)).toBe(false);
      expect(fs.readdirSync(dir).sort()).toEqual(['report.json', 'report.md']);
      const md = fs.readFileSync(path.join(dir, 'report.md'), 'utf8');
      expect(md).not.toContain('pause.svg');
      expect(md).toContain(CHART_INSTALL_HINT);
      expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toContain(`the pause chart needs vega and vega-lite: ${CHART_INSTALL_HINT}`);
    } finally {
      stderr.mockRestore();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
