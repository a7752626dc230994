// The embedded task's data (client-sdk/data/spam-assassin.ts, shuffle.ts) and the reduced GPT-2 tokenizer
// (client-sdk/text/tokenizer.ts): the split is reproducible, the held-out test set is disjoint from every
// site's data, every example lands exactly once, 'groups' gives whole groups, and ASCII text round-trips.
import * as path from 'node:path';
import {
  ANSWER_NO,
  ANSWER_YES,
  QUESTION,
  emailToPrompt,
  loadEmails,
  splitSpamAssassin,
  type Email,
  type SpamSplit,
  type SplitOptions,
} from '../client-sdk/data/spam-assassin';
import { encodeExample } from '../client-sdk/data/encode';
import { R50K_EOT, ReducedGpt2Tokenizer, buildReducedVocab, type ReducedVocabFile } from '../client-sdk/text/tokenizer';
import { Prng } from '../proto/prng';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const GROUPS = ['easy-ham-1', 'easy-ham-2', 'hard-ham-1', 'spam-1', 'spam-2'];
const GROUP_SIZES: Record<string, number> = { 'easy-ham-1': 2500, 'easy-ham-2': 1400, 'hard-ham-1': 250, 'spam-1': 500, 'spam-2': 1396 };

let loaded: Email[] | undefined;
const corpus = (): Email[] => (loaded ??= loadEmails());

