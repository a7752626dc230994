// site-side A/B: sealDelta + serialize every message + grpc's 5-byte framing copy, CPU per 64 MiB update
const nacl = require('tweetnacl');
const B = require('/tmp/st/before/dist/client-sdk/sealed-sender');
const A = require('/work/wt-sealtag/dist/client-sdk/sealed-sender');
const { loadFedtuneProto } = require('/work/wt-sealtag/dist/proto/load');
const def = loadFedtuneProto().fedtune.v1.Federation.service.UploadUpdate;
const frame = (m) => { const o = Buffer.allocUnsafe(m.length + 5); o.writeUInt32BE(m.length, 1); m.copy(o, 5); return o; };
const coord = nacl.box.keyPair(); const id = nacl.sign.keyPair();
const ctx = { token: 't', runId: 'r', clientId: 'c', coordinator: { keyId: 'k', boxPublicKey: coord.publicKey }, identitySecretKey: id.secretKey, chunkBytes: 1 << 20 };
const task = { task_id: 'x', round: 1, attempt: 1, base_version: 0, base_manifest_sha256: 'a'.repeat(64) };
const delta = Array.from({ length: 16 }, (_, i) => ({ name: `m.${i}.lora_A.weight`, dtype: 'float32', shape: [1 << 20], data: new Float32Array(1 << 20).fill(0.01 * i) }));
const runs = { before: () => { const f = B.sealDelta(ctx, task, delta, 1); frame(def.requestSerialize(f.header)); for (const c of f.sealed.chunks) frame(def.requestSerialize({ chunk: c })); },
               after: () => { const f = A.sealDelta(ctx, task, delta, 1); frame(A.serializeUploadMessage(f.header)); for (const p of f.sealed.parts) frame(A.serializeUploadMessage(p)); } };
const res = { before: [], after: [] };
for (let r = 0; r < 15; r++) for (const k of r % 2 ? ['before', 'after'] : ['after', 'before']) { const c = process.cpuUsage(); runs[k](); const d = process.cpuUsage(c); res[k].push((d.user + d.system) / 1000); }
for (const k in res) { const s = [...res[k]].sort((a, b) => a - b); console.log(k, 'median', s[7].toFixed(1), 'ms CPU; all', res[k].map((x) => x.toFixed(0)).join(' ')); }
