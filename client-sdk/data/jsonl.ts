// A site's own fine-tuning data as JSON Lines, in the three shapes people have:
//   {"prompt": "...", "completion": "..."}                       loss on the completion
//   {"messages": [{"role": "user", "content": "..."}, …]}         loss on the assistant turns only
//   {"text": "..."}                                              a document: loss on all of it (domain adaptation,
//                                                                 continued pretraining); a long one is several windows
// A chat row is transformers' (and TRL's) conversational format: assistant turns may carry tool_calls (content
// then null or absent) and reasoning_content, tool results are role "tool" turns, and the row may carry `tools`
// (the function schemas the template lists) and `chat_template_kwargs` (e.g. {"enable_thinking": false}); their
// checks are in chat-row.ts. The whole file is read and every row checked before anything is returned, so nothing
// ever trains on a half-read or half-valid file; a bad row is an error naming the file (as the user gave it), the
// line and the field. Other keys on a row (ids, sources, …) are ignored. Blank lines are skipped.
import { promises as fs } from 'fs';
import type { ChatMessage, JsonValue } from '../text/hf-tokenizer';
import { parseChatRow } from './chat-row';
import { DataFileError } from './data-file-error';

export { DataFileError };

export type JsonlRow =
  | { readonly kind: 'completion'; readonly line: number; readonly prompt: string; readonly completion: string }
  | { readonly kind: 'text'; readonly line: number; readonly text: string }
  | {
      readonly kind: 'chat';
      readonly line: number;
      readonly messages: readonly ChatMessage[];
      /** The row's function schemas, given to the template as `tools`. */
      readonly tools?: readonly JsonValue[];
      /** The row's template options; over the site's own (JsonlSftOptions.chatTemplateKwargs). */
      readonly kwargs?: Readonly<Record<string, JsonValue>>;
    };

function parseRow(file: string, line: number, text: string): JsonlRow {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new DataFileError(file, line, undefined, `not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new DataFileError(file, line, undefined, 'a row must be a JSON object');
  const o = v as Record<string, unknown>;
  const hasChat = 'messages' in o;
  const hasPair = 'prompt' in o || 'completion' in o;
  const hasText = 'text' in o;
  if (hasChat && hasPair) throw new DataFileError(file, line, 'messages', 'a row has either messages or prompt/completion, not both');
  if (hasText && (hasChat || hasPair)) throw new DataFileError(file, line, 'text', 'a row has text, messages or prompt/completion: one of them');
  if (!hasChat && !hasPair && !hasText) throw new DataFileError(file, line, 'prompt', 'missing: a row needs prompt and completion, messages, or text');
  if (hasText) {
    if (typeof o.text !== 'string') throw new DataFileError(file, line, 'text', `must be a string, got ${o.text === null ? 'null' : typeof o.text}`);
    if (o.text.length === 0) throw new DataFileError(file, line, 'text', 'is empty: there is nothing to learn');
    return { kind: 'text', line, text: o.text };
  }
  if (hasPair) {
    for (const k of ['prompt', 'completion']) {
      if (!(k in o)) throw new DataFileError(file, line, k, 'missing');
      if (typeof o[k] !== 'string') throw new DataFileError(file, line, k, `must be a string, got ${o[k] === null ? 'null' : typeof o[k]}`);
    }
    if ((o.completion as string).length === 0) throw new DataFileError(file, line, 'completion', 'is empty: there is nothing to learn');
    return { kind: 'completion', line, prompt: o.prompt as string, completion: o.completion as string };
  }
  return { kind: 'chat', line, ...parseChatRow(file, line, o as { readonly [key: string]: JsonValue }) };
}

/** Parses JSON Lines text; `file` names the source in errors. Throws on the first bad row. */
export function parseJsonl(file: string, text: string): JsonlRow[] {
  const rows: JsonlRow[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const t = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (t.trim() === '') return;
    rows.push(parseRow(file, i + 1, t));
  });
  if (rows.length === 0) throw new DataFileError(file, undefined, undefined, 'has no rows');
  return rows;
}

/** Reads and checks a whole JSON Lines file (UTF-8; invalid UTF-8 is an error, not replacement characters). */
export async function readJsonlFile(file: string): Promise<JsonlRow[]> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (e) {
    throw new DataFileError(file, undefined, undefined, `cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new DataFileError(file, undefined, undefined, 'is not valid UTF-8');
  }
  return parseJsonl(file, text.startsWith('\uFEFF') ? text.slice(1) : text);
}