describe('SpamAssassin split', function () {
  this.timeout(60_000);
  const emails = corpus();
  const byId = new Map(emails.map((e) => [e.id, e]));
  const cache = new Map<string, SpamSplit>();
  /** Splits are a few hundred ms each; tests share them. */
  const split = (opts: SplitOptions): SpamSplit => {
    const key = JSON.stringify(opts);
    if (!cache.has(key)) cache.set(key, splitSpamAssassin(emails, opts));
    return cache.get(key)!;
  };
  const groupOf = (id: string): string => byId.get(id)!.group;

  it('loads the 6,046 e-mails of the five groups with unique ids and spam labels by group', () => {
    expect(emails).to.have.length(6046);
    expect(new Set(emails.map((e) => e.id)).size).to.equal(6046);
    const sizes: Record<string, number> = {};
    for (const e of emails) {
      sizes[e.group] = (sizes[e.group] ?? 0) + 1;
      expect(e.spam).to.equal(e.group.startsWith('spam'));
      expect(e.id.startsWith(`${e.group}/`)).to.equal(true);
    }
    expect(sizes).to.deep.equal(GROUP_SIZES);
  });

  it('is reproducible from its seed (whole split, both partitions), differs for another seed, and ignores input order', () => {
    for (const partition of ['dirichlet', 'groups'] as const) {
      const a = split({ numClients: 5, seed: 7, partition });
      // A fresh computation from the e-mails in another order gives the identical split.
      const reversed = splitSpamAssassin([...emails].reverse(), { numClients: 5, seed: 7, partition });
      expect(reversed).to.deep.equal(a);
      const other = split({ numClients: 5, seed: 8, partition });
      expect(other.test.map((e) => e.id)).to.not.deep.equal(a.test.map((e) => e.id));
      expect(other.clients.map((c) => c.train.map((e) => e.id))).to.not.deep.equal(a.clients.map((c) => c.train.map((e) => e.id)));
    }
    expect(split({ numClients: 5, seed: 7 })).to.deep.equal(split({ numClients: 5, seed: 7, partition: 'dirichlet' }));
  });

  it('holds out round(15%) of every group, the same e-mails whatever the number of clients or partition', () => {
    const ref = split({ numClients: 5, seed: 11 });
    expect(ref.seed).to.equal(11);
    expect(ref.test).to.have.length(907);
    const perGroup: Record<string, number> = {};
    for (const e of ref.test) perGroup[e.group] = (perGroup[e.group] ?? 0) + 1;
    for (const g of GROUPS) expect(perGroup[g], g).to.equal(Math.round(GROUP_SIZES[g] * 0.15));
    const ids = ref.test.map((e) => e.id);
    for (const opts of [
      { numClients: 1, seed: 11 },
      { numClients: 8, seed: 11, partition: 'groups' as const },
      { numClients: 3, seed: 11, partition: 'groups' as const },
    ]) {
      expect(split(opts).test.map((e) => e.id)).to.deep.equal(ids);
    }
    expect(splitSpamAssassin(emails, { numClients: 2, seed: 7, testFraction: 0 }).test).to.deep.equal([]);
  });

  for (const partition of ['dirichlet', 'groups'] as const) {
    for (const numClients of [1, 3, 5, 8]) {
      it(`${partition}, ${numClients} client(s): every e-mail in exactly one place; the test set in no client's train or val`, () => {
        const s = split({ numClients, seed: 11, partition });
        expect(s.clients).to.have.length(numClients);
        const test = new Set(s.test.map((e) => e.id));
        expect(test.size).to.equal(s.test.length);
        const seen = new Set<string>(test);
        for (const c of s.clients) {
          for (const e of [...c.train, ...c.val]) {
            expect(test.has(e.id), `test example ${e.id} in a client`).to.equal(false);
            expect(seen.has(e.id), `${e.id} twice`).to.equal(false);
            seen.add(e.id);
          }
          // Local validation is round(10%) of the client's own examples; its groups are those it holds.
          expect(c.val.length).to.equal(Math.round((c.train.length + c.val.length) * 0.1));
          expect(c.groups).to.deep.equal([...new Set([...c.train, ...c.val].map((e) => e.group))].sort());
        }
        expect(seen.size).to.equal(emails.length);
        // Examples are the e-mails framed as prompts, answered by their label.
        for (const e of [...s.test.slice(0, 50), ...s.clients[0].train.slice(0, 50)]) {
          const src = byId.get(e.id)!;
          expect(e.group).to.equal(src.group);
          expect(e.completion).to.equal(src.spam ? ANSWER_YES : ANSWER_NO);
          expect(e.prompt).to.equal(emailToPrompt(src.text));
        }
      });
    }
  }

  it("'groups' with ≤ 5 clients: group g (sorted) goes whole to client g mod N, so each client holds whole groups", () => {
    for (const n of [1, 2, 3, 5]) {
      const s = split({ numClients: n, seed: 11, partition: 'groups' });
      const testPerGroup: Record<string, number> = {};
      for (const e of s.test) testPerGroup[e.group] = (testPerGroup[e.group] ?? 0) + 1;
      s.clients.forEach((c, ci) => {
        const want = GROUPS.filter((_, gi) => gi % n === ci);
        expect(c.groups, `client ${ci} of ${n}`).to.deep.equal(want);
        const held: Record<string, number> = {};
        for (const e of [...c.train, ...c.val]) held[groupOf(e.id)] = (held[groupOf(e.id)] ?? 0) + 1;
        for (const g of want) expect(held[g], `${g} in client ${ci} of ${n}`).to.equal(GROUP_SIZES[g] - testPerGroup[g]);
      });
    }
    const five = split({ numClients: 5, seed: 11, partition: 'groups' });
    expect(five.clients.map((c) => c.groups)).to.deep.equal(GROUPS.map((g) => [g]));
    // One group per client means one label per client: FedAvg's pathological case.
    for (const c of five.clients) expect(new Set(c.train.map((e) => e.completion)).size).to.equal(1);
  });

  it("'groups' with more clients than groups: clients c ≡ g (mod 5) share group g round-robin, one group each", () => {
    const s = split({ numClients: 8, seed: 11, partition: 'groups' });
    expect(s.clients.map((c) => c.groups)).to.deep.equal([
      [GROUPS[0]],
      [GROUPS[1]],
      [GROUPS[2]],
      [GROUPS[3]],
      [GROUPS[4]],
      [GROUPS[0]],
      [GROUPS[1]],
      [GROUPS[2]],
    ]);
    for (const [a, b] of [
      [0, 5],
      [1, 6],
      [2, 7],
    ]) {
      const na = s.clients[a].train.length + s.clients[a].val.length;
      const nb = s.clients[b].train.length + s.clients[b].val.length;
      expect(Math.abs(na - nb), `clients ${a} and ${b}`).to.be.at.most(1);
    }
  });

  it("'dirichlet': large alpha approaches equal shares; small alpha skews every group towards few clients", () => {
    const shares = (s: SpamSplit): number[][] =>
      GROUPS.map((g) => {
        const counts = s.clients.map((c) => [...c.train, ...c.val].filter((e) => e.group === g).length);
        const total = counts.reduce((a, b) => a + b, 0);
        return counts.map((x) => x / total);
      });
    const flat = shares(splitSpamAssassin(emails, { numClients: 4, seed: 3, alpha: 1e4 }));
    for (const row of flat) for (const x of row) expect(x).to.be.within(0.2, 0.3);
    const skewed = shares(splitSpamAssassin(emails, { numClients: 4, seed: 3, alpha: 0.05 }));
    for (const row of skewed) expect(Math.max(...row)).to.be.above(0.5);
    // The default (alpha 0.5) gives clients different mixes of spam and ham.
    const s = split({ numClients: 5, seed: 7 });
    const spamRates = s.clients.map((c) => c.train.filter((e) => e.completion === ANSWER_YES).length / Math.max(1, c.train.length));
    expect(Math.max(...spamRates) - Math.min(...spamRates)).to.be.above(0.1);
  });

  it('refuses fewer than one client; valFraction 0 keeps everything for training', () => {
    expect(() => splitSpamAssassin(emails, { numClients: 0, seed: 1 })).to.throw(RangeError, 'numClients must be at least 1');
    const s = splitSpamAssassin(emails.slice(0, 300), { numClients: 2, seed: 1, valFraction: 0, testFraction: 0 });
    expect(s.clients.every((c) => c.val.length === 0)).to.equal(true);
    expect(s.clients.reduce((n, c) => n + c.train.length, 0)).to.equal(300);
  });

  describe('emailToPrompt', () => {
    it('frames subject + body start + question (answered " yes" for spam)', () => {
      const raw = 'From: x\nSubject: Cheap\n  pills\n\n<p>Buy&nbsp;now</p>\n\n\nplease';
      expect(emailToPrompt(raw)).to.equal('Subject: Cheap pills\nBuy now please\nIs this e-mail spam? Answer:');
      const spam = emails.find((e) => e.spam)!;
      expect(splitSpamAssassin([spam], { numClients: 1, seed: 1, testFraction: 0, valFraction: 0 }).clients[0].train[0].completion).to.equal(ANSWER_YES);
    });

    it('handles CRLF, missing subjects, styles, tags, non-ASCII and the body length limit', () => {
      expect(emailToPrompt('Subject: Hi\r\nFrom: y\r\n\r\nline one\r\nline two')).to.equal(`Subject: Hi\nline one line two${QUESTION}`);
      expect(emailToPrompt('From: y\n\nbody')).to.equal(`Subject: \nbody${QUESTION}`);
      expect(emailToPrompt('Subject: s\n\n<style>p { color: red }</style><b>bold</b> caf\u00e9 \u65e5\u672c')).to.equal(`Subject: s\nbold caf${QUESTION}`);
      expect(emailToPrompt(`Subject: s\n\n${'abcd '.repeat(100)}`, 12)).to.equal(`Subject: s\nabcd abcd ab${QUESTION}`);
      expect(emailToPrompt('no blank line, no body')).to.equal(`Subject: \n${QUESTION}`);
    });

    it('keeps only printable ASCII of the body for the whole corpus (the subject is kept as written)', () => {
      for (const e of emails) {
        const p = emailToPrompt(e.text);
        expect(p.startsWith('Subject: ') && p.endsWith(QUESTION), e.id).to.equal(true);
        const body = p.slice(p.indexOf('\n') + 1, p.length - QUESTION.length);
        expect(/^[\x20-\x7e]*$/.test(body), e.id).to.equal(true);
        expect(body.length).to.be.at.most(240);
      }
    });
  });
});

