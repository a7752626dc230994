// Original file: proto/fedtune.proto


export interface SecAggAdvertisement {
  'client_id'?: (string);
  'enc_public_key'?: (Buffer | Uint8Array | string);
  'mask_public_key'?: (Buffer | Uint8Array | string);
  'signature'?: (Buffer | Uint8Array | string);
}

export interface SecAggAdvertisement__Output {
  'client_id': (string);
  'enc_public_key': (Buffer);
  'mask_public_key': (Buffer);
  'signature': (Buffer);
}
