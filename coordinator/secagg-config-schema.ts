// The `secagg` section of the coordinator's configuration schema, spread into config-schema.ts: secure aggregation's
// switch, Shamir threshold, masking graph, fixed-point encoding bounds, stage timeout and signed roster
// (secagg-attempt.ts, the maths in proto/secagg/).

export const secaggSchema = {
  secagg: {
    enabled: {
      doc: 'Secure aggregation (SecAgg/SecAgg+): the coordinator learns only the weighted sum of the updates.',
      format: Boolean,
      default: false,
      env: 'FEDTUNE_SECAGG_ENABLED',
      arg: 'secagg.enabled',
    },
    threshold: {
      doc: 'Shamir threshold t per secret (0: a strict majority of its holders, the minimum that is safe).',
      format: 'non-negative-int',
      default: 0,
      env: 'FEDTUNE_SECAGG_THRESHOLD',
      arg: 'secagg.threshold',
    },
    fullGraphMax: {
      doc: 'Use the full graph up to this many clients; above it a random k-regular graph with k = 2⌈log2 N⌉ (SecAgg+).',
      format: 'positive-int',
      default: 32,
      env: 'FEDTUNE_SECAGG_FULL_GRAPH_MAX',
      arg: 'secagg.fullGraphMax',
    },
    clipNorm: {
      doc: 'L2 norm each client clips its update to before fixed-point encoding.',
      format: 'positive-number',
      default: 10,
      env: 'FEDTUNE_SECAGG_CLIP_NORM',
      arg: 'secagg.clipNorm',
    },
    weightCap: {
      doc: 'A client weighs min(examples, weightCap) / weightCap; the weight is applied before masking.',
      format: 'positive-int',
      default: 10000,
      env: 'FEDTUNE_SECAGG_WEIGHT_CAP',
      arg: 'secagg.weightCap',
    },
    maxClients: {
      doc: 'Most clients one sum may hold; sets the headroom bits (32 − ⌈log2 maxClients⌉ bits per value).',
      format: 'positive-int',
      default: 1024,
      env: 'FEDTUNE_SECAGG_MAX_CLIENTS',
      arg: 'secagg.maxClients',
    },
    stageTimeoutMs: {
      doc: 'Time each SecAgg stage after training waits for the live clients (ms).',
      format: 'positive-int',
      default: 30000,
      env: 'FEDTUNE_SECAGG_STAGE_TIMEOUT_MS',
      arg: 'secagg.stageTimeoutMs',
    },
    rosterFile: {
      doc: "The operator's signed roster (`fedtune roster sign`), re-read every attempt; its certificates go to the sites, which check them against the operator key they pin ('' = none: the coordinator is the key authority).",
      format: String,
      default: '',
      env: 'FEDTUNE_SECAGG_ROSTER_FILE',
      arg: 'secagg.rosterFile',
    },
  },
} as const;
