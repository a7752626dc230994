// Coordinator configuration with convict: defaults < JSON file < FEDTUNE_* environment < --flags < overrides.
// Every key is validated; an error names the key, its value and what was expected.
import * as path from 'node:path';
import convict from 'convict';
import JSON5 from 'json5';
import type { CoordinatorConfig } from './config-types';
import { schema } from './config-schema';
import { MAX_CHUNK_BYTES } from '../proto/tensor-stream';
import { MIN_CLIENTS } from '../proto/secagg/config';
import { tlsProblems } from './tls';
import { dpProblems } from './strategy/dp';
import { resolvePrivacyTarget } from './privacy/target';
import { samplingProblems } from './privacy/sampling';
import { adaptiveClipConfigProblems } from './privacy/adaptive-clip';
import { scaffoldProblems } from './strategy/scaffold-config';
import { serverScheduleProblems } from './strategy/server-schedule';
import { biasCorrectionProblems, noiseAwareProblems } from './strategy/settings';
import { emaProblems } from './strategy/ema';
import { opsProblems } from './ops/config-schema';
import { evalStopProblems } from './evaluation/config-schema';
import { explainValidation, isGiven, unknownSources } from './config-sources';
import { fitDefaultsToStrategy } from './default-recipe';
import { loraAggregationOf, loraAggregationProblems } from './lora-aggregation';
import { clientOptimizerProblems } from './client-training';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

// GPT-2's Conv1D modules and the Llama family's projections; which apply is checked against model.dir at start.
const TARGETS = ['c_attn', 'c_proj', 'c_fc', 'q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

convict.addFormats({
  'positive-int': {
    validate(v: unknown) {
      if (!(typeof v === 'number' && Number.isSafeInteger(v) && v >= 1)) throw new Error('must be an integer ≥ 1');
    },
    coerce: Number,
  },
  'non-negative-int': {
    validate(v: unknown) {
      if (!(typeof v === 'number' && Number.isSafeInteger(v) && v >= 0)) throw new Error('must be an integer ≥ 0');
    },
    coerce: Number,
  },
  'port-or-zero': {
    validate(v: unknown) {
      if (!(typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 65535)) throw new Error('must be a port number 0..65535 (0: any free port)');
    },
    coerce: Number,
  },
  probability: {
    validate(v: unknown) {
      if (!(typeof v === 'number' && v >= 0 && v < 1)) throw new Error('must be a number in [0, 1)');
    },
    coerce: Number,
  },
  'positive-number': {
    validate(v: unknown) {
      if (!(typeof v === 'number' && Number.isFinite(v) && v > 0)) throw new Error('must be a finite number > 0');
    },
    coerce: Number,
  },
  'non-negative-number': {
    validate(v: unknown) {
      if (!(typeof v === 'number' && Number.isFinite(v) && v >= 0)) throw new Error('must be a finite number ≥ 0');
    },
    coerce: Number,
  },
  'open-unit-interval': {
    validate(v: unknown) {
      if (!(typeof v === 'number' && v > 0 && v < 1)) throw new Error('must be a number in (0, 1)');
    },
    coerce: Number,
  },
  'count-or-fraction': {
    validate(v: unknown) {
      const ok = typeof v === 'number' && ((Number.isInteger(v) && v >= 1) || (v > 0 && v < 1));
      if (!ok) throw new Error('must be an integer count ≥ 1 or a fraction in (0, 1)');
    },
    coerce: Number,
  },
  'unit-fraction': {
    validate(v: unknown) {
      if (!(typeof v === 'number' && v > 0 && v <= 1)) throw new Error('must be a number in (0, 1]');
    },
    coerce: Number,
  },
  'metric-name': {
    validate(v: unknown) {
      if (!(typeof v === 'string' && /^[\w.:/-]{1,64}$/.test(v))) throw new Error('must be a metric name of 1-64 characters of [A-Za-z0-9_.:/-]');
    },
  },
  'lora-targets': {
    validate(v: unknown) {
      if (!Array.isArray(v) || v.length === 0 || v.some((t) => !TARGETS.includes(t as string))) {
        throw new Error(`must be a non-empty list drawn from ${TARGETS.join(', ')}`);
      }
    },
    coerce: (v: string) => v.split(',').map((s) => s.trim()),
  },
  'allow-list': {
    validate(v: unknown) {
      if (!Array.isArray(v)) throw new Error('must be a list of name=<base64 public key>');
      for (const e of v) {
        const i = typeof e === 'string' ? e.indexOf('=') : -1;
        if (i <= 0 || Buffer.from((e as string).slice(i + 1), 'base64').length !== 32)
          throw new Error(`entry ${JSON.stringify(e)} must be name=<base64 32-byte Ed25519 public key>`);
      }
    },
    coerce: (v: string) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0),
  },
});

// A configuration file may be JSON5 (comments, unquoted keys: docs/fedtune.example.json5); .json stays strict JSON.
convict.addParser({ extension: 'json5', parse: (text: string): unknown => JSON5.parse(text) as unknown });

export interface LoadConfigOptions {
  /** Configuration file: JSON, or JSON5 when it ends in .json5. */
  readonly file?: string;
  /** Environment to read FEDTUNE_* from (default: none, so tests are hermetic; the CLI passes process.env). */
  readonly env?: NodeJS.ProcessEnv;
  /** Command-line flags such as ["--rounds.total", "3"] (default: none). */
  readonly args?: readonly string[];
  /** Values applied last, e.g. from code. */
  readonly overrides?: Record<string, unknown>;
}

