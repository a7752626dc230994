// The coordinator command's logger: pino-pretty on a terminal (or log.format pretty), JSON lines otherwise.
// JSON lines carry the level as a name ("level":"info"), as the site command prints it, so one filter reads
// both roles' logs.
import pino from 'pino';
import PinoPretty from 'pino-pretty';

export type LogFormat = 'auto' | 'json' | 'pretty';

export function cliLogger(level: pino.LevelWithSilent, format: LogFormat, isTty = process.stdout.isTTY === true): pino.Logger {
  if (format === 'pretty' || (format === 'auto' && isTty)) {
    return pino({ level }, PinoPretty({ colorize: isTty, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', sync: true }));
  }
  return pino({ level, formatters: { level: (label) => ({ level: label }) } });
}
