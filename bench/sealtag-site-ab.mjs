// The site's CPU per sealed 64 MiB update, two builds interleaved in one process (issue 8, sealtag): sealDelta,
// then every message serialized as the sender does and copied once more as grpc-js frames it (5-byte prefix).
// A build older than the sealtag change has no SealedUpload.parts: its chunks go through the generated serializer.
//   node bench/sealtag-site-ab.mjs <repo root A> <repo root B> [repetitions, default 15]
// Each root must hold a built dist/ (npx tsc -p .) and proto/; e.g. a worktree of main and this branch.
import { Buffer } from 'node:buffer';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import process from 'node:process';

const require = createRequire(import.meta.url);
const [rootA, rootB, repsArg] = process.argv.slice(2);
if (!rootA || !rootB) throw new Error('usage: node bench/sealtag-site-ab.mjs <repo root A> <repo root B> [repetitions]');
const reps = Number(repsArg ?? 15);
const nacl = require('tweetnacl');

function arm(root) {
  const sender = require(path.resolve(root, 'dist/client-sdk/sealed-sender.js'));
  const def = require(path.resolve(root, 'dist/proto/load.js')).loadFedtuneProto().fedtune.v1.Federation.service.UploadUpdate;
  const serialize = sender.serializeUploadMessage ?? ((m) => def.requestSerialize(m));
  return (ctx, task, delta) => {
    const f = sender.sealDelta(ctx, task, delta, 1);
    const frames = [f.header, ...(f.sealed.parts ?? f.sealed.chunks.map((chunk) => ({ chunk })))];
    for (const m of frames) {
      const s = serialize(m);
      const out = Buffer.allocUnsafe(s.length + 5); // grpc-js's IdentityHandler.writeMessage does this copy
      out.writeUInt32BE(s.length, 1);
      s.copy(out, 5);
    }
  };
}

const coordinator = nacl.box.keyPair();
const identity = nacl.sign.keyPair();
const ctx = {
  token: 't',
  runId: 'run',
  clientId: 'c',
  coordinator: { keyId: 'k', boxPublicKey: coordinator.publicKey },
  identitySecretKey: identity.secretKey,
  chunkBytes: 1 << 20,
};
const task = { task_id: 'task', round: 1, attempt: 1, base_version: 0, base_manifest_sha256: 'a'.repeat(64) };
// 64 MiB of float32 in 16 tensors, as the transport bench's update.
const delta = Array.from({ length: 16 }, (_, i) => ({
  name: `m.${i}.lora_A.weight`,
  dtype: 'float32',
  shape: [1 << 20],
  data: new Float32Array(1 << 20).fill(0.01 * (i + 1)),
}));
const arms = { A: arm(rootA), B: arm(rootB) };
const cpu = { A: [], B: [] };
for (let r = 0; r < reps; r++) {
  for (const k of r % 2 ? ['A', 'B'] : ['B', 'A']) {
    const c = process.cpuUsage();
    arms[k](ctx, task, delta);
    const d = process.cpuUsage(c);
    cpu[k].push((d.user + d.system) / 1000);
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
process.stdout.write(
  JSON.stringify({ reps, a: rootA, b: rootB, a_ms_median: median(cpu.A), b_ms_median: median(cpu.B), a_ms: cpu.A, b_ms: cpu.B }, (k, v) =>
    typeof v === 'number' ? Math.round(v * 10) / 10 : v,
  ) + '\n',
);
