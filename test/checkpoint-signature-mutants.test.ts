// manifest.sig exactly (coordinator/checkpoints/signature.ts): the signed bytes, the file's text, the strict
// parse with each refusal's sentence, and the store's one-sentence verdict for every way a signature can disagree
// with its manifest, in the order they are checked. References are computed here with tweetnacl and node:crypto,
// not with the module. Found missing by mutation testing (bench/MUTATION.md, group checkpoint-signature).
import { createHash } from 'node:crypto';
import nacl from 'tweetnacl';
import {
  checkManifestSignature,
  decodeBase64,
  manifestKeyId,
  manifestSigner,
  manifestSigningMessage,
  parseManifestSignature,
  sameKey,
  signManifest,
  signatureProblem,
  type ManifestSignature,
} from '../coordinator/checkpoints/signature';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const keys = nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(3));
const other = nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(4));
const manifest = Buffer.from('{\n  "version": 2\n}\n');
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
const idOf = (pk: Uint8Array): string => sha(pk).slice(0, 16);
/** manifest.sig as the format says, written here: sorted keys, two-space indent, a newline. */
function sigText(fields: Record<string, unknown>): string {
  return JSON.stringify(Object.fromEntries(Object.entries(fields).sort(([a], [b]) => (a < b ? -1 : 1))), null, 2) + '\n';
}
function fields(over: Record<string, unknown> = {}, m: Uint8Array = manifest, k: nacl.SignKeyPair = keys): Record<string, unknown> {
  return {
    format: 'fedtune.manifest-sig/1',
    algorithm: 'ed25519',
    keyId: idOf(k.publicKey),
    publicKey: b64(k.publicKey),
    manifestSha256: sha(m),
    signature: b64(nacl.sign.detached(Buffer.concat([Buffer.from('fedtune/manifest/v1\0'), m]), k.secretKey)),
    ...over,
  };
}
const bytes = (s: string): Uint8Array => Buffer.from(s);

