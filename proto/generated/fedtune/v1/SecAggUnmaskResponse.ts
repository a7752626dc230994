// Original file: proto/fedtune.proto

import type { SecAggRevealedShare as _fedtune_v1_SecAggRevealedShare, SecAggRevealedShare__Output as _fedtune_v1_SecAggRevealedShare__Output } from '../../fedtune/v1/SecAggRevealedShare';

export interface SecAggUnmaskResponse {
  'from'?: (string);
  'b_shares'?: (_fedtune_v1_SecAggRevealedShare)[];
  'sk_shares'?: (_fedtune_v1_SecAggRevealedShare)[];
}

export interface SecAggUnmaskResponse__Output {
  'from': (string);
  'b_shares': (_fedtune_v1_SecAggRevealedShare__Output)[];
  'sk_shares': (_fedtune_v1_SecAggRevealedShare__Output)[];
}
