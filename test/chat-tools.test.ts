// Chat rows in transformers' (and TRL's) conversational format beyond role/content: tools, tool calls, tool results,
// reasoning_content and chat_template_kwargs (client-sdk/data/chat-row.ts, sft-jsonl.ts). The reference is
// transformers itself: test/fixtures/make_chat_render.py rendered every prefix of the rows in
// fixtures/chat/tool-rows.json with apply_chat_template (transformers 5.17, on the GPU machine) and this project's
// own test template fixtures/chat/tool-template.jinja (tools listed as JSON, calls in <call> tags, results grouped,
// reasoning kept after the last user turn, enable_thinking false closing an empty <think> in the generation prompt).
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { HfTokenizer, type ChatMessage, type JsonValue } from '../client-sdk/text/hf-tokenizer';
import { encodeRowExamples, loadJsonlSftData } from '../client-sdk/data/sft-jsonl';
import { parseJsonl, type JsonlRow } from '../client-sdk/data/jsonl';
import { templateKwargsFromFlag } from '../client-sdk/site/template-kwargs-flag';
import { completionPairs, fitToWindow } from '../client-sdk/sft/pack';
import type { SftExample } from '../client-sdk/sft/types';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const FIX = path.resolve(__dirname, '..', '..', 'test', 'fixtures');
const TOK_DIR = path.join(FIX, 'llama', 'tok-bytelevel');
const SITE_CLI = path.join(__dirname, '..', 'client-sdk', 'cli', 'fedtune-site.js');

interface Row {
  readonly name: string;
  readonly messages: ChatMessage[];
  readonly tools?: JsonValue[];
  readonly chat_template_kwargs?: Record<string, JsonValue>;
}
interface Rendered {
  readonly transformers: string;
  readonly rows: { readonly name: string; readonly renders: { k: number; gen: boolean; text: string }[] }[];
}

const ROWS = JSON.parse(fs.readFileSync(path.join(FIX, 'chat', 'tool-rows.json'), 'utf8')) as Row[];
const RENDERED = JSON.parse(fs.readFileSync(path.join(FIX, 'chat', 'rendered.json'), 'utf8')) as Rendered;

/** transformers' rendering of row i's first k messages. */
const reference = (i: number, k: number, gen: boolean): string => RENDERED.rows[i].renders.find((r) => r.k === k && r.gen === gen)!.text;

/** Row i as parseJsonl reads it from a data file. */
const parsed = (i: number, drop: readonly string[] = []): JsonlRow => {
  const { name: _name, ...row } = ROWS[i];
  for (const k of drop) delete (row as Record<string, unknown>)[k];
  return parseJsonl('d.jsonl', JSON.stringify(row))[0];
};

const scoredText = (tok: HfTokenizer, ex: SftExample): string => tok.decode(completionPairs(fitToWindow(ex, 4096)).map((p) => p.target));
const allText = (tok: HfTokenizer, ex: SftExample): string => tok.decode([...ex.prompt, ...ex.completion]);

/** The text transformers' renders say assistant turn `i` of row `r` adds: after the generation prompt, up to the turn's end. */
const turnText = (r: number, i: number): string => reference(r, i + 1, false).slice(reference(r, i, true).length);

