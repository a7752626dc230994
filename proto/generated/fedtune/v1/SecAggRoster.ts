// Original file: proto/fedtune.proto

import type { SecAggAdvertisement as _fedtune_v1_SecAggAdvertisement, SecAggAdvertisement__Output as _fedtune_v1_SecAggAdvertisement__Output } from '../../fedtune/v1/SecAggAdvertisement';

export interface SecAggRoster {
  'task_id'?: (string);
  'advertisements'?: (_fedtune_v1_SecAggAdvertisement)[];
  'identity_keys'?: ({[key: string]: Buffer | Uint8Array | string});
  'certificates'?: ({[key: string]: Buffer | Uint8Array | string});
}

export interface SecAggRoster__Output {
  'task_id': (string);
  'advertisements': (_fedtune_v1_SecAggAdvertisement__Output)[];
  'identity_keys': ({[key: string]: Buffer});
  'certificates': ({[key: string]: Buffer});
}
