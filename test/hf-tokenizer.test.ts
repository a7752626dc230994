// The model directory's own tokenizer against transformers: token ids for strings with Unicode, whitespace runs
// and special tokens, for a byte-level BPE (Llama 3 / Qwen2 style) and a SentencePiece-style BPE with byte
// fallback (Llama 2 / Mistral / TinyLlama style), both built and encoded by `tokenizers` + transformers
// (test/fixtures/make_llama_parity.py); and the chat template rendered as apply_chat_template renders it.
import * as fs from 'fs';
import * as path from 'path';
import { HfTokenizer } from '../client-sdk/text/hf-tokenizer';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const FIX = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'llama');

interface Case {
  text: string;
  ids: number[];
  ids_with_special: number[];
  decoded: string;
}
interface Expected {
  class: string;
  cases: Case[];
  raw_cases: Array<{ text: string; ids: number[]; ids_with_special: number[] }>;
  messages?: Array<{ role: string; content: string }>;
  chat_text?: string;
  chat_prompt_text?: string;
  chat_ids?: number[];
}

for (const kind of ['bytelevel', 'spm'] as const) {
  describe(`HF tokenizer.json (${kind}) agrees with transformers`, function () {
    const dir = path.join(FIX, `tok-${kind}`);
    const expected = JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Expected;
    let tok: HfTokenizer;
    before(async function () {
      tok = await HfTokenizer.fromDir(dir);
    });

    it(`the fixture covers Unicode, whitespace runs and special tokens (${expected.cases.length} strings)`, function () {
      const texts = expected.cases.map((c) => c.text);
      expect(texts.some((t) => /[^\x00-\x7f]/u.test(t))).to.equal(true);
      expect(texts.some((t) => /\p{Extended_Pictographic}/u.test(t))).to.equal(true);
      expect(texts.some((t) => /\s{2,}/.test(t))).to.equal(true);
      expect(texts.some((t) => t.includes('<|eot_id|>') || t.includes('</s>'))).to.equal(true);
    });

    for (const [i, c] of expected.cases.entries()) {
      it(`ids of ${JSON.stringify(c.text)} (#${i})`, function () {
        expect(tok.encode(c.text), 'without special tokens').to.deep.equal(c.ids);
        expect(tok.encode(c.text, true), 'with special tokens').to.deep.equal(c.ids_with_special);
        expect(c.ids).to.deep.equal(expected.raw_cases[i].ids); // transformers and `tokenizers` agree with each other
        expect(tok.decode(c.ids)).to.equal(c.decoded);
      });
    }
  });
}

describe('chat_template through @huggingface/jinja', function () {
  const dir = path.join(FIX, 'tok-bytelevel');
  const expected = JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Expected;

  it('renders the conversation exactly as apply_chat_template, and tokenises to the same ids', async function () {
    const tok = await HfTokenizer.fromDir(dir);
    const text = tok.applyChatTemplate(expected.messages!);
    expect(text).to.equal(expected.chat_text);
    expect(tok.encode(text)).to.deep.equal(expected.chat_ids);
  });

  it('renders the generation prompt', async function () {
    const tok = await HfTokenizer.fromDir(dir);
    expect(tok.applyChatTemplate(expected.messages!.slice(0, 4), true)).to.equal(expected.chat_prompt_text);
  });

  it('reads the template from chat_template.jinja when tokenizer_config.json has none (newer transformers)', async function () {
    const os = require('os') as typeof import('os');
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fedtune-tok-'));
    try {
      const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
      fs.writeFileSync(path.join(tmp, 'chat_template.jinja'), cfg.chat_template as string);
      delete cfg.chat_template;
      fs.writeFileSync(path.join(tmp, 'tokenizer_config.json'), JSON.stringify(cfg));
      fs.copyFileSync(path.join(dir, 'tokenizer.json'), path.join(tmp, 'tokenizer.json'));
      const tok = await HfTokenizer.fromDir(tmp);
      expect(tok.applyChatTemplate(expected.messages!)).to.equal(expected.chat_text);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('a directory without tokenizer.json is an error naming the file, not the path', async function () {
    const err = await HfTokenizer.fromDir(path.join(FIX, 'llama', 'base')).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).to.match(/^tokenizer\.json: cannot read it from the model directory \(ENOENT\)$/);
  });
});
