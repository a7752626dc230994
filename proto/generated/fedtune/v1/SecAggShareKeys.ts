// Original file: proto/fedtune.proto

import type { SecAggSealedShares as _fedtune_v1_SecAggSealedShares, SecAggSealedShares__Output as _fedtune_v1_SecAggSealedShares__Output } from '../../fedtune/v1/SecAggSealedShares';

export interface SecAggShareKeys {
  'from'?: (string);
  'seed_hash'?: (Buffer | Uint8Array | string);
  'shares'?: (_fedtune_v1_SecAggSealedShares)[];
  'signature'?: (Buffer | Uint8Array | string);
}

export interface SecAggShareKeys__Output {
  'from': (string);
  'seed_hash': (Buffer);
  'shares': (_fedtune_v1_SecAggSealedShares__Output)[];
  'signature': (Buffer);
}