describe('manifest signatures, exactly', () => {
  it('signs "fedtune/manifest/v1" NUL || manifest.json, and writes manifest.sig as sorted JSON with the key id of the key', () => {
    expect(Buffer.from(manifestSigningMessage(manifest)).toString('hex')).to.equal(
      Buffer.concat([Buffer.from('fedtune/manifest/v1\0', 'utf8'), manifest]).toString('hex'),
    );
    const signer = manifestSigner(keys);
    expect([signer.keyId, b64(signer.publicKey), manifestKeyId(keys.publicKey)]).to.deep.equal([
      idOf(keys.publicKey),
      b64(keys.publicKey),
      idOf(keys.publicKey),
    ]);
    expect(b64(signer.sign(manifest))).to.equal(b64(nacl.sign.detached(manifest, keys.secretKey)));
    expect(signManifest(manifest, signer)).to.equal(sigText(fields()));
  });

  it('decodeBase64 takes only canonical base64 of exactly the length asked for', () => {
    const k = b64(keys.publicKey);
    expect(Buffer.from(decodeBase64(k, 32)!).equals(Buffer.from(keys.publicKey))).to.equal(true);
    expect(decodeBase64(k, 32)).to.be.instanceOf(Uint8Array);
    for (const bad of [k.slice(0, -1), `${k}=`, ` ${k}`, k.replace(/=$/, ''), k.slice(0, -2) + 'B=']) expect(decodeBase64(bad, 32), bad).to.equal(null);
    expect(decodeBase64(k, 31)).to.equal(null);
    for (const v of [undefined, null, 32, [k]]) expect(decodeBase64(v, 32)).to.equal(null);
  });

  it('parseManifestSignature refuses each malformed field with its sentence, and returns a well-formed one as written', () => {
    let jsonError = '';
    try {
      JSON.parse('{"format":');
    } catch (e) {
      jsonError = (e as Error).message;
    }
    const cases: [string, string][] = [
      ['{"format":', `not valid JSON (${jsonError})`],
      ['null', 'not a JSON object'],
      ['[1]', 'not a JSON object'],
      ['7', 'not a JSON object'],
      [
        JSON.stringify({ ...fields(), extra: 1 }),
        'fields algorithm, extra, format, keyId, manifestSha256, publicKey, signature are not algorithm, format, keyId, manifestSha256, publicKey, signature',
      ],
      [
        JSON.stringify({ ...fields(), signature: undefined }),
        'fields algorithm, format, keyId, manifestSha256, publicKey are not algorithm, format, keyId, manifestSha256, publicKey, signature',
      ],
      [JSON.stringify(fields({ format: 'fedtune.manifest-sig/2' })), 'format "fedtune.manifest-sig/2" is not fedtune.manifest-sig/1'],
      [JSON.stringify(fields({ algorithm: 'ed448' })), 'algorithm "ed448" is not ed25519'],
      [JSON.stringify(fields({ keyId: 7 })), 'keyId is not 16 hex digits'],
      [JSON.stringify(fields({ keyId: idOf(keys.publicKey).toUpperCase() })), 'keyId is not 16 hex digits'],
      [JSON.stringify(fields({ keyId: `x${idOf(keys.publicKey)}` })), 'keyId is not 16 hex digits'],
      [JSON.stringify(fields({ keyId: `${idOf(keys.publicKey)}0` })), 'keyId is not 16 hex digits'],
      [JSON.stringify(fields({ manifestSha256: 1 })), 'manifestSha256 is not 64 hex digits'],
      [JSON.stringify(fields({ manifestSha256: `0${sha(manifest)}` })), 'manifestSha256 is not 64 hex digits'],
      [JSON.stringify(fields({ manifestSha256: `${sha(manifest)}0` })), 'manifestSha256 is not 64 hex digits'],
      [JSON.stringify(fields({ publicKey: b64(keys.publicKey.subarray(1)) })), 'publicKey is not 32 bytes of base64'],
      [JSON.stringify(fields({ signature: b64(new Uint8Array(63)) })), 'signature is not 64 bytes of base64'],
    ];
    for (const [text, error] of cases) expect(parseManifestSignature(bytes(text)), text).to.deep.equal({ error });
    expect(parseManifestSignature(bytes(sigText(fields())))).to.deep.equal({ sig: fields() });
  });

  it('checkManifestSignature reports the key id, the signature and the hash each on its own', () => {
    const check = (f: Record<string, unknown>, m: Uint8Array = manifest) => {
      const c = checkManifestSignature(f as unknown as ManifestSignature, m);
      return { keyIdMatches: c.keyIdMatches, signatureValid: c.signatureValid, hashMatches: c.hashMatches, actual: c.actualSha256, key: b64(c.publicKey) };
    };
    const key = b64(keys.publicKey);
    expect(check(fields())).to.deep.equal({ keyIdMatches: true, signatureValid: true, hashMatches: true, actual: sha(manifest), key });
    expect(check(fields({ keyId: '0'.repeat(16) }))).to.include({ keyIdMatches: false, signatureValid: true, hashMatches: true });
    expect(check(fields({ manifestSha256: '0'.repeat(64) }))).to.include({ keyIdMatches: true, signatureValid: true, hashMatches: false });
    const changed = Buffer.from('{\n  "version": 3\n}\n');
    expect(check(fields(), changed)).to.deep.equal({ keyIdMatches: true, signatureValid: false, hashMatches: false, actual: sha(changed), key });
    expect(sameKey(keys.publicKey, Uint8Array.from(keys.publicKey))).to.equal(true);
    expect(sameKey(keys.publicKey, other.publicKey)).to.equal(false);
  });

  it("signatureProblem: one sentence for the first thing wrong, in order (form, another coordinator's key, changed manifest, signature, hash, key id)", () => {
    const p = (f: Record<string, unknown> | string, m: Uint8Array = manifest, expected = manifestSigner(keys)) =>
      signatureProblem(bytes(typeof f === 'string' ? f : sigText(f)), m, 'v000002', expected);
    const id = idOf(keys.publicKey);
    expect(p('null')).to.equal('v000002/manifest.sig: not a fedtune.manifest-sig/1 signature: not a JSON object');
    expect(p(fields({}, manifest, other))).to.equal(`v000002/manifest.sig: signed by key ${idOf(other.publicKey)}, not by this coordinator's key ${id}`);
    // Without an expected key, another key's valid signature is no problem.
    expect(signatureProblem(bytes(sigText(fields({}, manifest, other))), manifest, 'v000002')).to.equal(null);
    const changed = Buffer.from('{\n  "version": 3\n}\n');
    expect(p(fields(), changed)).to.equal(`v000002/manifest.json: sha256 ${sha(changed)} does not match the signed ${sha(manifest)} in manifest.sig`);
    const forged = fields({ signature: b64(nacl.sign.detached(manifest, keys.secretKey)) }); // over the bytes without the domain
    expect(p(forged)).to.equal(`v000002/manifest.sig: ed25519 signature does not verify under key ${id}`);
    expect(p(fields({ manifestSha256: '0'.repeat(64) }))).to.equal(
      `v000002/manifest.sig: manifestSha256 ${'0'.repeat(64)} does not match manifest.json's sha256 ${sha(manifest)}`,
    );
    expect(p(fields({ keyId: '0'.repeat(16) }))).to.equal(`v000002/manifest.sig: keyId ${'0'.repeat(16)} is not the id of its publicKey (${id})`);
    expect(p(fields())).to.equal(null);
    expect(signatureProblem(bytes(sigText(fields())), manifest, 'v000002')).to.equal(null);
  });
});
