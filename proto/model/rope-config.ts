// Rotary-embedding settings as config.json spells them (rope_theta + rope_scaling on the hub, rope_parameters from
// transformers ≥ 5), parsed into one typed value and written back. Shared by every family with rotary embeddings
// (llama-config.ts, and gemma3-config.ts for Gemma 3's global layers).

/** Rotary embedding variants of transformers' modeling_rope_utils that fedtune implements. */
export type RopeScaling =
  | { readonly type: 'default' }
  | { readonly type: 'linear'; readonly factor: number }
  | { readonly type: 'dynamic'; readonly factor: number }
  | {
      readonly type: 'llama3';
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositionEmbeddings: number;
    };

type Json = Record<string, unknown>;

function fail(msg: string): never {
  throw new Error(`config.json: ${msg}`);
}

/**
 * `c` holds rope_parameters or rope_scaling (not both) and rope_theta; an absent theta is `defaultTheta`.
 */
export function parseRope(c: Json, defaultTheta = 10000): { theta: number; rope: RopeScaling } {
  // transformers ≥ 5 writes rope_parameters {rope_type, rope_theta, …}; checkpoints on the hub mostly carry
  // rope_theta plus rope_scaling {rope_type | type, …}. Both mean the same.
  const params = c.rope_parameters;
  const scaling = c.rope_scaling;
  if (params !== undefined && params !== null && scaling !== undefined && scaling !== null) {
    fail('rope_parameters and rope_scaling are both set; keep one');
  }
  const r = (params ?? scaling ?? {}) as Json;
  if (typeof r !== 'object' || Array.isArray(r)) fail('rope_scaling must be an object');
  const thetaRaw = r.rope_theta ?? c.rope_theta ?? defaultTheta;
  if (typeof thetaRaw !== 'number' || !(thetaRaw > 0)) fail('rope_theta must be a positive number');
  const type = r.rope_type ?? r.type ?? 'default';
  const num = (k: string, dflt?: number): number => {
    const v = r[k] ?? dflt;
    if (typeof v !== 'number' || !(v > 0)) fail(`rope_scaling.${k} must be a positive number`);
    return v;
  };
  const known = new Set(['rope_type', 'type', 'rope_theta', 'factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings']);
  const extra = Object.keys(r).filter((k) => !known.has(k) && r[k] !== null);
  if (type === 'default') return { theta: thetaRaw, rope: { type: 'default' } };
  if (type === 'linear' || type === 'dynamic') {
    if (extra.length > 0) fail(`rope_scaling field(s) ${extra.join(', ')} are not supported for rope_type ${type}`);
    return { theta: thetaRaw, rope: { type, factor: num('factor') } };
  }
  if (type === 'llama3') {
    if (extra.length > 0) fail(`rope_scaling field(s) ${extra.join(', ')} are not supported for rope_type llama3`);
    return {
      theta: thetaRaw,
      rope: {
        type: 'llama3',
        factor: num('factor'),
        lowFreqFactor: num('low_freq_factor'),
        highFreqFactor: num('high_freq_factor'),
        originalMaxPositionEmbeddings: num('original_max_position_embeddings'),
      },
    };
  }
  return fail(`rope_scaling type '${String(type)}' is not supported (supported: default, linear, dynamic, llama3)`);
}

/** rope_scaling as transformers reads it (null for the default rotary embedding). */
export function ropeScalingJson(rope: RopeScaling): Record<string, unknown> | null {
  if (rope.type === 'default') return null;
  if (rope.type === 'llama3')
    return {
      rope_type: 'llama3',
      factor: rope.factor,
      low_freq_factor: rope.lowFreqFactor,
      high_freq_factor: rope.highFreqFactor,
      original_max_position_embeddings: rope.originalMaxPositionEmbeddings,
    };
  return { rope_type: rope.type, factor: rope.factor };
}
