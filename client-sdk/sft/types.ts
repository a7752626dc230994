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
  /**
   * A document modelled whole (a data file's text row: the prompt empty, every token after the first scored). Longer
   * than the training window, it becomes consecutive windows (pack.ts exampleWindows) instead of being cut at the
   * window's end, so none of it is lost.
   */
  readonly document?: boolean;
}
