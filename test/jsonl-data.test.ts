// A site's own JSON Lines data: both shapes, chat masking (only assistant tokens are scored), the seeded split,
// and every kind of bad row refused with the file, line and field named, before anything is returned.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { HfTokenizer } from '../client-sdk/text/hf-tokenizer';
import { DataFileError, parseJsonl, readJsonlFile } from '../client-sdk/data/jsonl';
import { encodeRow, loadJsonlSftData, splitIndices } from '../client-sdk/data/sft-jsonl';
import { completionPairs, fitToWindow } from '../client-sdk/sft/pack';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const TOK_DIR = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'llama', 'tok-bytelevel');
const expected = JSON.parse(fs.readFileSync(path.join(TOK_DIR, 'expected.json'), 'utf8')) as {
  messages: Array<{ role: 'system' | 'user' | 'assistant'; content: string }>;
  chat_ids: number[];
};

describe('JSON Lines data: errors name file, line and field', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['invalid JSON', '{"prompt": "a", "completion": "b"}\n{"prompt": "a",', /^d\.jsonl:2: not valid JSON/],
    ['a row that is not an object', '[1, 2]', /^d\.jsonl:1: a row must be a JSON object$/],
    ['no shape', '{"body": "x"}', /^d\.jsonl:1: field 'prompt': missing: a row needs prompt and completion, messages, or text$/],
    ['text beside messages', '{"text": "x", "messages": []}', /^d\.jsonl:1: field 'text': a row has text, messages or prompt\/completion: one of them$/],
    ['a text that is not a string', '{"text": ["x"]}', /^d\.jsonl:1: field 'text': must be a string, got object$/],
    ['an empty text', '{"text": ""}', /^d\.jsonl:1: field 'text': is empty/],
    ['both shapes', '{"prompt": "a", "completion": "b", "messages": []}', /^d\.jsonl:1: field 'messages': a row has either/],
    ['a missing completion', '{"prompt": "a"}', /^d\.jsonl:1: field 'completion': missing$/],
    ['a prompt that is not a string', '{"prompt": 3, "completion": "b"}', /^d\.jsonl:1: field 'prompt': must be a string, got number$/],
    ['an empty completion', '{"prompt": "a", "completion": ""}', /^d\.jsonl:1: field 'completion': is empty/],
    ['messages not a list', '{"messages": "hi"}', /^d\.jsonl:1: field 'messages': must be a list/],
    ['empty messages', '{"messages": []}', /^d\.jsonl:1: field 'messages': is empty$/],
    ['a message that is not an object', '{"messages": [1]}', /^d\.jsonl:1: field 'messages\[0\]': must be an object/],
    [
      'an unknown role',
      '{"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}',
      /^d\.jsonl:1: field 'messages\[1\]\.role': must be one of system, developer, user, assistant, tool, ipython, got "bot"$/,
    ],
    [
      'a content that is not a string',
      '{"messages": [{"role": "assistant", "content": null}]}',
      /^d\.jsonl:1: field 'messages\[0\]\.content': must be a string \(null only beside tool_calls\), got null$/,
    ],
    [
      "a user turn's content that is null",
      '{"messages": [{"role": "user", "content": null}, {"role": "assistant", "content": "b"}]}',
      /^d\.jsonl:1: field 'messages\[0\]\.content': must be a string, got null$/,
    ],
    [
      'tool_calls on a user turn',
      '{"messages": [{"role": "user", "content": "a", "tool_calls": []}, {"role": "assistant", "content": "b"}]}',
      /^d\.jsonl:1: field 'messages\[0\]\.tool_calls': only an assistant turn has it$/,
    ],
    [
      'an empty tool_calls list',
      '{"messages": [{"role": "assistant", "content": null, "tool_calls": []}]}',
      /^d\.jsonl:1: field 'messages\[0\]\.tool_calls': must be a non-empty list/,
    ],
    [
      'a tool call without a name',
      '{"messages": [{"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function": {"arguments": {}}}]}]}',
      /^d\.jsonl:1: field 'messages\[0\]\.tool_calls\[0\]\.function\.name': must be a non-empty string$/,
    ],
    [
      "a tool call's arguments that are a list",
      '{"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": [1]}}]}]}',
      /^d\.jsonl:1: field 'messages\[0\]\.tool_calls\[0\]\.function\.arguments': must be an object or the JSON text of one, got a list$/,
    ],
    [
      'a tool call of another type',
      '{"messages": [{"role": "assistant", "tool_calls": [{"type": "code", "function": {"name": "f", "arguments": {}}}]}]}',
      /^d\.jsonl:1: field 'messages\[0\]\.tool_calls\[0\]\.type': must be "function", got "code"$/,
    ],
    [
      'reasoning_content that is not a string',
      '{"messages": [{"role": "assistant", "content": "b", "reasoning_content": 1}]}',
      /^d\.jsonl:1: field 'messages\[0\]\.reasoning_content': must be a string, got number$/,
    ],
    [
      'a tool_call_id that is not a string',
      '{"messages": [{"role": "tool", "content": "r", "tool_call_id": 7}, {"role": "assistant", "content": "b"}]}',
      /^d\.jsonl:1: field 'messages\[0\]\.tool_call_id': must be a string, got number$/,
    ],
    [
      'tools that are not a list',
      '{"tools": {"name": "f"}, "messages": [{"role": "assistant", "content": "b"}]}',
      /^d\.jsonl:1: field 'tools': must be a list of function schemas, got object$/,
    ],
    [
      'a tool schema that is not an object',
      '{"tools": ["f"], "messages": [{"role": "assistant", "content": "b"}]}',
      /^d\.jsonl:1: field 'tools\[0\]': must be an object \(a function schema\), got string$/,
    ],
    [
      'chat_template_kwargs that are not an object',
      '{"chat_template_kwargs": true, "messages": [{"role": "assistant", "content": "b"}]}',
      /^d\.jsonl:1: field 'chat_template_kwargs': must be an object, got boolean$/,
    ],
    [
      'a chat_template_kwargs key the renderer sets',
      '{"chat_template_kwargs": {"add_generation_prompt": true}, "messages": [{"role": "assistant", "content": "b"}]}',
      /^d\.jsonl:1: field 'chat_template_kwargs\.add_generation_prompt': is set by the renderer, not an option$/,
    ],
    ['no assistant turn', '{"messages": [{"role": "user", "content": "a"}]}', /^d\.jsonl:1: field 'messages': has no assistant turn/],
    ['no rows at all', '\n\n', /^d\.jsonl: has no rows$/],
  ];
  for (const [what, text, re] of cases) {
    it(`refuses ${what}`, () => {
      const err = (() => {
        try {
          parseJsonl('d.jsonl', text);
        } catch (e) {
          return e as Error;
        }
        return undefined;
      })();
      expect(err).to.be.instanceOf(DataFileError);
      expect(err?.message).to.match(re);
    });
  }

  it('a bad last row fails the whole file: nothing of it is returned (no half-read file to train on)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedtune-jsonl-'));
    const f = path.join(dir, 'data.jsonl');
    const good = '{"prompt": "a", "completion": "b"}\n'.repeat(50);
    fs.writeFileSync(f, good + '{"prompt": "a", "completion": 7}\n');
    const tok = await HfTokenizer.fromDir(TOK_DIR);
    let result: unknown;
    const err = await loadJsonlSftData(f, tok, { seed: 1 }).then(
      (r) => ((result = r), undefined),
      (e: Error) => e,
    );
    expect(result).to.equal(undefined);
    expect(err?.message).to.equal(`${f}:51: field 'completion': must be a string, got number`);
    fs.writeFileSync(f, Buffer.from([0x7b, 0xff, 0x7d, 0x0a]));
    expect(
      await readJsonlFile(f).then(
        () => '',
        (e: Error) => e.message,
      ),
    ).to.equal(`${f}: is not valid UTF-8`);
    fs.rmSync(dir, { recursive: true, force: true });
    expect(
      await readJsonlFile(f).then(
        () => '',
        (e: Error) => e.message,
      ),
    ).to.equal(`${f}: cannot read it (ENOENT)`);
  });

  it('skips blank lines and CRLF endings; numbers lines as an editor does', () => {
    const rows = parseJsonl('d.jsonl', '\r\n{"prompt": "a", "completion": "b"}\r\n\n{"messages": [{"role": "assistant", "content": "x"}]}\n');
    expect(rows.map((r) => [r.kind, r.line])).to.deep.equal([
      ['completion', 2],
      ['chat', 4],
    ]);
  });
});

