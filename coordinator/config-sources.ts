// Where each configuration value came from, so that nothing fails silently: an unknown --flag or FEDTUNE_*
// variable is an error naming the closest valid key, and a value that fails validation is reported with its
// source (flag, environment variable, file, override) and the value as given.
import { readFileSync } from 'node:fs';
import { closest, distance } from 'fastest-levenshtein';
import JSON5 from 'json5';

export interface KeySource {
  readonly key: string;
  readonly env: string;
  /** The flag, with its leading dashes: --rounds.total */
  readonly arg: string;
}

export interface Sources {
  readonly file?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly args?: readonly string[];
  readonly overrides?: Record<string, unknown>;
}

/**
 * FEDTUNE_* variables that are not configuration keys: the site's backend and engine choice (a shell often starts both
 * roles) and those of tests, benchmarks and CI scripts.
 */
export const OTHER_VARIABLES = /^FEDTUNE_(BACKEND$|ENGINE$|ENGINE_|TEST_|BENCH_|FUZZ_|CI_)/;

function suggestion(word: string, candidates: readonly string[]): string {
  // Compared without the common prefix (FEDTUNE_, --), so that only the part that names the key counts.
  const bare = (w: string): string => w.replace(/^(FEDTUNE_|--)/, '');
  const w = bare(word);
  // A section alone (--rounds) suggests its first key; otherwise the nearest spelling, if it is near.
  const inSection = candidates.find((c) => bare(c).startsWith(`${w}.`) || bare(c).startsWith(`${w}_`));
  if (inSection) return `; did you mean ${inSection}?`;
  const best = closest(w, candidates.map(bare));
  const near = distance(w, best) <= Math.max(2, Math.floor(best.length / 3));
  return near ? `; did you mean ${candidates.find((c) => bare(c) === best)}?` : '; `fedtune config` lists every key';
}

/** Unknown flags, stray arguments and unknown FEDTUNE_* variables, all of them, as sentences. */
export function unknownSources(s: Sources, keys: readonly KeySource[]): string[] {
  const problems: string[] = [];
  const flags = keys.map((k) => k.arg);
  const args = s.args ?? [];
  for (let i = 0; i < args.length; i++) {
    const tok = args[i]!;
    if (!tok.startsWith('--')) {
      problems.push(`unexpected argument ${JSON.stringify(tok)}: settings are given as --section.key value`);
      continue;
    }
    const flag = tok.split('=')[0]!;
    if (!flags.includes(flag)) problems.push(`unknown flag ${flag}${suggestion(flag, flags)}`);
    // A flag's value is the next word unless given with '=' (a lone boolean flag takes none).
    if (!tok.includes('=') && i + 1 < args.length && !args[i + 1]!.startsWith('--')) i++;
  }
  const vars = keys.map((k) => k.env);
  for (const name of Object.keys(s.env ?? {}).sort()) {
    if (!name.startsWith('FEDTUNE_') || vars.includes(name) || OTHER_VARIABLES.test(name)) continue;
    problems.push(`unknown environment variable ${name}${suggestion(name, vars)}`);
  }
  return problems;
}

/** Whether any layer sets `key`: code (overrides), a flag, a variable or the file; false for a default. */
export function isGiven(key: string, s: Sources, keys: readonly KeySource[]): boolean {
  return (s.overrides !== undefined && leafOf(s.overrides, key) !== undefined) || sourceOf(key, s, keys) !== '';
}

/** The source that set `key` (the one that wins), in words with the value as given; '' for code or defaults. */
export function sourceOf(key: string, s: Sources, keys: readonly KeySource[]): string {
  const k = keys.find((x) => x.key === key);
  if (!k) return '';
  if (s.overrides && leafOf(s.overrides, key) !== undefined) return ''; // code: convict's "value was" says it
  const args = s.args ?? [];
  for (let i = args.length - 1; i >= 0; i--) {
    const tok = args[i]!;
    if (tok === k.arg) return `flag ${k.arg} ${JSON.stringify(args[i + 1] ?? '')}`;
    if (tok.startsWith(`${k.arg}=`)) return `flag ${k.arg}=${JSON.stringify(tok.slice(k.arg.length + 1))}`;
  }
  const envValue = s.env?.[k.env];
  if (envValue !== undefined) return `environment variable ${k.env}=${JSON.stringify(envValue)}`;
  if (s.file) {
    try {
      const v = leafOf(JSON5.parse(readFileSync(s.file, 'utf8')) as Record<string, unknown>, key);
      if (v !== undefined) return `file ${s.file}`;
    } catch {
      // The file's own problem is reported by the loader.
    }
  }
  return '';
}

/**
 * convict's validation message ("rounds.total: must be an integer ≥ 1", one line per key), each line led by
 * where the value came from: 'environment variable FEDTUNE_ROUNDS_TOTAL="abc": rounds.total: must be …'.
 */
export function explainValidation(message: string, s: Sources, keys: readonly KeySource[]): string {
  return message
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((line) => {
      const m = /^(\w+\.\w+): /.exec(line.trim());
      const source = m ? sourceOf(m[1]!, s, keys) : '';
      return source ? `${source}: ${line.trim()}` : line.trim();
    })
    .join('; ');
}

function leafOf(obj: Record<string, unknown>, key: string): unknown {
  let cur: unknown = obj;
  for (const part of key.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}
