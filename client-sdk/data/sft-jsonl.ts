// JSON Lines rows → tokenised SFT examples with the model directory's own tokenizer, and a seeded
// train/validation split.
//   prompt/completion: prompt with the tokenizer's special tokens (e.g. BOS), completion + EOS; loss on the
//     completion.
//   messages: rendered with the chat template; the assistant turns are found by rendering the conversation
//     prefix by prefix (before each assistant turn with the generation prompt, after it without), so exactly the
//     text each assistant turn adds (its content and end-of-turn marker) is scored, and nothing else.
import { seededShuffle } from '../../proto/shuffle';
import type { HfTokenizer } from '../text/hf-tokenizer';
import type { SftExample } from '../sft/types';
import { DataFileError, readJsonlFile, type JsonlRow } from './jsonl';

export interface JsonlSftOptions {
  /** Seed of the train/validation split. */
  readonly seed: number;
  /** Share of rows held out for validation (default 0.1; at least one row when there are two or more). */
  readonly validationFraction?: number;
}

export interface JsonlSftData {
  readonly train: SftExample[];
  readonly eval: SftExample[];
}

/** Text segments of a rendered conversation, with whether each is an assistant turn's own text. */
export function chatSegments(tok: HfTokenizer, messages: Extract<JsonlRow, { kind: 'chat' }>['messages']): { text: string; scored: boolean }[] {
  const out: { text: string; scored: boolean }[] = [];
  let done = '';
  messages.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    const before = tok.applyChatTemplate(messages.slice(0, i), true);
    const after = tok.applyChatTemplate(messages.slice(0, i + 1), false);
    if (!before.startsWith(done) || !after.startsWith(before)) {
      throw new Error('the chat_template does not render the conversation prefix by prefix, so assistant turns cannot be told apart');
    }
    out.push({ text: before.slice(done.length), scored: false }, { text: after.slice(before.length), scored: true });
    done = after;
  });
  const full = tok.applyChatTemplate(messages, false);
  if (!full.startsWith(done)) throw new Error('the chat_template renders the whole conversation differently from its prefixes');
  if (full.length > done.length) out.push({ text: full.slice(done.length), scored: false });
  return out.filter((s) => s.text.length > 0);
}

/** One row as an SftExample; errors name the file, line and field. */
export function encodeRow(tok: HfTokenizer, file: string, row: JsonlRow): SftExample {
  if (row.kind === 'completion') {
    const eos = tok.eosId;
    return { prompt: tok.encode(row.prompt, true), completion: [...tok.encode(row.completion), ...(eos === undefined ? [] : [eos])] };
  }
  if (tok.chatTemplate === undefined) throw new DataFileError(file, row.line, 'messages', "the model's tokenizer_config.json has no chat_template");
  let segs: { text: string; scored: boolean }[];
  try {
    segs = chatSegments(tok, row.messages);
  } catch (e) {
    throw new DataFileError(file, row.line, 'messages', (e as Error).message);
  }
  const tokens: number[] = [];
  const scored: boolean[] = [];
  for (const s of segs) {
    const ids = tok.encode(s.text);
    tokens.push(...ids);
    for (let i = 0; i < ids.length; i++) scored.push(s.scored);
  }
  const first = scored.indexOf(true);
  if (first < 0) throw new DataFileError(file, row.line, 'messages', 'the assistant turns render to no tokens');
  return { prompt: tokens.slice(0, first), completion: tokens.slice(first), completionMask: scored.slice(first) };
}

/** Seeded split of n rows: indices held out for validation and the rest, each in file order. */
export function splitIndices(n: number, seed: number, fraction: number): { train: number[]; eval: number[] } {
  if (!(fraction >= 0 && fraction < 1)) throw new Error(`validation fraction must be in [0, 1), got ${fraction}`);
  let nEval = Math.round(n * fraction);
  if (fraction > 0 && n >= 2) nEval = Math.min(n - 1, Math.max(1, nEval));
  const order = seededShuffle(
    Array.from({ length: n }, (_, i) => i),
    seed,
    'jsonl-validation-split',
  );
  const held = new Set(order.slice(0, nEval));
  const all = Array.from({ length: n }, (_, i) => i);
  return { train: all.filter((i) => !held.has(i)), eval: all.filter((i) => held.has(i)) };
}

/** Reads, checks and tokenises a whole JSON Lines file, then splits it; any bad row fails the whole file. */
export async function loadJsonlSftData(file: string, tok: HfTokenizer, opts: JsonlSftOptions): Promise<JsonlSftData> {
  const rows = await readJsonlFile(file);
  const examples = rows.map((r) => encodeRow(tok, file, r));
  const { train, eval: held } = splitIndices(examples.length, opts.seed, opts.validationFraction ?? 0.1);
  return { train: train.map((i) => examples[i]), eval: held.map((i) => examples[i]) };
}