describe('chat rows with tools, tool calls, reasoning and template options, against transformers', () => {
  let tok: HfTokenizer;
  before(async () => {
    const json = JSON.parse(fs.readFileSync(path.join(TOK_DIR, 'tokenizer.json'), 'utf8')) as object;
    const config = JSON.parse(fs.readFileSync(path.join(TOK_DIR, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    tok = new HfTokenizer(json, { ...config, chat_template: fs.readFileSync(path.join(FIX, 'chat', 'tool-template.jinja'), 'utf8') });
  });

  it(`renders every prefix of every row exactly as transformers ${RENDERED.transformers}'s apply_chat_template (46 strings)`, () => {
    let n = 0;
    ROWS.forEach((row, i) => {
      expect(RENDERED.rows[i].name).to.equal(row.name);
      for (const r of RENDERED.rows[i].renders) {
        const got = tok.applyChatTemplate(row.messages.slice(0, r.k), r.gen, { tools: row.tools, kwargs: row.chat_template_kwargs });
        expect(got, `${row.name}, ${r.k} messages, generation prompt ${r.gen}`).to.equal(r.text);
        n++;
      }
    });
    expect(n).to.equal(46);
  });

  it('a tool-calling conversation is one example: the call and the answer are scored, the tools, the question and the result are not', () => {
    const examples = encodeRowExamples(tok, 'd.jsonl', parsed(0));
    expect(examples).to.have.length(1);
    expect(allText(tok, examples[0])).to.equal(reference(0, 5, false));
    expect(scoredText(tok, examples[0])).to.equal(turnText(0, 2) + turnText(0, 4));
    expect(turnText(0, 2)).to.contain('<call>{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "C"}}</call><|eot_id|>');
    expect(turnText(0, 4)).to.equal('<think>\n-3 C is below freezing.\n</think>\n\nYes: -3 °C.<|eot_id|>');
    const prompt = tok.decode(examples[0].prompt);
    expect(prompt).to.contain('Functions you may call:\n{"type": "function"').and.to.not.contain('<call>');
    // Two results in a row are one tool block; neither is a target.
    const parallel = encodeRowExamples(tok, 'd.jsonl', parsed(2));
    expect(parallel).to.have.length(1);
    expect(scoredText(tok, parallel[0])).to.equal(turnText(2, 1) + turnText(2, 4));
    expect(scoredText(tok, parallel[0])).to.not.contain('<result>');
  });

  it('reasoning dropped from history: one example per assistant turn, each as transformers renders that prefix', () => {
    const examples = encodeRowExamples(tok, 'd.jsonl', parsed(3));
    expect(examples).to.have.length(2);
    expect(allText(tok, examples[0])).to.equal(reference(3, 2, false));
    expect(allText(tok, examples[1])).to.equal(reference(3, 4, false));
    expect(tok.decode(examples[1].prompt)).to.equal(reference(3, 3, true));
    expect(scoredText(tok, examples[1])).to.equal('<think>\n3 divides it.\n</think>\n\nNo.<|eot_id|>');
  });

  it("enable_thinking: the site's option applies to every row, a row's own overrides it, and it leaves the rows' text as transformers renders it", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedtune-chat-tools-'));
    try {
      const f = path.join(dir, 'data.jsonl');
      const { name: _n, chat_template_kwargs: _k, ...bare } = ROWS[4];
      const thinking = { ...bare, chat_template_kwargs: { enable_thinking: true } };
      fs.writeFileSync(f, `${JSON.stringify(bare)}\n${JSON.stringify(thinking)}\n`);
      const data = await loadJsonlSftData(f, tok, { seed: 1, validationFraction: 0, chatTemplateKwargs: { enable_thinking: false } });
      // The template drops even an empty reasoning block from history, so each row is one example per turn.
      expect(data.train).to.have.length(4);
      // Under the site's false the row is the fixture's enable_thinking-false row, as transformers renders each prefix.
      expect(allText(tok, data.train[0])).to.equal(reference(4, 3, false));
      expect(tok.decode(data.train[0].prompt)).to.equal(reference(4, 2, true));
      expect(allText(tok, data.train[1])).to.equal(reference(4, 5, false));
      expect(tok.decode(data.train[1].prompt)).to.equal(reference(4, 4, true));
      expect(data.train.slice(0, 2).map((ex) => scoredText(tok, ex))).to.deep.equal(['4<|eot_id|>', '6<|eot_id|>']);
      // The row's own true wins: the generation prompt has no closed <think>, so the empty block is scored.
      expect(tok.decode(data.train[3].prompt).endsWith('<|start_header_id|>assistant<|end_header_id|>\n\n')).to.equal(true);
      expect(data.train.slice(2).map((ex) => scoredText(tok, ex))).to.deep.equal(['<think>\n\n</think>\n\n4<|eot_id|>', '<think>\n\n</think>\n\n6<|eot_id|>']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--chat-template-kwargs is checked before anything loads: JSON, an object, no renderer-set key, and only with --model/--data', async () => {
    expect(templateKwargsFromFlag(undefined)).to.equal(undefined);
    expect(templateKwargsFromFlag('{"enable_thinking": false}')).to.deep.equal({ enable_thinking: false });
    expect(() => templateKwargsFromFlag('{enable_thinking: false}')).to.throw(/^--chat-template-kwargs is not JSON \(/);
    expect(() => templateKwargsFromFlag('[1]')).to.throw('--chat-template-kwargs must be a JSON object, e.g. \'{"enable_thinking": false}\'');
    expect(() => templateKwargsFromFlag('{"messages": []}')).to.throw("--chat-template-kwargs: 'messages' is set by the renderer, not an option");
    expect(() => tok.applyChatTemplate([{ role: 'user', content: 'a' }], false, { kwargs: { tools: [] } })).to.throw(
      "chat template option 'tools' is not an option: it is set by the renderer",
    );
    const run = (extra: string[]): Promise<string> =>
      promisify(execFile)(process.execPath, [SITE_CLI, 'client', '--address', '127.0.0.1:1', '--name', 'x', ...extra], { timeout: 30_000 }).then(
        () => 'exit 0',
        (e: { stderr: string }) => e.stderr,
      );
    expect(await run(['--chat-template-kwargs', '{"add_generation_prompt": true}'])).to.contain(
      "--chat-template-kwargs: 'add_generation_prompt' is set by the renderer, not an option",
    );
    expect(await run(['--chat-template-kwargs', '{"enable_thinking": false}'])).to.contain('--chat-template-kwargs goes with --model and --data');
  });
});
