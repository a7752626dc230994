// `fedtune roster …`: the operator's signed SecAgg roster (proto/secagg/roster-file.ts). The operator key is kept
// apart from the coordinator (ideally offline): sites pin its public key, so a coordinator cannot show them
// identity keys of its own making.
import * as path from 'node:path';
import { writeFileSync } from 'node:fs';
import nacl from 'tweetnacl';
import type { Command } from 'commander';
import { KeyFileError, checkEd25519Secret, decodeKey, encodeKey, keyId, readSecretJson, writeSecretJson } from '../../proto/crypto/key-file';
import { signRoster } from '../../proto/secagg/roster-file';
import { readClientsFile } from '../auth/enrolment';
import { clientIdFor } from '../registry';

const OPERATOR_KEY_FORMAT = 'fedtune.operator-key/1';

async function operatorKey(file: string): Promise<Uint8Array> {
  const j = await readSecretJson(file);
  if (!j) throw new KeyFileError('no operator key file there; create one with `fedtune roster keygen <file>`');
  if (j.format !== OPERATOR_KEY_FORMAT) throw new KeyFileError(`format ${JSON.stringify(j.format)} is not ${OPERATOR_KEY_FORMAT}`);
  const sk = decodeKey(j.secretKey, 64, 'secretKey');
  checkEd25519Secret(sk, 'secretKey');
  return sk;
}

export function addRosterCommand(program: Command): void {
  const roster = program.command('roster').description("The operator's signed SecAgg roster: sites pin the operator key (--roster-key)");
  roster
    .command('keygen <file>')
    .description('Create an operator key file (owner-only; keep it off the coordinator) and print its public key')
    .action(async (file: string) => {
      if (await readSecretJson(file)) throw new Error('the operator key file exists already');
      const kp = nacl.sign.keyPair();
      await writeSecretJson(file, {
        format: OPERATOR_KEY_FORMAT,
        keyId: keyId(kp.publicKey),
        publicKey: encodeKey(kp.publicKey),
        secretKey: encodeKey(kp.secretKey),
      });
      console.log(encodeKey(kp.publicKey));
    });
  roster
    .command('sign')
    .description("Certify every active enrolled site's key for this run; point the coordinator's secagg.rosterFile at the output")
    .requiredOption('--run <dir>', 'run directory (its clients.json)')
    .requiredOption('--operator-key <file>', 'operator key file (fedtune roster keygen)')
    .option('--run-id <id>', "the coordinator's run.id (default: the run directory's name)")
    .option('--out <file>', 'where to write the roster (default <run>/secagg-roster.json)')
    .action(async (o: { run: string; operatorKey: string; runId?: string; out?: string }) => {
      const sk = await operatorKey(o.operatorKey);
      const runId = o.runId ?? path.basename(path.resolve(o.run));
      const active = readClientsFile(o.run).clients.filter((c) => !c.revokedAt);
      const file = signRoster(
        sk,
        runId,
        active.map((c) => ({ clientId: clientIdFor(c.name), name: c.name, publicKey: new Uint8Array(Buffer.from(c.publicKey, 'base64')) })),
      );
      const out = o.out ?? path.join(o.run, 'secagg-roster.json');
      writeFileSync(out, JSON.stringify(file, null, 2) + '\n');
      console.log(`certified ${active.length} site(s) for run ${runId}; sites pin --roster-key ${file.operatorPublicKey}`);
    });
}
