// Local training progress as a site prints it: a progress bar on a terminal (cli-progress, on stderr), one
// structured JSON line per reported step otherwise (pino on stdout, the level as a name like every other line
// the site and the coordinator print). The trainers report steps through FederationClient's onTrainStep; the
// WebGPU engine reports every few steps (engine/trainer.ts ENGINE_PROGRESS_EVERY) and the last.
import pino from 'pino';
import { Presets, SingleBar } from 'cli-progress';
import type { TrainStep } from '../trainer';

export type ProgressMode = 'auto' | 'bar' | 'json' | 'off';
export const PROGRESS_MODES: readonly ProgressMode[] = ['auto', 'bar', 'json', 'off'];

export type RoundStep = TrainStep & { readonly round: number };

export function parseProgressMode(v: string): ProgressMode {
  if (!(PROGRESS_MODES as readonly string[]).includes(v)) throw new Error(`--progress must be one of ${PROGRESS_MODES.join(', ')}, not '${v}'`);
  return v as ProgressMode;
}

/** The words of one step, shared by the bar and the JSON line's msg. */
export const stepText = (s: RoundStep): string => `train step ${s.step}/${s.total} loss ${s.loss.toFixed(4)}`;

/**
 * The onTrainStep callback for a site named `site`. 'auto' draws a bar when stderr is a terminal and prints JSON
 * lines otherwise; undefined for 'off'.
 */
export function trainProgress(
  site: string,
  mode: ProgressMode = 'auto',
  opts: { isTty?: boolean; out?: pino.DestinationStream; bar?: NodeJS.WritableStream } = {},
): ((s: RoundStep) => void) | undefined {
  if (mode === 'off') return undefined;
  const tty = opts.isTty ?? process.stderr.isTTY === true;
  if (mode === 'bar' || (mode === 'auto' && tty)) return barProgress(site, opts.bar ?? process.stderr);
  // Synchronous writes: a line is out before the next log line, and none is lost when the process exits.
  const log = pino({ base: undefined, formatters: { level: (label) => ({ level: label }) } }, opts.out ?? pino.destination({ dest: 1, sync: true }));
  return (s) => log.info({ site, round: s.round, step: s.step, total: s.total, loss: s.loss }, stepText(s));
}

function barProgress(site: string, stream: NodeJS.WritableStream): (s: RoundStep) => void {
  let bar: SingleBar | undefined;
  let round = -1;
  return (s) => {
    if (!bar || round !== s.round) {
      bar?.stop();
      round = s.round;
      bar = new SingleBar(
        { format: `${site} round {round} [{bar}] {value}/{total} steps | loss {loss}`, stream, hideCursor: true, clearOnComplete: false },
        Presets.shades_classic,
      );
      bar.start(s.total, 0, { round: s.round, loss: '-' });
    }
    bar.update(s.step, { loss: s.loss.toFixed(4) });
    if (s.step >= s.total) {
      bar.stop();
      bar = undefined;
    }
  };
}
