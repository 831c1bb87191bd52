// Shapes shared by the bench runner (run.ts) and the scenario processes (scenario.ts).

export type BenchMode = 'quick' | 'default' | 'full';

export interface BenchMachine {
  kernel: string;
  cpu: string;
  cores: number;
  node: string;
}

export interface BenchFigure {
  min: number;
  median: number;
}

export interface BenchBaseline extends BenchFigure {
  name: BaselineName;
  /** > 1: ours is better by this factor. Computed from the two medians (see ratioOf in run.ts). */
  ratio: number;
}

export interface BenchResult {
  metric: MetricId;
  unit: string;
  /** Region size in bytes. */
  size: number;
  ours: BenchFigure;
  baselines: BenchBaseline[];
}

export interface BenchReport {
  machine: BenchMachine;
  mode: BenchMode;
  date: string;
  results: BenchResult[];
}

export const METRICS = [
  'pause_full',
  'pause_incremental_1pct',
  'pause_incremental_10pct',
  'pause_incremental_100pct',
  'write_overhead_per_page',
  'persist_throughput',
  'store_ratio',
  'restore_return',
  'materialize_throughput',
  'rollback_resets_per_s',
  'peak_extra_memory',
  // The same measurements of a region created with mode: 'pause' (async write-protect).
  'pause_incremental_1pct_pause_mode',
  'write_overhead_per_page_pause_mode',
  'rollback_resets_per_s_pause_mode',
  // The first snapshot of a region allocated with hugePages: true (transparent huge pages).
  'pause_full_huge_pages',
  // Many regions from one snapshot (issue 16).
  'restore_first_work',
  'clone_open',
  // A program that keeps running, checkpointed every 100 ms (issue 14).
  'continuous_loss_1pct',
  'continuous_loss_5pct',
  'continuous_stall_p99_1pct',
  'capture_amplification',
  'capture_faults',
  'reset_small_dirty',
  'reset_small_dirty_1g',
] as const;
/** Measured against a real S3 server, with `--remote` (docs/remote.md). */
export const REMOTE_METRICS = ['remote_push_throughput', 'remote_restore_return', 'remote_bytes_fetched_10pct'] as const;
export type MetricId = (typeof METRICS)[number] | (typeof REMOTE_METRICS)[number];

export type BaselineName =
  | 'memcpy'
  | 'fork'
  | 'mprotect_sigsegv'
  | 'wp_async_scan'
  | 'wp_ioctl_raw'
  | 'wp_ioctl_raw_warm'
  | 'lz4_raw'
  | 'sqlite_raw'
  | 'read_image'
  | 'uffdio_copy_raw'
  | 'fork_reset'
  | 'warm'
  | 'no_recording'
  | 'recording'
  | 'raw_put'
  | 'fork_bgsave'
  | 'uffd_wp_raw'
  | 'uffd_reset_raw';

/**
 * Which way is better, per metric. Times, memory and stored size: lower is better, and a
 * baseline's ratio is baseline / ours. Throughputs and rates: higher is better, and the
 * ratio is ours / baseline. Either way ratio > 1 means ours wins by that factor.
 */
export const LOWER_IS_BETTER: Record<MetricId, boolean> = {
  pause_full: true,
  pause_incremental_1pct: true,
  pause_incremental_10pct: true,
  pause_incremental_100pct: true,
  write_overhead_per_page: true,
  persist_throughput: false,
  store_ratio: true,
  restore_return: true,
  materialize_throughput: false,
  rollback_resets_per_s: false,
  peak_extra_memory: true,
  pause_incremental_1pct_pause_mode: true,
  write_overhead_per_page_pause_mode: true,
  rollback_resets_per_s_pause_mode: false,
  pause_full_huge_pages: true,
  restore_first_work: true,
  clone_open: true,
  remote_push_throughput: false,
  remote_restore_return: true,
  remote_bytes_fetched_10pct: true,
  continuous_loss_1pct: true,
  continuous_loss_5pct: true,
  continuous_stall_p99_1pct: true,
  capture_amplification: true,
  capture_faults: true,
  reset_small_dirty: false,
  reset_small_dirty_1g: false,
};

export const UNITS: Record<MetricId, string> = {
  pause_full: 'ms',
  pause_incremental_1pct: 'ms',
  pause_incremental_10pct: 'ms',
  pause_incremental_100pct: 'ms',
  write_overhead_per_page: 'us/page',
  persist_throughput: 'B/s',
  store_ratio: 'stored/raw',
  restore_return: 'ms',
  materialize_throughput: 'B/s',
  rollback_resets_per_s: 'resets/s',
  peak_extra_memory: 'fraction of region',
  pause_incremental_1pct_pause_mode: 'ms',
  write_overhead_per_page_pause_mode: 'us/page',
  rollback_resets_per_s_pause_mode: 'resets/s',
  pause_full_huge_pages: 'ms',
  restore_first_work: 'ms',
  clone_open: 'ms',
  remote_push_throughput: 'B/s',
  remote_restore_return: 'ms',
  remote_bytes_fetched_10pct: 'fraction of image',
  continuous_loss_1pct: 'fraction of throughput',
  continuous_loss_5pct: 'fraction of throughput',
  continuous_stall_p99_1pct: 'p99 batch with / without',
  capture_amplification: 'chunks stored / written',
  capture_faults: 'faults',
  reset_small_dirty: 'resets/s',
  reset_small_dirty_1g: 'resets/s',
};

/** What a scenario process is asked to do (argv[2] of scenario.js, as JSON). */
export interface ScenarioTask {
  scenario: ScenarioName;
  size: number;
  runs: number;
  /** A directory the scenario may use for files; it removes what it creates. */
  tmpDir: string;
  /** Quick mode: shorter timed loops. */
  quick: boolean;
  /** Regions created with mode: 'pause'; the metrics get the _pause_mode suffix. */
  pauseMode?: boolean;
  /** Regions allocated with hugePages: true; only the full pause is measured (pause_full_huge_pages). */
  hugePages?: boolean;
  /** The remote scenario: an env file written by scripts/s3-server.sh start. */
  s3env?: string;
}

export type ScenarioName =
  | 'pause'
  | 'pause_baselines'
  | 'write_overhead'
  | 'write_overhead_baselines'
  | 'persist'
  | 'persist_baselines'
  | 'restore'
  | 'restore_baselines'
  | 'rollback'
  | 'rollback_baselines'
  | 'peak_memory'
  | 'peak_memory_baselines'
  | 'first_work'
  | 'clones'
  | 'remote'
  | 'continuous'
  | 'continuous_baselines'
  | 'capture'
  | 'reset_small'
  | 'reset_small_baselines';

/** Raw samples of one metric at one size, as a scenario reports them (either side may be absent). */
export interface SampleRow {
  metric: MetricId;
  size: number;
  ours?: number[];
  baselines?: { name: BaselineName; samples: number[] }[];
}

export type ScenarioMessage = { ok: true; rows: SampleRow[] } | { ok: false; error: string };
