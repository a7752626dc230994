// Configuration keys of version retention (retention.ts), spread into coordinator/config-schema.ts as the
// `checkpoints` section. The defaults bound the default recipe's disk: 600 rounds of FedAdam with the average write
// ~1.3 MB a version, ~800 MB kept whole; see README "Checkpoints" for the figure these defaults leave.
export const checkpointsSchema = {
  checkpoints: {
    keepServerState: {
      doc: "Versions that keep server-state.safetensors (a server optimiser's moments and the average: most of a version's bytes under the default recipe): the newest this many, plus release and best (0: every version's). Only the latest is needed to resume; `fedtune recover --to N` needs N's.",
      format: 'non-negative-int',
      default: 2,
      env: 'FEDTUNE_CHECKPOINTS_KEEP_SERVER_STATE',
      arg: 'checkpoints.keepServerState',
    },
    keepAdapters: {
      doc: "Versions that keep their adapter (adapter_model.safetensors, and ema/ under strategy.ema): the newest this many, every checkpoints.keepEvery-th, latest, release and best (0: every version's). Every version keeps its manifest, signature and adapter_config.json, and a signed pruned.json names what went, so `fedtune verify` still checks the whole chain.",
      format: 'non-negative-int',
      default: 20,
      env: 'FEDTUNE_CHECKPOINTS_KEEP_ADAPTERS',
      arg: 'checkpoints.keepAdapters',
    },
    keepEvery: {
      doc: 'Also keep the adapter of every version whose number is a multiple of this (0: none besides the newest checkpoints.keepAdapters).',
      format: 'non-negative-int',
      default: 50,
      env: 'FEDTUNE_CHECKPOINTS_KEEP_EVERY',
      arg: 'checkpoints.keepEvery',
    },
  },
} as const;
