// The coordinator's defaults before 2026-11-30 (docs/recipes/fedavg-classic.json5: FedAvg, 8 local AdamW steps of 8,
// LoRA dropout 0.05, 5 rounds, no average). The machinery's tests were written against them and state them through
// this file rather than each restating a dozen keys; the quality benchmark's cells start from them too, as every run
// in bench/QUALITY.md did. The defaults themselves are now the measured recipe (test/default-recipe.test.ts).
import * as path from 'node:path';
import { loadConfig, type LoadConfigOptions } from '../coordinator/config';
import type { CoordinatorConfig } from '../coordinator/config-types';

export const CLASSIC_DEFAULTS = path.join(__dirname, '..', '..', 'docs', 'recipes', 'fedavg-classic.json5');

/** loadConfig over the classic defaults: `opts`' file is not allowed (one file per load), its other layers are. */
export function classicConfig(opts: Omit<LoadConfigOptions, 'file'> = {}): CoordinatorConfig {
  return loadConfig({ ...opts, file: CLASSIC_DEFAULTS });
}
