// The safetensors file format (Hugging Face): u64 little-endian header length, a JSON header mapping each
// tensor name to {dtype, shape, data_offsets}, then the raw little-endian data. We read F32/F16/BF16/F64 into
// float32 (what tfjs trains in) and write F32. Checkpoints and base models both use it, so files made by
// Python's `safetensors` load here unchanged and files written here load in PEFT.
import type { NamedTensor, TensorList } from './tensors';
import { numel, sortByName } from './tensors';

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);
const BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export interface SafetensorsFile {
  readonly tensors: NamedTensor[];
  /** Names of tensors present in the file but not floating point (e.g. masks, position ids); not loaded. */
  readonly skipped: string[];
  readonly metadata: Record<string, string>;
}

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

export function readSafetensors(bytes: Uint8Array): SafetensorsFile {
  if (bytes.length < 8) throw new SafetensorsError('file shorter than its 8-byte header length');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen > bytes.length - 8 || headerLen > 100 * 1024 * 1024) {
    throw new SafetensorsError(`header length ${headerLen} exceeds the file`);
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + 8, headerLen).toString('utf8')) as Record<string, unknown>; // checked below
  } catch (e) {
    throw new SafetensorsError(`header is not JSON: ${(e as Error).message}`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new SafetensorsError('header is not a JSON object');
  }
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const metadata = (header.__metadata__ ?? {}) as Record<string, string>;
  const tensors: NamedTensor[] = [];
  const skipped: string[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (raw === null || typeof raw !== 'object') throw new SafetensorsError(`tensor ${name}: entry is not an object`);
    const e = raw as HeaderEntry;
    const width = Object.hasOwn(BYTES, e.dtype) ? BYTES[e.dtype] : undefined;
    if (!width) throw new SafetensorsError(`tensor ${name}: unknown dtype ${e.dtype}`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(`tensor ${name}: invalid shape ${JSON.stringify(e.shape)}`);
    }
    if (!Array.isArray(e.data_offsets) || e.data_offsets.length !== 2 || !e.data_offsets.every((o) => Number.isSafeInteger(o))) {
      throw new SafetensorsError(`tensor ${name}: invalid data_offsets ${JSON.stringify(e.data_offsets)}`);
    }
    const [begin, end] = e.data_offsets;
    const n = numel(e.shape);
    if (!(begin >= 0 && end <= dataLen && end - begin === n * width)) {
      throw new SafetensorsError(`tensor ${name}: data_offsets [${begin}, ${end}] do not fit shape [${e.shape}] ${e.dtype}`);
    }
    if (!FLOAT_DTYPES.has(e.dtype)) {
      skipped.push(name);
      continue;
    }
    const src = bytes.subarray(dataStart + begin, dataStart + end);
    tensors.push({ name, dtype: 'float32', shape: [...e.shape], data: toFloat32(src, e.dtype, n) });
  }
  return { tensors: sortByName(tensors), skipped: skipped.sort(), metadata };
}

function toFloat32(src: Uint8Array, dtype: string, n: number): Float32Array {
  // Copy first: the source may not be aligned for a typed-array view.
  const copy = new Uint8Array(src);
  const dv = new DataView(copy.buffer);
  if (dtype === 'F32') return new Float32Array(copy.buffer, 0, n);
  const out = new Float32Array(n);
  if (dtype === 'F64') {
    for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true);
  } else if (dtype === 'BF16') {
    const u32 = new Uint32Array(1);
    const f32 = new Float32Array(u32.buffer);
    for (let i = 0; i < n; i++) {
      u32[0] = dv.getUint16(i * 2, true) << 16;
      out[i] = f32[0];
    }
  } else {
    for (let i = 0; i < n; i++) out[i] = halfToFloat(dv.getUint16(i * 2, true));
  }
  return out;
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Serialises tensors as F32 safetensors, sorted by name, header padded to 8 bytes as the reference does. */
export function writeSafetensors(tensors: TensorList, metadata: Record<string, string> = {}): Buffer {
  const sorted = sortByName(tensors);
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let off = 0;
  for (const t of sorted) {
    if (t.data.length !== numel(t.shape)) throw new SafetensorsError(`tensor ${t.name}: data does not match shape`);
    header[t.name] = { dtype: 'F32', shape: [...t.shape], data_offsets: [off, off + t.data.byteLength] };
    off += t.data.byteLength;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const out = Buffer.alloc(8 + json.length + off);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  let pos = 8 + json.length;
  for (const t of sorted) {
    Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).copy(out, pos);
    pos += t.data.byteLength;
  }
  return out;
}
