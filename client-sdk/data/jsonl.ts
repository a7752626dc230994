// A site's own fine-tuning data as JSON Lines, in the two shapes people have:
//   {"prompt": "...", "completion": "..."}                       loss on the completion
//   {"messages": [{"role": "user", "content": "..."}, …]}         loss on the assistant turns only
// The whole file is read and every row checked before anything is returned, so nothing ever trains on a
// half-read or half-valid file; a bad row is an error naming the file (as the user gave it), the line and the
// field. Other keys on a row (ids, sources, …) are ignored. Blank lines are skipped.
import { promises as fs } from 'fs';

export const CHAT_ROLES = ['system', 'user', 'assistant'] as const;
export type ChatRole = (typeof CHAT_ROLES)[number];

export type JsonlRow =
  | { readonly kind: 'completion'; readonly line: number; readonly prompt: string; readonly completion: string }
  | { readonly kind: 'chat'; readonly line: number; readonly messages: readonly { readonly role: ChatRole; readonly content: string }[] };

export class DataFileError extends Error {
  override name = 'DataFileError';
  constructor(
    readonly file: string,
    readonly line: number | undefined,
    readonly field: string | undefined,
    detail: string,
  ) {
    super(`${file}${line !== undefined ? `:${line}` : ''}: ${field !== undefined ? `field '${field}': ` : ''}${detail}`);
  }
}

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
  if (hasChat && hasPair) throw new DataFileError(file, line, 'messages', 'a row has either messages or prompt/completion, not both');
  if (!hasChat && !hasPair) throw new DataFileError(file, line, 'prompt', 'missing: a row needs prompt and completion, or messages');
  if (hasPair) {
    for (const k of ['prompt', 'completion']) {
      if (!(k in o)) throw new DataFileError(file, line, k, 'missing');
      if (typeof o[k] !== 'string') throw new DataFileError(file, line, k, `must be a string, got ${o[k] === null ? 'null' : typeof o[k]}`);
    }
    if ((o.completion as string).length === 0) throw new DataFileError(file, line, 'completion', 'is empty: there is nothing to learn');
    return { kind: 'completion', line, prompt: o.prompt as string, completion: o.completion as string };
  }
  const msgs = o.messages;
  if (!Array.isArray(msgs)) throw new DataFileError(file, line, 'messages', 'must be a list of {role, content}');
  if (msgs.length === 0) throw new DataFileError(file, line, 'messages', 'is empty');
  const out = msgs.map((m: unknown, i) => {
    const f = `messages[${i}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new DataFileError(file, line, f, 'must be an object {role, content}');
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== 'string' || !(CHAT_ROLES as readonly string[]).includes(role)) {
      throw new DataFileError(file, line, `${f}.role`, `must be one of ${CHAT_ROLES.join(', ')}, got ${JSON.stringify(role ?? null)}`);
    }
    if (typeof content !== 'string') throw new DataFileError(file, line, `${f}.content`, `must be a string, got ${content === null ? 'null' : typeof content}`);
    return { role: role as ChatRole, content };
  });
  if (!out.some((m) => m.role === 'assistant')) throw new DataFileError(file, line, 'messages', 'has no assistant turn: there is nothing to learn');
  return { kind: 'chat', line, messages: out };
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
