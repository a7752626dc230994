// Original file: proto/fedtune.proto

export const DType = {
  DTYPE_UNSPECIFIED: 'DTYPE_UNSPECIFIED',
  FLOAT32: 'FLOAT32',
  UINT32: 'UINT32',
} as const;

export type DType =
  | 'DTYPE_UNSPECIFIED'
  | 0
  | 'FLOAT32'
  | 1
  | 'UINT32'
  | 2

export type DType__Output = typeof DType[keyof typeof DType]
