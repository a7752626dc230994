// Supervised fine-tuning data as the trainer receives it: already tokenised.

/** One prompt/completion pair; the loss is taken on the completion tokens only. */
export interface SftExample {
  readonly prompt: readonly number[];
  readonly completion: readonly number[];
  /**
   * Which completion tokens are scored (same length as completion); absent = all. A chat conversation is one
   * example whose completion runs from the first assistant turn to the end, with only assistant tokens scored.
   */
  readonly completionMask?: readonly boolean[];
}
