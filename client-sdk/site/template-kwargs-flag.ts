// `fedtune-site client --chat-template-kwargs '{"enable_thinking": false}'`: the site's options for its model's
// chat template, as transformers' apply_chat_template(**kwargs) and TRL's chat_template_kwargs take them (Qwen3's
// enable_thinking, a date string, …). A row's own `chat_template_kwargs` override them (client-sdk/data/chat-row.ts).
// Checked here, before anything loads, with the refusal naming the flag.
import { reservedTemplateKwarg, type JsonValue } from '../text/hf-tokenizer';

/** The flag's value as an object, or undefined when not given; an error naming the flag otherwise. */
export function templateKwargsFromFlag(v: string | undefined): Readonly<Record<string, JsonValue>> | undefined {
  if (v === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(v);
  } catch (e) {
    throw new Error(`--chat-template-kwargs is not JSON (${(e as Error).message}); give an object, e.g. '{"enable_thinking": false}'`, { cause: e });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error(`--chat-template-kwargs must be a JSON object, e.g. '{"enable_thinking": false}'`);
  }
  const reserved = reservedTemplateKwarg(parsed);
  if (reserved !== undefined) throw new Error(`--chat-template-kwargs: '${reserved}' is set by the renderer, not an option`);
  return parsed as Record<string, JsonValue>;
}
