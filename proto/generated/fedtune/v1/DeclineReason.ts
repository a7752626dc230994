// Original file: proto/fedtune.proto

export const DeclineReason = {
  DECLINE_REASON_UNSPECIFIED: 'DECLINE_REASON_UNSPECIFIED',
  TRAINING_FAILED: 'TRAINING_FAILED',
  SETTINGS_MISMATCH: 'SETTINGS_MISMATCH',
} as const;

export type DeclineReason =
  | 'DECLINE_REASON_UNSPECIFIED'
  | 0
  | 'TRAINING_FAILED'
  | 1
  | 'SETTINGS_MISMATCH'
  | 2

export type DeclineReason__Output = typeof DeclineReason[keyof typeof DeclineReason]
