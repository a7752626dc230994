// A real federation on one machine: a coordinator and N sites talking gRPC over loopback, each site
// fine-tuning LoRA adapters of the pretrained demo model on its own non-IID slice of SpamAssassin.
//   npm run demo                      # 5 sites, 10 rounds, a fresh run directory under runs/
//   node dist/examples/simulate.js --clients 3 --rounds 3 --run-dir runs/mine
// The simulation itself is client-sdk/demo/simulate.ts, its flags client-sdk/demo/simulate-cli.ts (also
// `fedtune-site simulate`; both read --config FILE and FEDTUNE_* variables like `fedtune coordinator`).
import { main } from '../client-sdk/demo/simulate-cli';

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
