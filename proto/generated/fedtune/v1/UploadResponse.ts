// Original file: proto/fedtune.proto


export interface UploadResponse {
  'task_id'?: (string);
  'round'?: (number);
  'sha256'?: (Buffer | Uint8Array | string);
  'duplicate'?: (boolean);
}

export interface UploadResponse__Output {
  'task_id': (string);
  'round': (number);
  'sha256': (Buffer);
  'duplicate': (boolean);
}
