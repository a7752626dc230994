// The coordinator as its own process, as an operator would run it (same as `fedtune coordinator`).
//   node dist/examples/coordinator.js --rounds.total 3 --rounds.minClients 2 --run.dir runs/two-process
import pino from 'pino';
import { Coordinator, loadConfig } from '../coordinator';

async function main(): Promise<void> {
  const config = loadConfig({ env: process.env, args: process.argv.slice(2) });
  const logger = pino({ level: config.log.level });
  const coordinator = new Coordinator({ config, logger });
  process.once('SIGINT', () => void coordinator.stop().then(() => process.exit(0)));
  process.once('SIGTERM', () => void coordinator.stop().then(() => process.exit(0)));
  const { address } = await coordinator.start();
  console.log(JSON.stringify({ msg: 'coordinator listening', address }));
  const final = await coordinator.done;
  console.log(JSON.stringify({ msg: 'run finished', version: final.manifest.version, metrics: final.manifest.metrics }));
  await coordinator.stop();
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
