// Text (prompt, completion) pairs → token ids that fit the model's window. When a prompt is too long we cut
// its middle, keeping the start (for e-mails: the subject) and the last `keepTail` tokens (the question), so
// the completion the loss is computed on always survives.
import type { ReducedGpt2Tokenizer } from '../text/tokenizer';

export interface TokenizedExample {
  readonly prompt: number[];
  readonly completion: number[];
}

export function encodeExample(
  tok: ReducedGpt2Tokenizer,
  ex: { readonly prompt: string; readonly completion: string },
  maxSeqLen: number,
  keepTail = 16,
): TokenizedExample {
  const completion = tok.encode(ex.completion);
  let prompt = tok.encode(ex.prompt);
  const budget = maxSeqLen - completion.length;
  if (budget < keepTail + 1) throw new RangeError(`maxSeqLen ${maxSeqLen} leaves no room for the prompt`);
  if (prompt.length > budget) prompt = [...prompt.slice(0, budget - keepTail), ...prompt.slice(prompt.length - keepTail)];
  return { prompt, completion };
}

export function encodeExamples(
  tok: ReducedGpt2Tokenizer,
  examples: readonly { readonly prompt: string; readonly completion: string }[],
  maxSeqLen: number,
  keepTail?: number,
): TokenizedExample[] {
  return examples.map((e) => encodeExample(tok, e, maxSeqLen, keepTail));
}
