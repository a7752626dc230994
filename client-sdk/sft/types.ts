// Supervised fine-tuning data as the trainer receives it: already tokenised.

/** One prompt/completion pair; the loss is taken on the completion tokens only. */
export interface SftExample {
  readonly prompt: readonly number[];
  readonly completion: readonly number[];
}
