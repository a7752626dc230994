// One site as its own process, as a data owner would run it: the embedded SpamAssassin task, shard i of n.
//   node dist/examples/coordinator.js &                      # or: fedtune coordinator
//   node dist/examples/site.js --address 127.0.0.1:50051 --name site-0 --shard 0 --of 2   # or: fedtune-site client
import { Command } from 'commander';
import { identityFromFlags, runSite, tlsFromFlags, type IdentityFlags, type TlsFlags } from '../client-sdk/demo/site';

if (require.main === module) {
  const a = new Command('site')
    .requiredOption('--address <host:port>')
    .requiredOption('--name <name>')
    .option('--shard <i>', '', '0')
    .option('--of <n>', '', '5')
    .option('--split-seed <n>', '', '7')
    .option('--tls')
    .option('--tls-ca <file>')
    .option('--tls-cert <file>')
    .option('--tls-key <file>')
    .option('--identity <file>')
    .option('--join-token <token>')
    .option('--coordinator-key <keyId>')
    .parse()
    .opts<{ address: string; name: string; shard: string; of: string; splitSeed: string } & TlsFlags & IdentityFlags>();
  Promise.resolve()
    .then(() =>
      runSite({
        address: a.address,
        name: a.name,
        shard: Number(a.shard),
        of: Number(a.of),
        splitSeed: Number(a.splitSeed),
        tls: tlsFromFlags(a),
        ...identityFromFlags(a),
      }),
    )
    .catch((e: Error) => {
      console.error(e.message);
      process.exit(1);
    });
}