export function loadConfig(opts: LoadConfigOptions = {}): CoordinatorConfig {
  const keys = describeConfig();
  // convict ignores flags and variables it does not know: a typo would run with the default, silently.
  const unknown = unknownSources(opts, keys);
  if (unknown.length) throw new ConfigError(`invalid configuration: ${unknown.join('; ')}`);
  let conf: convict.Config<CoordinatorConfig>;
  try {
    conf = convict<CoordinatorConfig>(schema as unknown as convict.Schema<CoordinatorConfig>, {
      env: (opts.env ?? {}) as Record<string, string>,
      args: [...(opts.args ?? [])],
    });
    if (opts.file) conf.loadFile(opts.file);
    // conf.load() re-applies the environment and flags after merging (convict ranks them above anything
    // loaded), so overrides are set key by key instead: they must win over env and flags too.
    if (opts.overrides) for (const [key, value] of leaves(opts.overrides)) conf.set(key, value);
    conf.validate({ allowed: 'strict' });
  } catch (e) {
    throw new ConfigError(`invalid configuration: ${explainValidation((e as Error).message, opts, keys)}`);
  }
  const given = (key: string): boolean => isGiven(key, opts, keys);
  // privacy.targetEpsilon derives z first, so that every check below sees the z the run will use.
  const target = resolvePrivacyTarget(fitDefaultsToStrategy(conf.getProperties(), given), given);
  const cfg = target.cfg;
  const problems: string[] = [...target.problems];
  if (cfg.rounds.minUpdates > cfg.rounds.minClients) {
    problems.push(`rounds.minUpdates (${cfg.rounds.minUpdates}) must not exceed rounds.minClients (${cfg.rounds.minClients})`);
  }
  if (cfg.rounds.clientsPerRound >= 1 && cfg.rounds.clientsPerRound < cfg.rounds.minUpdates) {
    problems.push(`rounds.clientsPerRound (${cfg.rounds.clientsPerRound}) must be at least rounds.minUpdates (${cfg.rounds.minUpdates})`);
  }
  if (cfg.training.minLearningRate > cfg.training.learningRate) {
    problems.push(`training.minLearningRate (${cfg.training.minLearningRate}) must not exceed training.learningRate (${cfg.training.learningRate})`);
  }
  if (cfg.transport.chunkBytes > MAX_CHUNK_BYTES) {
    problems.push(`transport.chunkBytes (${cfg.transport.chunkBytes}) must stay below gRPC's 4 MiB message limit (max ${MAX_CHUNK_BYTES})`);
  }
  problems.push(...tlsProblems(cfg.tls));
  problems.push(...opsProblems(cfg));
  problems.push(...evalStopProblems(cfg));
  if (cfg.secagg.enabled && cfg.rounds.minUpdates < MIN_CLIENTS) {
    problems.push(
      `secagg.enabled needs rounds.minUpdates ≥ ${MIN_CLIENTS} (${cfg.rounds.minUpdates}): with fewer clients each one learns too much from the published sum`,
    );
  }
  problems.push(...loraAggregationProblems(cfg));
  problems.push(...clientOptimizerProblems(cfg.training));
  if (cfg.privacy.enabled) problems.push(...dpProblems(cfg.privacy));
  problems.push(...samplingProblems(cfg));
  problems.push(...adaptiveClipConfigProblems(cfg));
  problems.push(...scaffoldProblems(cfg));
  problems.push(...serverScheduleProblems(cfg));
  problems.push(...biasCorrectionProblems(cfg));
  problems.push(...noiseAwareProblems(cfg));
  problems.push(...emaProblems(cfg));
  if (problems.length) throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  const id = cfg.run.id || path.basename(path.resolve(cfg.run.dir));
  // 'auto' is resolved here, so the manifest records the mode the run actually uses.
  return { ...cfg, run: { ...cfg.run, id }, lora: { ...cfg.lora, aggregation: loraAggregationOf(cfg) } };
}

/** [dotted key, value] for every leaf of a plain nested object (arrays and non-plain values are leaves). */
function leaves(obj: Record<string, unknown>, prefix = ''): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix + k;
    if (v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
      out.push(...leaves(v as Record<string, unknown>, key + '.'));
    } else out.push([key, v]);
  }
  return out;
}

export interface ConfigKeyDoc {
  readonly key: string;
  readonly doc: string;
  readonly default: unknown;
  readonly env: string;
  readonly arg: string;
}

/** The configuration reference (for the README and `fedtune config`). */
export function describeConfig(): ConfigKeyDoc[] {
  const out: ConfigKeyDoc[] = [];
  for (const [section, keys] of Object.entries(schema)) {
    for (const [name, k] of Object.entries(keys as Record<string, { doc: string; default: unknown; env: string; arg: string }>)) {
      out.push({ key: `${section}.${name}`, doc: k.doc, default: k.default, env: k.env, arg: `--${k.arg}` });
    }
  }
  return out;
}

/**
 * The configuration as recorded in manifests: everything except where this coordinator happens to listen, how
 * it secures the channel (tls.*), who may join (auth.*: operations, not training), where its key file lives,
 * how it guards the door (admission.*), how it is observed (metrics.*, dashboard.*) and how it logs.
 */
export function configForManifest(cfg: CoordinatorConfig): Record<string, unknown> {
  const {
    server: _server,
    tls: _tls,
    log: _log,
    auth: _auth,
    security: _security,
    admission: _admission,
    metrics: _metrics,
    dashboard: _dashboard,
    ...rest
  } = cfg;
  return JSON.parse(JSON.stringify(rest)) as Record<string, unknown>;
}
