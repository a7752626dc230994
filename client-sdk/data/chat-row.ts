// A chat row's checks: transformers' (and TRL's) conversational format, as a chat template reads it. Every turn
// has a role and, but for an assistant turn that only calls tools, string content; an assistant turn may carry
// reasoning_content and tool_calls; a tool result is a "tool" (or Llama 3.1's "ipython") turn. The row may carry
// `tools`, the function schemas the template lists, and `chat_template_kwargs`, the template's own options. What
// is checked is what would otherwise fail inside the template, or render something the user did not mean,
// with an error that names the file, line and field; a message's other fields reach the template unchanged.
import { reservedTemplateKwarg, type ChatMessage, type JsonValue } from '../text/hf-tokenizer';
import { DataFileError } from './data-file-error';

/** Roles a turn may have: the template decides what each renders to; a misspelt role is refused here. */
export const CHAT_ROLES = ['system', 'developer', 'user', 'assistant', 'tool', 'ipython'] as const;

type JsonObject = { readonly [key: string]: JsonValue };

export interface ChatRowFields {
  readonly messages: readonly ChatMessage[];
  readonly tools?: readonly JsonValue[];
  readonly kwargs?: Readonly<Record<string, JsonValue>>;
}

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);
const kindOf = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v);

/** The chat fields of row `o` (parsed JSON, so every value is a JSON value), checked. */
export function parseChatRow(file: string, line: number, o: JsonObject): ChatRowFields {
  const bad = (field: string, detail: string): never => {
    throw new DataFileError(file, line, field, detail);
  };
  const msgs = o.messages;
  if (!Array.isArray(msgs)) return bad('messages', 'must be a list of {role, content}');
  if (msgs.length === 0) return bad('messages', 'is empty');
  const messages = (msgs as readonly JsonValue[]).map((m, i) => checkMessage(m, `messages[${i}]`, bad));
  if (!messages.some((m) => m.role === 'assistant')) bad('messages', 'has no assistant turn: there is nothing to learn');
  let tools: readonly JsonValue[] | undefined;
  if (o.tools !== undefined && o.tools !== null) {
    if (!Array.isArray(o.tools)) return bad('tools', `must be a list of function schemas, got ${kindOf(o.tools)}`);
    o.tools.forEach((t, i) => {
      if (!isObject(t)) bad(`tools[${i}]`, `must be an object (a function schema), got ${kindOf(t)}`);
    });
    tools = o.tools;
  }
  let kwargs: Readonly<Record<string, JsonValue>> | undefined;
  const k = o.chat_template_kwargs;
  if (k !== undefined && k !== null) {
    if (!isObject(k)) return bad('chat_template_kwargs', `must be an object, got ${kindOf(k)}`);
    const reserved = reservedTemplateKwarg(k);
    if (reserved !== undefined) bad(`chat_template_kwargs.${reserved}`, 'is set by the renderer, not an option');
    kwargs = k;
  }
  return { messages, ...(tools !== undefined ? { tools } : {}), ...(kwargs !== undefined ? { kwargs } : {}) };
}

function checkMessage(m: JsonValue, f: string, bad: (field: string, detail: string) => never): ChatMessage {
  if (!isObject(m)) return bad(f, 'must be an object {role, content}');
  const role = m.role;
  if (typeof role !== 'string' || !(CHAT_ROLES as readonly string[]).includes(role)) {
    return bad(`${f}.role`, `must be one of ${CHAT_ROLES.join(', ')}, got ${JSON.stringify(role ?? null)}`);
  }
  for (const key of ['tool_call_id', 'name'] as const) {
    if (m[key] !== undefined && typeof m[key] !== 'string') bad(`${f}.${key}`, `must be a string, got ${kindOf(m[key])}`);
  }
  if (role !== 'assistant') {
    for (const key of ['tool_calls', 'reasoning_content'] as const) if (m[key] !== undefined) bad(`${f}.${key}`, 'only an assistant turn has it');
    if (typeof m.content !== 'string') bad(`${f}.content`, `must be a string, got ${kindOf(m.content)}`);
    return m as unknown as ChatMessage;
  }
  if (m.reasoning_content !== undefined && typeof m.reasoning_content !== 'string') {
    bad(`${f}.reasoning_content`, `must be a string, got ${kindOf(m.reasoning_content)}`);
  }
  const calls = m.tool_calls;
  if (calls !== undefined && calls !== null) {
    if (!Array.isArray(calls) || calls.length === 0) bad(`${f}.tool_calls`, 'must be a non-empty list of {type: "function", function: {name, arguments}}');
    (calls as readonly JsonValue[]).forEach((c, j) => checkToolCall(c, `${f}.tool_calls[${j}]`, bad));
  }
  const calling = Array.isArray(calls) && calls.length > 0;
  if (typeof m.content !== 'string' && !(calling && (m.content === null || m.content === undefined))) {
    bad(`${f}.content`, `must be a string (null only beside tool_calls), got ${kindOf(m.content)}`);
  }
  return m as unknown as ChatMessage;
}

function checkToolCall(c: JsonValue, f: string, bad: (field: string, detail: string) => never): void {
  if (!isObject(c)) return bad(f, 'must be an object {type: "function", function: {name, arguments}}');
  if (c.type !== undefined && c.type !== 'function') bad(`${f}.type`, `must be "function", got ${JSON.stringify(c.type)}`);
  if (c.id !== undefined && typeof c.id !== 'string') bad(`${f}.id`, `must be a string, got ${kindOf(c.id)}`);
  const fn = c.function;
  if (!isObject(fn)) return bad(`${f}.function`, `must be an object {name, arguments}, got ${kindOf(fn)}`);
  if (typeof fn.name !== 'string' || fn.name.length === 0) bad(`${f}.function.name`, 'must be a non-empty string');
  if (!isObject(fn.arguments) && typeof fn.arguments !== 'string') {
    bad(`${f}.function.arguments`, `must be an object or the JSON text of one, got ${kindOf(fn.arguments)}`);
  }
}
