// What a GPU failure during a round is, as the engine trainer reports it, and the explicit test hook that makes
// one happen. A GpuFailure is the one error that moves a site to its next backend (fallback.ts); any other error
// (an abort, a bad plan, a refused config) fails the task and leaves the backend as it is.
import type { EnginePath } from './program';

/**
 * device-lost: Dawn resolved `device.lost` (driver reset, Xid, process-level teardown, or device.destroy()).
 * validation / out-of-memory / internal: an error Dawn reported into the round's error scope of that filter.
 * non-finite: the engine's loss or adapter came back NaN or ±Inf (f16 overflow, or a kernel writing garbage).
 */
export type GpuFailureKind = 'device-lost' | 'validation' | 'out-of-memory' | 'internal' | 'non-finite';

export class GpuFailure extends Error {
  constructor(
    readonly kind: GpuFailureKind,
    /** The backend that failed, as the trainer reports it (e.g. engine-tc). */
    readonly backend: string,
    readonly detail: string,
  ) {
    super(`GPU failure on ${backend} (${kind}): ${detail}`);
    this.name = 'GpuFailure';
  }
}

export function isGpuFailure(e: unknown): e is GpuFailure {
  return e instanceof GpuFailure;
}

/** Dawn's messages run over several lines ("- While calling …"); one line is enough for a log. */
export function oneLine(message: string): string {
  return message.split('\n')[0].trim().slice(0, 300);
}

/**
 * A failure the engine trainer makes happen on purpose, through Dawn's real machinery, at its k-th engine step
 * (counted over the trainer's lifetime, from 0), once: `lost` destroys the device (device.lost resolves, read-backs
 * abort), `validation` creates an invalid buffer inside the round's error scope, `nan` writes NaN into the adapter
 * so the loss turns non-finite. `path` limits it to one engine path (so `lost@1:tc` lets the f32 fallback run).
 */
export interface EngineFault {
  readonly kind: 'lost' | 'validation' | 'nan';
  readonly step: number;
  readonly path?: EnginePath;
}

/** The env var that carries an EngineFault (syntax `kind@step[:path]`); a test hook, never set in production. */
export const ENGINE_FAULT_ENV = 'FEDTUNE_ENGINE_FAULT';

export function parseEngineFault(v: string | undefined): EngineFault | undefined {
  if (v === undefined || v === '') return undefined;
  const m = /^(lost|validation|nan)@(\d{1,6})(?::(tc|f16|f32))?$/.exec(v);
  if (!m) throw new Error(`${ENGINE_FAULT_ENV}='${v}' is not kind@step[:path] (kind lost|validation|nan, path tc|f16|f32)`);
  return { kind: m[1] as EngineFault['kind'], step: Number(m[2]), ...(m[3] ? { path: m[3] as EnginePath } : {}) };
}

export function describeFault(f: EngineFault): string {
  return `${f.kind}@${f.step}${f.path ? `:${f.path}` : ''}`;
}
