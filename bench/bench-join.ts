// One home for how a bench site joins a coordinator: Hello, then Join with the challenge signed by a throwaway
// identity (the benches run their coordinators with auth.mode tofu). The transport bench (bench/transport-bench.ts)
// and the download bench (bench/download-site.ts) join this way; the memory bench's senders join many sites from fixed seeds.
import nacl from 'tweetnacl';
import { identityFromSecretKey } from '../client-sdk/identity';
import { DOMAINS, joinSignedFields, sign } from '../proto/crypto/signing';
import type { FederationClient } from '../proto/generated/fedtune/v1/Federation';
import type { HelloResponse__Output } from '../proto/generated/fedtune/v1/HelloResponse';
import { PROTOCOL_VERSION } from '../proto/load';

export interface BenchJoin {
  readonly hello: HelloResponse__Output;
  readonly sessionToken: string;
  readonly clientId: string;
  readonly identitySecretKey: Uint8Array;
}

/** Joins as a new site named `name` (default 'bench') with backend 'none'. */
export async function benchJoin(rpc: FederationClient, name = 'bench'): Promise<BenchJoin> {
  const identity = identityFromSecretKey(nacl.sign.keyPair().secretKey);
  const hello = await new Promise<HelloResponse__Output>((res, rej) =>
    rpc.Hello({ protocol_version: PROTOCOL_VERSION }, (e, r) => (e || !r ? rej(e ?? new Error('empty reply')) : res(r))),
  );
  const signature = sign(
    DOMAINS.join,
    joinSignedFields(PROTOCOL_VERSION, hello.run_id, hello.challenge, name, identity.publicKey, 'none', hello.coordinator!),
    identity.secretKey,
  );
  const join = await new Promise<{ session_token: string; client_id: string }>((res, rej) =>
    rpc.Join(
      {
        protocol_version: PROTOCOL_VERSION,
        client_name: name,
        backend: 'none',
        labels: {},
        public_key: identity.publicKey,
        challenge: hello.challenge,
        signature,
        coordinator_key_id: hello.coordinator!.key_id,
      },
      (e, r) => (e || !r ? rej(e ?? new Error('empty reply')) : res(r)),
    ),
  );
  return { hello, sessionToken: join.session_token, clientId: join.client_id, identitySecretKey: identity.secretKey };
}
