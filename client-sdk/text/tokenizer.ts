// GPT-2 byte-pair encoding (gpt-tokenizer's r50k_base tables, offline) over a reduced vocabulary.
// The demo model is small, so its embedding table keeps only the most frequent GPT-2 tokens of its
// pretraining corpus. A GPT-2 token outside that set is spelled out with single-character tokens when it is
// printable ASCII (always in the vocabulary), else it becomes <unk>. The mapping is saved beside the model
// (tokenizer.json) so every client and the coordinator tokenise identically.
import * as fs from 'node:fs';
import { encode as r50kEncode, decode as r50kDecode } from 'gpt-tokenizer/encoding/r50k_base';

/** GPT-2's <|endoftext|> id in r50k_base. */
export const R50K_EOT = 50256;

// Text is data: a literal "<|endoftext|>" in it is tokenised as ordinary characters (gpt-tokenizer would
// otherwise throw on it), so no e-mail can crash encoding or inject the end-of-text token.
const AS_TEXT = { disallowedSpecial: new Set<string>() };

export interface ReducedVocabFile {
  readonly format: 'fedtune.reduced-gpt2-bpe/1';
  readonly base: 'r50k_base';
  /** r50k token id of each reduced id; index 0 is <|endoftext|>, index 1 is <unk> (stored as -1). */
  readonly r50kIds: readonly number[];
}

export class ReducedGpt2Tokenizer {
  readonly eos = 0;
  readonly unk = 1;
  private readonly toReduced = new Map<number, number>();
  private readonly charToken = new Map<string, number>();

  constructor(readonly vocab: ReducedVocabFile) {
    if (vocab.r50kIds[0] !== R50K_EOT || vocab.r50kIds[1] !== -1) {
      throw new Error('tokenizer: reduced ids 0 and 1 must be <|endoftext|> and <unk>');
    }
    vocab.r50kIds.forEach((id, i) => {
      if (id >= 0) this.toReduced.set(id, i);
    });
    for (let c = 32; c < 127; c++) this.addCharToken(String.fromCharCode(c));
    this.addCharToken('\n');
  }

  private addCharToken(ch: string): void {
    const ids = r50kEncode(ch);
    const reduced = ids.length === 1 ? this.toReduced.get(ids[0]) : undefined;
    if (reduced === undefined) throw new Error(`tokenizer: vocabulary lacks the single-character token ${JSON.stringify(ch)}`);
    this.charToken.set(ch, reduced);
  }

  get vocabSize(): number {
    return this.vocab.r50kIds.length;
  }

  encode(text: string): number[] {
    const out: number[] = [];
    for (const id of r50kEncode(text, AS_TEXT)) {
      const r = this.toReduced.get(id);
      if (r !== undefined) {
        out.push(r);
        continue;
      }
      const piece = r50kDecode([id]);
      const spelled: number[] = [];
      for (const ch of piece) {
        const c = this.charToken.get(ch);
        if (c === undefined) {
          spelled.length = 0;
          break;
        }
        spelled.push(c);
      }
      if (spelled.length > 0) out.push(...spelled);
      else out.push(this.unk);
    }
    return out;
  }

  decode(ids: readonly number[]): string {
    const r50k: number[] = [];
    let text = '';
    const flush = (): void => {
      if (r50k.length) text += r50kDecode(r50k);
      r50k.length = 0;
    };
    for (const id of ids) {
      const orig = this.vocab.r50kIds[id];
      if (orig === undefined || orig < 0) {
        flush();
        text += '\uFFFD';
      } else if (orig === R50K_EOT) {
        flush();
        text += '<|endoftext|>';
      } else r50k.push(orig);
    }
    flush();
    return text;
  }

  static load(file: string): ReducedGpt2Tokenizer {
    return new ReducedGpt2Tokenizer(JSON.parse(fs.readFileSync(file, 'utf8')) as ReducedVocabFile);
  }
}

/**
 * Builds a reduced vocabulary of `size` ids from token frequencies in `texts`: <|endoftext|>, <unk>, every
 * printable ASCII character and newline, then the most frequent remaining GPT-2 tokens (ties by id).
 */
export function buildReducedVocab(texts: Iterable<string>, size: number): ReducedVocabFile {
  const counts = new Map<number, number>();
  for (const t of texts) for (const id of r50kEncode(t, AS_TEXT)) counts.set(id, (counts.get(id) ?? 0) + 1);
  const ids: number[] = [R50K_EOT, -1];
  const seen = new Set<number>(ids);
  const chars = [...Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)), '\n'];
  for (const ch of chars) {
    const e = r50kEncode(ch);
    if (e.length !== 1) throw new Error(`r50k splits ${JSON.stringify(ch)}`);
    if (!seen.has(e[0])) {
      ids.push(e[0]);
      seen.add(e[0]);
    }
  }
  const ranked = [...counts.entries()].filter(([id]) => !seen.has(id)).sort((a, b) => b[1] - a[1] || a[0] - b[0]);
  for (const [id] of ranked) {
    if (ids.length >= size) break;
    ids.push(id);
  }
  return { format: 'fedtune.reduced-gpt2-bpe/1', base: 'r50k_base', r50kIds: ids };
}
