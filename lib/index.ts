export { Region } from './region';
export type { RegionOptions, RestoreOptions, RegionStats, WasmMemory } from './region';
export { Snapshot } from './snapshot';
export { Store } from '../store/store';
export type { StoreOptions, SnapshotInfo, VerifyResult, VerifyProblem, GcResult } from '../store/store';
export { probe } from './probe';
export type { ProbeResult } from './probe';
export { SnapshotError } from '../core/errors';
export type { SnapshotErrorCode } from '../core/errors';