describe('chat SFT masking', () => {
  let tok: HfTokenizer;
  before(async () => {
    tok = await HfTokenizer.fromDir(TOK_DIR);
  });

  it('the conversation tokenises to the ids of transformers apply_chat_template, and only assistant turns are scored', () => {
    const ex = encodeRow(tok, 'd.jsonl', { kind: 'chat', line: 1, messages: expected.messages });
    expect([...ex.prompt, ...ex.completion]).to.deep.equal(expected.chat_ids);
    const w = fitToWindow(ex, 4096);
    const scored = completionPairs(w).map((p) => p.target);
    // Exactly the two assistant turns, each with its end-of-turn token; the template trims the content.
    expect(tok.decode(scored)).to.equal('Hello.<|eot_id|>Oui, ça va.<|eot_id|>');
    const total = ex.prompt.length + ex.completion.length;
    expect(scored.length).to.be.lessThan(total / 3);
    // The prompt ends with the first assistant header: no system or user token is ever a target.
    expect(tok.decode(ex.prompt).endsWith('<|start_header_id|>assistant<|end_header_id|>\n\n')).to.equal(true);
  });

  it('a tokenizer without a chat_template refuses chat rows, naming file, line and field', async () => {
    const spm = await HfTokenizer.fromDir(path.join(TOK_DIR, '..', 'tok-spm'));
    expect(() => encodeRow(spm, 'd.jsonl', { kind: 'chat', line: 7, messages: expected.messages })).to.throw(
      "d.jsonl:7: field 'messages': the model's tokenizer_config.json has no chat_template",
    );
  });

  it('prompt/completion rows: BOS from the post-processor on the prompt, EOS after the completion, all of it scored', () => {
    const ex = encodeRow(tok, 'd.jsonl', { kind: 'completion', line: 1, prompt: 'Hello', completion: ' world' });
    expect(ex.prompt[0]).to.equal(tok.tokenId('<|begin_of_text|>'));
    expect(ex.completion[ex.completion.length - 1]).to.equal(tok.eosId);
    expect(ex.completionMask).to.equal(undefined);
  });
});

describe('seeded train/validation split', () => {
  it('is a partition, depends on the seed only, and holds out the requested share', () => {
    const a = splitIndices(100, 7, 0.1);
    expect(a).to.deep.equal(splitIndices(100, 7, 0.1));
    expect(a.eval).to.have.length(10);
    expect([...a.train, ...a.eval].sort((x, y) => x - y)).to.deep.equal(Array.from({ length: 100 }, (_, i) => i));
    expect(splitIndices(100, 8, 0.1).eval).to.not.deep.equal(a.eval);
    expect(splitIndices(3, 1, 0.1).eval).to.have.length(1);
    expect(splitIndices(1, 1, 0.1).eval).to.have.length(0);
    expect(splitIndices(10, 1, 0).eval).to.have.length(0);
  });
});
