// proto/safetensors.ts as pure functions: the reference layout written, bit-exact round trips, the float types read,
// malformed files refused with SafetensorsError.
import { SafetensorsError, readSafetensors, writeSafetensors } from '../proto/safetensors';
import type { NamedTensor } from '../proto/tensors';
import { bytesOf, tensors } from './tensor-stream-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('safetensors', () => {
  /** A file from a header object and raw data bytes, header padded to 8 like the reference writer. */
  function file(header: unknown, data: Buffer): Buffer {
    let json = Buffer.from(JSON.stringify(header));
    json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    return Buffer.concat([len, json, data]);
  }

  it('writes the reference layout: u64 LE header length, sorted names, contiguous offsets, metadata first', () => {
    const ts: NamedTensor[] = [
      { name: 'b', dtype: 'float32', shape: [2], data: Float32Array.from([1, -2]) },
      { name: 'a', dtype: 'float32', shape: [1, 1], data: Float32Array.from([0.5]) },
    ];
    const out = writeSafetensors(ts, { format: 'pt' });
    const n = Number(out.readBigUInt64LE(0));
    expect(n % 8).to.equal(0);
    const json = out.subarray(8, 8 + n).toString('utf8');
    expect(json.trimEnd()).to.equal(
      '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}',
    );
    expect(/^ *$/.test(json.slice(json.trimEnd().length))).to.equal(true);
    expect(out.length).to.equal(8 + n + 12);
    expect(Array.from(new Float32Array(out.buffer.slice(out.byteOffset + 8 + n, out.byteOffset + out.length)))).to.deep.equal([0.5, 1, -2]);
    // Without metadata there is no __metadata__ entry.
    expect(writeSafetensors(ts).subarray(8).toString('utf8')).to.not.contain('__metadata__');
  });

  it('round-trips bit-exactly, sorted by name, from unaligned input too', () => {
    const ts = tensors([5, 0, 3]).reverse();
    ts[0].data[0] = -0;
    const bytes = writeSafetensors(ts, { format: 'pt', note: 'x' });
    const unaligned = Buffer.concat([Buffer.alloc(3), bytes]).subarray(3);
    for (const b of [bytes, unaligned]) {
      const r = readSafetensors(b);
      expect(r.metadata).to.deep.equal({ format: 'pt', note: 'x' });
      expect(r.skipped).to.deep.equal([]);
      expect(r.tensors.map((t) => t.name)).to.deep.equal(['t0', 't1', 't2']);
      for (const t of r.tensors) {
        const src = ts.find((x) => x.name === t.name)!;
        expect(t.shape).to.deep.equal(src.shape);
        expect(bytesOf(t).equals(bytesOf(src))).to.equal(true);
      }
    }
  });

  it('reads F16 (incl. subnormal, -0, ±Inf, NaN), BF16 and F64 into float32, and skips non-float tensors', () => {
    const f16 = Buffer.from([0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0x00, 0x80, 0x00, 0x7c, 0x00, 0xfc, 0x01, 0x7c, 0xff, 0x7b]);
    const bf16 = Buffer.from([0x80, 0x3f, 0x49, 0x40]); // 1.0, 3.140625
    const f64 = Buffer.alloc(16);
    f64.writeDoubleLE(0.1, 0);
    f64.writeDoubleLE(-1e300, 8);
    const i64 = Buffer.alloc(8);
    const data = Buffer.concat([f16, bf16, f64, i64]);
    const header = {
      h: { dtype: 'F16', shape: [8], data_offsets: [0, 16] },
      b: { dtype: 'BF16', shape: [2], data_offsets: [16, 20] },
      d: { dtype: 'F64', shape: [2], data_offsets: [20, 36] },
      ids: { dtype: 'I64', shape: [1], data_offsets: [36, 44] },
    };
    const r = readSafetensors(file(header, data));
    expect(r.skipped).to.deep.equal(['ids']);
    expect(r.metadata).to.deep.equal({});
    const by = Object.fromEntries(r.tensors.map((t) => [t.name, Array.from(t.data)]));
    expect(Object.keys(by)).to.deep.equal(['b', 'd', 'h']);
    expect(by.b).to.deep.equal([1, 3.140625]);
    expect(by.d).to.deep.equal([Math.fround(0.1), -Infinity]);
    expect(by.h.slice(0, 6)).to.deep.equal([1, -2, 2 ** -24, -0, Infinity, -Infinity]);
    expect(Object.is(by.h[3], -0)).to.equal(true);
    expect(by.h[6]).to.be.NaN;
    expect(by.h[7]).to.equal(65504);
  });

  it('refuses malformed files with SafetensorsError', () => {
    const ok = { x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
    const data = Buffer.alloc(8);
    const bad: [Buffer, string | RegExp][] = [
      [Buffer.alloc(7), 'shorter than its 8-byte header length'],
      [Buffer.concat([Buffer.from([0xff, 0, 0, 0, 0, 0, 0, 0]), Buffer.alloc(10)]), 'header length 255 exceeds the file'],
      [Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"x"')]), 'header is not JSON'],
      [file(null, data), 'header is not a JSON object'],
      [file({ x: { dtype: 'F8', shape: [2], data_offsets: [0, 8] } }, data), 'tensor x: unknown dtype F8'],
      [file({ x: { dtype: 'constructor', shape: [2], data_offsets: [0, 8] } }, data), 'tensor x: unknown dtype constructor'],
      [file({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, data), 'tensor x: data_offsets [0, 8] do not fit shape [3] F32'],
      [file({ x: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, data), 'data_offsets [4, 12]'],
      [file({ x: { dtype: 'F32', shape: [-1, -2], data_offsets: [0, 8] } }, data), 'tensor x: invalid shape [-1,-2]'],
      [file({ x: { dtype: 'F32', shape: [2], data_offsets: [0.5, 8.5] } }, data), 'tensor x: invalid data_offsets [0.5,8.5]'],
      [file({ x: 3 }, data), 'tensor x: entry is not an object'],
      [file(ok, data).subarray(0, file(ok, data).length - 1), 'data_offsets [0, 8]'],
    ];
    expect(() => readSafetensors(file(ok, data))).to.not.throw();
    for (const [bytes, msg] of bad) expect(() => readSafetensors(bytes), String(msg)).to.throw(SafetensorsError, msg);
  });

  it('refuses to write a tensor whose data does not match its shape', () => {
    expect(() => writeSafetensors([{ name: 'x', dtype: 'float32', shape: [3], data: new Float32Array(2) }])).to.throw(
      SafetensorsError,
      'tensor x: data does not match shape',
    );
  });
});
