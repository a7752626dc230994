// The embedded task's data: the split is reproducible, the held-out test set is disjoint from every site's
// data, every example lands exactly once, and the reduced tokenizer round-trips ASCII text.
import * as path from 'node:path';
import { loadEmails, splitSpamAssassin, emailToPrompt } from '../client-sdk/data/spam-assassin';
import { encodeExample } from '../client-sdk/data/encode';
import { ReducedGpt2Tokenizer } from '../client-sdk/text/tokenizer';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('SpamAssassin split', () => {
  const emails = loadEmails();

  it('is reproducible from its seed and differs for another seed', () => {
    const a = splitSpamAssassin(emails, { numClients: 5, seed: 7 });
    const b = splitSpamAssassin(emails, { numClients: 5, seed: 7 });
    const c = splitSpamAssassin(emails, { numClients: 5, seed: 8 });
    const ids = (s: typeof a): string[][] => s.clients.map((x) => x.train.map((e) => e.id));
    expect(ids(b)).to.deep.equal(ids(a));
    expect(ids(c)).to.not.deep.equal(ids(a));
  });

  for (const partition of ['dirichlet', 'groups'] as const) {
    it(`${partition}: puts every e-mail in exactly one place and keeps the test set out of every site`, () => {
      const s = splitSpamAssassin(emails, { numClients: 5, seed: 7, partition });
      const test = new Set(s.test.map((e) => e.id));
      const seen = new Set<string>(test);
      for (const c of s.clients) {
        for (const e of [...c.train, ...c.val]) {
          expect(test.has(e.id)).to.equal(false);
          expect(seen.has(e.id), e.id).to.equal(false);
          seen.add(e.id);
        }
      }
      expect(seen.size).to.equal(emails.length);
      expect(s.test.length).to.equal(907); // round(15%) of each of the five groups
      if (partition === 'groups') expect(s.clients.map((c) => c.groups)).to.deep.equal([['easy-ham-1'], ['easy-ham-2'], ['hard-ham-1'], ['spam-1'], ['spam-2']]);
    });
  }

  it('frames an e-mail as subject + body start + question, answered " yes" for spam', () => {
    const raw = 'From: x\nSubject: Cheap\n  pills\n\n<p>Buy&nbsp;now</p>\n\n\nplease';
    expect(emailToPrompt(raw)).to.equal('Subject: Cheap pills\nBuy now please\nIs this e-mail spam? Answer:');
    const spam = emails.find((e) => e.spam)!;
    expect(splitSpamAssassin([spam], { numClients: 1, seed: 1, testFraction: 0 }).clients[0].train[0].completion).to.equal(' yes');
  });
});

describe('reduced GPT-2 tokenizer', () => {
  const tok = ReducedGpt2Tokenizer.load(path.join(__dirname, '..', '..', 'examples', 'base-model', 'tokenizer.json'));

  it('round-trips ASCII text, spelling out tokens outside the reduced vocabulary', () => {
    for (const s of ['Is this e-mail spam? Answer: yes', 'http://example.com/~x?q={1}&y=[2]', 'Zyzzyva quixotic 0x7f tab']) {
      expect(tok.decode(tok.encode(s))).to.equal(s);
    }
    expect(tok.vocabSize).to.equal(8192);
    expect(tok.encode(' yes')).to.have.length(1);
    expect(tok.encode(' no')).to.have.length(1);
  });

  it('maps non-ASCII tokens outside the vocabulary (and tabs) to <unk>', () => {
    expect(tok.encode('日本語')).to.include(tok.unk);
    expect(tok.encode('a\tb')).to.include(tok.unk);
  });

  it('cuts the middle of a long prompt so its start and the question survive', () => {
    const q = '\nIs this e-mail spam? Answer:';
    const ex = encodeExample(tok, { prompt: 'Subject: hello ' + 'word '.repeat(200) + q, completion: ' no' }, 48, tok.encode(q).length);
    expect(ex.prompt.length + ex.completion.length).to.equal(48);
    expect(tok.decode(ex.prompt)).to.match(/^Subject: hello/).and.match(/Is this e-mail spam\? Answer:$/);
  });
});
