// A model directory's own tokenizer: tokenizer.json through @huggingface/tokenizers (pure JS, the same
// normalisers, pre-tokenisers, BPE and post-processors as the Rust `tokenizers`), and tokenizer_config.json's
// special tokens and chat_template, rendered by @huggingface/jinja as transformers' apply_chat_template does.
import { promises as fs } from 'fs';
import * as path from 'path';
// Both packages are ES modules that also ship CommonJS builds (their `require` export condition); TypeScript's
// CommonJS output may require() them but must take their types in import mode.
type TokenizersModule = typeof import('@huggingface/tokenizers', { with: { 'resolution-mode': 'import' } });
type JinjaModule = typeof import('@huggingface/jinja', { with: { 'resolution-mode': 'import' } });
const { Tokenizer } = require('@huggingface/tokenizers') as TokenizersModule;
const { Template } = require('@huggingface/jinja') as JinjaModule;
type Tokenizer = InstanceType<TokenizersModule['Tokenizer']>;
type Template = InstanceType<JinjaModule['Template']>;

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
/** Recent transformers save the chat template beside tokenizer_config.json instead of inside it. */
export const CHAT_TEMPLATE_FILE = 'chat_template.jinja';

/** A JSON value as a chat template reads it: tool schemas, tool-call arguments, template options. */
export type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/** One call in an assistant turn's tool_calls, as transformers' chat format (and OpenAI's) writes it. */
export interface ToolCall {
  readonly id?: string;
  readonly type?: 'function';
  /** arguments: an object, or the JSON text of one (OpenAI's form); the template decides how it is written. */
  readonly function: { readonly name: string; readonly arguments: JsonValue };
}

/**
 * One turn as transformers hands it to a chat template: role and content, and where a template reads them, an
 * assistant turn's reasoning_content and tool_calls (content may then be null) and a tool result's tool_call_id and
 * name. Fields of the data file's message beyond these reach the template unchanged, as a dict reaches it in Python.
 */
export interface ChatMessage {
  readonly role: string;
  readonly content?: string | null;
  readonly reasoning_content?: string;
  readonly tool_calls?: readonly ToolCall[];
  readonly tool_call_id?: string;
  readonly name?: string;
  readonly [field: string]: JsonValue | readonly ToolCall[] | undefined;
}

/** What apply_chat_template takes beside the messages: `tools` and its **kwargs (e.g. enable_thinking). */
export interface ChatRenderOptions {
  readonly tools?: readonly JsonValue[];
  readonly kwargs?: Readonly<Record<string, JsonValue>>;
}

/** Names the template context gives from its own arguments; a kwarg may not take them (transformers' neither). */
const RESERVED_TEMPLATE_KWARGS = ['messages', 'tools', 'documents', 'add_generation_prompt'] as const;

/** The first key of `kwargs` the renderer sets itself, or undefined: the one check every caller names in its error. */
export function reservedTemplateKwarg(kwargs: object): string | undefined {
  return RESERVED_TEMPLATE_KWARGS.find((k) => Object.hasOwn(kwargs, k));
}

/** tokenizer_config.json writes special tokens as strings or as AddedToken objects {content, …}. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/** chat_template may be one string or a list of named templates; the one named 'default' is used. */
function pickTemplate(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const d = v.find((t) => t && typeof t === 'object' && (t as { name?: unknown }).name === 'default') as { template?: unknown } | undefined;
    if (d && typeof d.template === 'string') return d.template;
  }
  return undefined;
}

export class HfTokenizer {
  readonly bosToken?: string;
  readonly eosToken?: string;
  readonly padToken?: string;
  readonly unkToken?: string;
  readonly chatTemplate?: string;
  private readonly tok: Tokenizer;
  private template?: Template;

  constructor(tokenizerJson: object, config: Record<string, unknown> = {}) {
    this.tok = new Tokenizer(tokenizerJson, config);
    this.bosToken = tokenText(config.bos_token);
    this.eosToken = tokenText(config.eos_token);
    this.padToken = tokenText(config.pad_token);
    this.unkToken = tokenText(config.unk_token);
    this.chatTemplate = pickTemplate(config.chat_template);
  }

  /** Reads tokenizer.json (required), tokenizer_config.json and chat_template.jinja (optional) from a model directory. */
  static async fromDir(dir: string): Promise<HfTokenizer> {
    let json: object;
    try {
      json = JSON.parse(await fs.readFile(path.join(dir, TOKENIZER_FILE), 'utf8')) as object;
    } catch (e) {
      throw new Error(`${TOKENIZER_FILE}: cannot read it from the model directory (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    let config: Record<string, unknown> = {};
    try {
      config = JSON.parse(await fs.readFile(path.join(dir, TOKENIZER_CONFIG_FILE), 'utf8')) as Record<string, unknown>;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${TOKENIZER_CONFIG_FILE}: ${(e as Error).message}`);
    }
    if (config.chat_template === undefined || config.chat_template === null) {
      const jinja = await fs.readFile(path.join(dir, CHAT_TEMPLATE_FILE), 'utf8').catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return undefined;
        throw new Error(`${CHAT_TEMPLATE_FILE}: ${e.message}`);
      });
      if (jinja !== undefined) config = { ...config, chat_template: jinja };
    }
    return new HfTokenizer(json, config);
  }

  /** Token ids of `text`; with addSpecialTokens the tokenizer's post-processor adds e.g. BOS (as transformers' encode). */
  encode(text: string, addSpecialTokens = false): number[] {
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: readonly number[], skipSpecialTokens = false): string {
    if (ids.length === 0) return ''; // the library refuses an empty list
    return this.tok.decode([...ids], { skip_special_tokens: skipSpecialTokens });
  }

  tokenId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  get eosId(): number | undefined {
    return this.eosToken === undefined ? undefined : this.tokenId(this.eosToken);
  }

  /**
   * The chat template rendered for `messages` (transformers' apply_chat_template with tokenize=False): `tools` as
   * its tools argument (absent: None, as there), and `kwargs` in the template's context beside the special tokens,
   * which they may override, as transformers' **kwargs do.
   */
  applyChatTemplate(messages: readonly ChatMessage[], addGenerationPrompt = false, opts: ChatRenderOptions = {}): string {
    if (this.chatTemplate === undefined) throw new Error(`${TOKENIZER_CONFIG_FILE} has no chat_template`);
    const kwargs = opts.kwargs ?? {};
    const reserved = reservedTemplateKwarg(kwargs);
    if (reserved !== undefined) throw new Error(`chat template option '${reserved}' is not an option: it is set by the renderer`);
    this.template ??= new Template(this.chatTemplate);
    return this.template.render({
      bos_token: this.bosToken ?? '',
      eos_token: this.eosToken ?? '',
      pad_token: this.padToken ?? '',
      unk_token: this.unkToken ?? '',
      ...kwargs,
      messages: messages.map((m) => ({ ...m })),
      tools: opts.tools ?? null,
      documents: null,
      add_generation_prompt: addGenerationPrompt,
    });
  }
}
