// JSON Lines rows → tokenised SFT examples with the model directory's own tokenizer, and a seeded
// train/validation split.
//   prompt/completion: prompt with the tokenizer's special tokens (e.g. BOS), completion + EOS; loss on the
//     completion.
//   messages: rendered with the chat template; the assistant turns are found by rendering the conversation
//     prefix by prefix (before each assistant turn with the generation prompt, after it without), so exactly the
//     text each assistant turn adds (its content and end-of-turn marker) is scored, and nothing else.
//     Some templates render a turn differently once a later user turn follows it (Qwen3's, DeepSeek-R1's: an
//     earlier assistant turn loses its <think> reasoning), so the conversation is no concatenation of its
//     prefixes. Such a row becomes one example per assistant turn, each the conversation up to that turn as the
//     template renders it when that turn is the last, scoring that turn alone: what the model sees when it
//     answers there. It costs more tokens (the history is repeated per turn); a template that renders the whole
//     conversation as its prefixes gets one example, as before.
import { seededShuffle } from '../../proto/shuffle';
import type { ChatMessage, HfTokenizer, JsonValue } from '../text/hf-tokenizer';
import type { SftExample } from '../sft/types';
import { DataFileError, readJsonlFile, type JsonlRow } from './jsonl';

export interface JsonlSftOptions {
  /** Seed of the train/validation split. */
  readonly seed: number;
  /** Share of rows held out for validation (default 0.1; at least one row when there are two or more). */
  readonly validationFraction?: number;
  /** The site's chat template options (transformers' **kwargs, e.g. {enable_thinking: false}); a row's own override them. */
  readonly chatTemplateKwargs?: Readonly<Record<string, JsonValue>>;
}

export interface JsonlSftData {
  readonly train: SftExample[];
  readonly eval: SftExample[];
}

type ChatRow = Extract<JsonlRow, { kind: 'chat' }>;
type Segments = { text: string; scored: boolean }[];
/** A row's conversation prefix rendered by its template, with or without the generation prompt. */
type Render = (messages: readonly ChatMessage[], addGenerationPrompt: boolean) => string;

/** The chat template does not render the conversation as the concatenation of its prefixes (chatSegments). */
class NotPrefixStable extends Error {}

/** Text segments of a rendered conversation, with whether each is an assistant turn's own text. */
export function chatSegments(render: Render, messages: readonly ChatMessage[]): Segments {
  const out: Segments = [];
  let done = '';
  messages.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    const before = render(messages.slice(0, i), true);
    const after = render(messages.slice(0, i + 1), false);
    if (!before.startsWith(done) || !after.startsWith(before)) {
      throw new NotPrefixStable('the chat_template does not render the conversation prefix by prefix, so assistant turns cannot be told apart');
    }
    out.push({ text: before.slice(done.length), scored: false }, { text: after.slice(before.length), scored: true });
    done = after;
  });
  const full = render(messages, false);
  if (!full.startsWith(done)) throw new NotPrefixStable('the chat_template renders the whole conversation differently from its prefixes');
  if (full.length > done.length) out.push({ text: full.slice(done.length), scored: false });
  return out.filter((s) => s.text.length > 0);
}

/**
 * The conversation's examples as segments: one (chatSegments) where the template renders it prefix by prefix, else
 * one per assistant turn, each the conversation up to that turn with only that turn scored.
 */
export function chatExamples(render: Render, messages: readonly ChatMessage[]): Segments[] {
  try {
    return [chatSegments(render, messages)];
  } catch (e) {
    if (!(e instanceof NotPrefixStable)) throw e;
  }
  const out: Segments[] = [];
  messages.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    const before = render(messages.slice(0, i), true);
    const after = render(messages.slice(0, i + 1), false);
    if (!after.startsWith(before)) {
      throw new Error(
        `the chat_template renders assistant turn messages[${i}] so that it does not start with its own generation prompt, so the turn cannot be told apart`,
      );
    }
    out.push(
      [
        { text: before, scored: false },
        { text: after.slice(before.length), scored: true },
      ].filter((s) => s.text.length > 0),
    );
  });
  return out;
}

