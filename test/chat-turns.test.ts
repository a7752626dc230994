// Chat templates that render an assistant turn differently once a later user turn follows it (Qwen3's and
// DeepSeek-R1's drop an earlier turn's <think> reasoning): such a conversation is no concatenation of its prefixes,
// so a row becomes one example per assistant turn, each the conversation up to that turn as the template renders it
// there, scoring that turn alone (client-sdk/data/sft-jsonl.ts chatExamples). The template below is this test's own,
// written for it on the byte-level fixture tokenizer; it keeps reasoning only in turns after the last user message.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { HfTokenizer } from '../client-sdk/text/hf-tokenizer';
import { encodeRow, encodeRowExamples, loadJsonlSftData } from '../client-sdk/data/sft-jsonl';
import { completionPairs, fitToWindow } from '../client-sdk/sft/pack';
import type { SftExample } from '../client-sdk/sft/types';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const TOK_DIR = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'llama', 'tok-bytelevel');

const HEADER = (role: string): string => `'<|start_header_id|>' + ${role} + '<|end_header_id|>\\n\\n'`;
const REASONING_TEMPLATE = [
  '{%- set ns = namespace(last_user=-1) %}',
  "{%- for m in messages[::-1] %}{%- if ns.last_user < 0 and m.role == 'user' %}{%- set ns.last_user = (messages|length - 1) - loop.index0 %}{%- endif %}{%- endfor %}",
  '{{- bos_token }}',
  '{%- for m in messages %}',
  '{%- set content = m.content %}',
  "{%- if m.role == 'assistant' and loop.index0 < ns.last_user and '</think>' in content %}{%- set content = content.split('</think>')[-1].lstrip('\\n') %}{%- endif %}",
  `{{- ${HEADER('m.role')} + content + '<|eot_id|>' }}`,
  '{%- endfor %}',
  `{%- if add_generation_prompt %}{{- ${HEADER("'assistant'")} }}{%- endif %}`,
].join('\n');

const CONVERSATION = [
  { role: 'user' as const, content: 'Is 7 prime?' },
  { role: 'assistant' as const, content: '<think>Only 1 and 7 divide it.</think>\nYes.' },
  { role: 'user' as const, content: 'And 9?' },
  { role: 'assistant' as const, content: '<think>3 divides it.</think>\nNo.' },
];

async function tokenizer(template: string): Promise<HfTokenizer> {
  const json = JSON.parse(fs.readFileSync(path.join(TOK_DIR, 'tokenizer.json'), 'utf8')) as object;
  const config = JSON.parse(fs.readFileSync(path.join(TOK_DIR, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  return new HfTokenizer(json, { ...config, chat_template: template });
}

const scoredText = (tok: HfTokenizer, ex: SftExample): string => tok.decode(completionPairs(fitToWindow(ex, 4096)).map((p) => p.target));

describe('chat templates that re-render history: one example per assistant turn', () => {
  let tok: HfTokenizer;
  before(async () => {
    tok = await tokenizer(REASONING_TEMPLATE);
  });

  it('each turn is the conversation up to it as the template renders it there, with that turn alone scored', () => {
    // The template does drop the first turn's reasoning once the second user turn follows it.
    expect(tok.applyChatTemplate(CONVERSATION)).to.not.contain('Only 1 and 7');
    const examples = encodeRowExamples(tok, 'd.jsonl', { kind: 'chat', line: 1, messages: CONVERSATION });
    expect(examples).to.have.length(2);
    for (const [k, end] of [
      [0, 2],
      [1, 4],
    ] as const) {
      const ex = examples[k];
      // Prompt and completion together are the template's own rendering of the conversation up to the turn.
      expect([...ex.prompt, ...ex.completion], `turn ${k}`).to.deep.equal(tok.encode(tok.applyChatTemplate(CONVERSATION.slice(0, end))));
      // The prompt is what the model is given when it answers there: the generation prompt ends it.
      expect(ex.prompt, `turn ${k}`).to.deep.equal(tok.encode(tok.applyChatTemplate(CONVERSATION.slice(0, end - 1), true)));
    }
    expect(scoredText(tok, examples[0])).to.equal('<think>Only 1 and 7 divide it.</think>\nYes.<|eot_id|>');
    expect(scoredText(tok, examples[1])).to.equal('<think>3 divides it.</think>\nNo.<|eot_id|>');
    // The second turn's history carries the first answer as the template shows history: without its reasoning.
    expect(tok.decode(examples[1].prompt)).to.contain('<|start_header_id|>assistant<|end_header_id|>\n\nYes.<|eot_id|>');
    expect(tok.decode(examples[1].prompt)).to.not.contain('Only 1 and 7');
    // encodeRow promises one example; it names the reason it cannot give one.
    expect(() => encodeRow(tok, 'd.jsonl', { kind: 'chat', line: 3, messages: CONVERSATION })).to.throw(
      "d.jsonl:3: field 'messages': the chat_template does not render the conversation prefix by prefix",
    );
  });

  it('a template that renders every prefix as the conversation keeps one example per row, as encodeRow gives it', () => {
    const single = CONVERSATION.slice(0, 2);
    const examples = encodeRowExamples(tok, 'd.jsonl', { kind: 'chat', line: 1, messages: single });
    expect(examples).to.deep.equal([encodeRow(tok, 'd.jsonl', { kind: 'chat', line: 1, messages: single })]);
  });

  it('the validation split is by row: a conversation’s turns all land on one side', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedtune-chat-turns-'));
    try {
      const f = path.join(dir, 'data.jsonl');
      const rows = [0, 1, 2].map((r) => ({ messages: CONVERSATION.map((m) => ({ ...m, content: `${m.content} (${r})` })) }));
      fs.writeFileSync(f, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
      const data = await loadJsonlSftData(f, tok, { seed: 7, validationFraction: 0.34 });
      expect(data.train).to.have.length(4);
      expect(data.eval).to.have.length(2);
      const conversationOf = (ex: SftExample): string => /\((\d)\)<\|eot_id\|>$/.exec(scoredText(tok, ex))![1];
      expect(new Set(data.eval.map(conversationOf)).size).to.equal(1);
      expect(new Set(data.train.map(conversationOf)).size).to.equal(2);
      expect(data.train.map(conversationOf)).to.not.include(conversationOf(data.eval[0]));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a template whose turn does not start with its own generation prompt is refused, naming file, line and turn', async () => {
    // The generation prompt differs from the header the rendered turn has, and history is re-rendered too.
    const odd = await tokenizer(REASONING_TEMPLATE.replace(`{{- ${HEADER("'assistant'")} }}`, "{{- '<|start_header_id|>model<|end_header_id|>\\n\\n' }}"));
    expect(() => encodeRowExamples(odd, 'd.jsonl', { kind: 'chat', line: 5, messages: CONVERSATION })).to.throw(
      "d.jsonl:5: field 'messages': the chat_template renders assistant turn messages[1] so that it does not start with its own generation prompt, so the turn cannot be told apart",
    );
  });
});