describe('reduced GPT-2 tokenizer', () => {
  const tok = ReducedGpt2Tokenizer.load(path.join(__dirname, '..', '..', 'examples', 'base-model', 'tokenizer.json'));
  const rng = new Prng(1234, 5);
  const printable = (len: number): string =>
    Array.from({ length: len }, () => {
      const k = rng.nextInt(100);
      return k < 4 ? '\n' : String.fromCharCode(32 + rng.nextInt(95));
    }).join('');

  it('has 8,192 ids: <|endoftext|> at 0, <unk> at 1', () => {
    expect(tok.vocabSize).to.equal(8192);
    expect(tok.eos).to.equal(0);
    expect(tok.unk).to.equal(1);
    expect(tok.vocab.r50kIds[0]).to.equal(R50K_EOT);
    expect(tok.vocab.r50kIds[1]).to.equal(-1);
  });

  it('round-trips ASCII text, spelling out tokens outside the reduced vocabulary character by character', () => {
    for (const s of [
      '',
      ' ',
      'Is this e-mail spam? Answer: yes',
      'http://example.com/~x?q={1}&y=[2]',
      'Zyzzyva quixotic 0x7f',
      'a\n\nb\n',
      '   leading and trailing   ',
      '`~!@#$%^&*()_+-=[]{}|;:\'",.<>/?\\',
    ]) {
      expect(tok.decode(tok.encode(s)), JSON.stringify(s)).to.equal(s);
    }
    // ' antidisestablishment' is three GPT-2 tokens (' ant', 'idis', 'establishment'); only ' ant' is kept, the
    // other two are spelled as 4 + 13 single characters.
    const spelled = tok.encode(' antidisestablishment');
    expect(spelled).to.have.length(18);
    expect(spelled.map((id) => tok.decode([id]))).to.deep.equal([' ant', ...'idisestablishment']);
    expect(tok.encode(' yes')).to.have.length(1);
    expect(tok.encode(' no')).to.have.length(1);
  });

  it('round-trips 500 random printable-ASCII strings and never emits <unk> or <|endoftext|> for them', () => {
    for (let i = 0; i < 500; i++) {
      const s = printable(rng.nextInt(120));
      const ids = tok.encode(s);
      expect(tok.decode(ids), JSON.stringify(s)).to.equal(s);
      for (const id of ids) expect(id > 1 && id < tok.vocabSize, JSON.stringify(s)).to.equal(true);
    }
  });

  it('round-trips the prompts of real e-mails (those that are ASCII: a few subjects are not)', () => {
    let checked = 0;
    for (const e of corpus().slice(0, 600)) {
      const p = emailToPrompt(e.text);
      if (!/^[\x20-\x7e\n]*$/.test(p)) continue;
      expect(tok.decode(tok.encode(p)), e.id).to.equal(p);
      checked++;
    }
    expect(checked).to.be.greaterThan(550);
  });

  it('treats a literal "<|endoftext|>" in text as text: no throw, no end-of-text id, exact round trip', () => {
    const s = 'before <|endoftext|> after';
    const ids = tok.encode(s);
    expect(ids).to.not.include(tok.eos);
    expect(tok.decode(ids)).to.equal(s);
    // The end-of-text id itself decodes to the marker.
    expect(tok.decode([...tok.encode('a'), tok.eos, ...tok.encode('b')])).to.equal('a<|endoftext|>b');
  });

  it('maps non-ASCII tokens outside the vocabulary (and tabs, CR) to <unk>, leaving ASCII around them intact', () => {
    expect(tok.encode('日本語')).to.include(tok.unk);
    expect(tok.encode('a\tb')).to.include(tok.unk);
    expect(tok.encode('\r')).to.deep.equal([tok.unk]);
    expect(tok.encode(' naïve')).to.deep.equal([tok.unk]); // one GPT-2 token, not all ASCII: one <unk>
    const ids = tok.encode('hello 日本 world');
    expect(ids.filter((id) => id === tok.unk).length).to.be.greaterThan(0);
    const text = tok.decode(ids);
    expect(text.startsWith('hello')).to.equal(true);
    expect(text.endsWith(' world')).to.equal(true);
    expect(text).to.contain('\uFFFD');
    expect(tok.decode([tok.unk])).to.equal('\uFFFD');
    expect(tok.decode([tok.vocabSize + 5])).to.equal('\uFFFD');
  });

  it('cuts the middle of a long prompt so its start and the question survive', () => {
    const ex = encodeExample(tok, { prompt: 'Subject: hello ' + 'word '.repeat(200) + QUESTION, completion: ' no' }, 48, tok.encode(QUESTION).length);
    expect(ex.prompt.length + ex.completion.length).to.equal(48);
    expect(tok.decode(ex.prompt))
      .to.match(/^Subject: hello/)
      .and.match(/Is this e-mail spam\? Answer:$/);
    expect(tok.decode(ex.completion)).to.equal(' no');
  });

  it('refuses a vocabulary without <|endoftext|>/<unk> first or lacking a printable character', () => {
    const good = tok.vocab;
    const swap: ReducedVocabFile = { ...good, r50kIds: [good.r50kIds[1], good.r50kIds[0], ...good.r50kIds.slice(2)] };
    expect(() => new ReducedGpt2Tokenizer(swap)).to.throw('reduced ids 0 and 1 must be <|endoftext|> and <unk>');
    const aId = tok.vocab.r50kIds[tok.encode('a')[0]];
    const noA: ReducedVocabFile = { ...good, r50kIds: good.r50kIds.filter((id) => id !== aId) };
    expect(() => new ReducedGpt2Tokenizer(noA)).to.throw('vocabulary lacks the single-character token "a"');
  });

  it('buildReducedVocab: specials, every printable character and newline, then the most frequent tokens', () => {
    const v = buildReducedVocab(['the cat the dog the end <|endoftext|>', 'cat cat cat'], 102);
    expect(v.format).to.equal('fedtune.reduced-gpt2-bpe/1');
    expect(v.base).to.equal('r50k_base');
    expect(v.r50kIds).to.have.length(102);
    expect(v.r50kIds.slice(0, 2)).to.deep.equal([R50K_EOT, -1]);
    expect(new Set(v.r50kIds).size).to.equal(102);
    // Asking for more ids than the texts have distinct tokens stops at what there is.
    expect(buildReducedVocab(['a b'], 500).r50kIds).to.have.length(2 + 96 + 1); // ' b' is the only new token
    const small = new ReducedGpt2Tokenizer(v);
    // ' cat' (3×) then ' the' (2×) are the most frequent tokens after the 98 fixed ids.
    const fixed = 2 + 96;
    expect(small.encode(' cat')).to.deep.equal([fixed]);
    expect(small.encode(' the')).to.deep.equal([fixed + 1]);
    expect(small.decode(small.encode('the cat <|endoftext|> dog'))).to.equal('the cat <|endoftext|> dog');
  });
});