/**
 * One row as its SftExamples: one, or one per assistant turn for a template that is not prefix-stable
 * (chatExamples). `kwargs`: the site's template options, under the row's own.
 */
export function encodeRowExamples(tok: HfTokenizer, file: string, row: JsonlRow, kwargs?: Readonly<Record<string, JsonValue>>): SftExample[] {
  if (row.kind !== 'chat') return [encodeRow(tok, file, row)];
  return chatRowSegments(tok, file, row, kwargs, chatExamples).map((segs) => encodeSegments(tok, file, row.line, segs));
}

/**
 * One row as one SftExample; errors name the file, line and field. A chat row whose template is not prefix-stable
 * is several examples: encodeRowExamples.
 */
export function encodeRow(tok: HfTokenizer, file: string, row: JsonlRow, kwargs?: Readonly<Record<string, JsonValue>>): SftExample {
  const eos = tok.eosId === undefined ? [] : [tok.eosId];
  if (row.kind === 'completion') return { prompt: tok.encode(row.prompt, true), completion: [...tok.encode(row.completion), ...eos] };
  if (row.kind === 'text') {
    // The whole document, with the tokenizer's special tokens (e.g. BOS) and EOS, as TRL's language-modelling rows.
    const tokens = [...tok.encode(row.text, true), ...eos];
    if (tokens.length < 2) throw new DataFileError(file, row.line, 'text', 'is a single token: there is nothing to predict');
    return { prompt: [], completion: tokens, document: true };
  }
  return encodeSegments(tok, file, row.line, chatRowSegments(tok, file, row, kwargs, chatSegments));
}

/**
 * A chat row cut into segments by `cut` (chatSegments or chatExamples), rendered with the row's tools and its
 * template options over the site's; errors name the file, line and field.
 */
function chatRowSegments<T>(
  tok: HfTokenizer,
  file: string,
  row: ChatRow,
  siteKwargs: Readonly<Record<string, JsonValue>> | undefined,
  cut: (render: Render, m: readonly ChatMessage[]) => T,
): T {
  if (tok.chatTemplate === undefined) throw new DataFileError(file, row.line, 'messages', "the model's tokenizer_config.json has no chat_template");
  const opts = { ...(row.tools ? { tools: row.tools } : {}), kwargs: { ...siteKwargs, ...row.kwargs } };
  try {
    return cut((m, gen) => tok.applyChatTemplate(m, gen, opts), row.messages);
  } catch (e) {
    throw new DataFileError(file, row.line, 'messages', (e as Error).message);
  }
}

function encodeSegments(tok: HfTokenizer, file: string, line: number, segs: Segments): SftExample {
  const tokens: number[] = [];
  const scored: boolean[] = [];
  for (const s of segs) {
    const ids = tok.encode(s.text);
    tokens.push(...ids);
    for (let i = 0; i < ids.length; i++) scored.push(s.scored);
  }
  const first = scored.indexOf(true);
  if (first < 0) throw new DataFileError(file, line, 'messages', 'the assistant turns render to no tokens');
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

/**
 * Reads, checks and tokenises a whole JSON Lines file, then splits it; any bad row fails the whole file. The split
 * is by row, so a conversation's per-turn examples (encodeRowExamples) stay on one side of it.
 */
export async function loadJsonlSftData(file: string, tok: HfTokenizer, opts: JsonlSftOptions): Promise<JsonlSftData> {
  const rows = await readJsonlFile(file);
  const examples = rows.map((r) => encodeRowExamples(tok, file, r, opts.chatTemplateKwargs));
  const { train, eval: held } = splitIndices(examples.length, opts.seed, opts.validationFraction ?? 0.1);
  return { train: train.flatMap((i) => examples[i]), eval: held.flatMap((i) => examples[i]) };
}
