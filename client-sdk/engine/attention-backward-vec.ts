// The tiled attention backward (attention-backward.ts) with its workgroup tiles held as vec4<f32> (tuning.attnVec):
// each workgroup-memory load brings four elements of a row, so the score loop issues a quarter of the loads for
// the same multiply-adds, and each thread owns hd/8 contiguous output columns (two vec4s at hd 64) instead of every
// 8th one. Every sum runs over the same terms in the same order as in attention-backward.ts (fma per element, e and
// then the tiles ascending), so the outputs are bit-identical to it. Needs hd a multiple of 32.
// A layer with a sliding window (attention-window.ts) skips the key (dq) or query (dk, dv) tiles outside it and masks the rest.
import { header, f32, u32, ceilDiv, type Binding, type Kernel } from './kernel';
import { attnDims, type AttnShape } from './attention';
import { activeWindow, firstKeyRow, inWindow, queryRowsEnd } from './attention-window';

const LANES = 8;

/** Whether the vec4 kernels serve this head dimension. */
export const attnVecOk = (hd: number): boolean => hd % (4 * LANES) === 0;

/** Rows per tile: the largest of 32, 16, 8 whose tiles (rows padded by one vec4) fit the workgroup memory. */
export function attnBwdVecTile(hd: number, workgroupBytes: number): number {
  for (const bt of [32, 16, 8]) if ((4 * bt * (hd + 4) + 2 * bt * (bt + 1) + LANES * bt + 2 * bt) * 4 <= workgroupBytes) return bt;
  throw new Error(`attention backward: head dim ${hd} does not fit ${workgroupBytes} bytes of workgroup memory`);
}

function consts(s: AttnShape, bt: number): string {
  const { hd, qw, kw, qkvw, group } = attnDims(s);
  return `const T = ${u32(s.T)}; const H = ${u32(s.H)}; const D = ${u32(qw)}; const HD = ${u32(hd)}; const D3 = ${u32(qkvw)};
const KW = ${u32(kw)}; const G = ${u32(group)};
const V4 = ${u32(hd / 4)}; const HV = ${u32(hd / 4 + 1)}; const BT = ${u32(bt)}; const BTP = ${u32(bt + 1)}; const LANES = ${u32(LANES)};
const NC = ${u32(bt / LANES)}; const PV = ${u32(hd / 4 / LANES)}; const THREADS = ${u32(bt * LANES)};
const SCALE = ${f32(s.scale)};`;
}

/** s[k] = a_r · b_{c_k}, dp[k] = c_r · d_{c_k}: the scalar kernel's fma chain over e, four elements per load. */
function scoreLoop(a: string, b: string, c: string, d: string): string {
  return `var s = array<f32, NC>();
    var dp = array<f32, NC>();
    for (var e4 = 0u; e4 < V4; e4++) {
      let av = ${a}[r * HV + e4];
      let cv = ${c}[r * HV + e4];
      for (var k = 0u; k < NC; k++) {
        let col = (lane + LANES * k) * HV + e4;
        let bv = ${b}[col];
        let dv4 = ${d}[col];
        var x = s[k]; var y = dp[k];
        x = fma(av.x, bv.x, x); x = fma(av.y, bv.y, x); x = fma(av.z, bv.z, x); x = fma(av.w, bv.w, x);
        y = fma(cv.x, dv4.x, y); y = fma(cv.y, dv4.y, y); y = fma(cv.z, dv4.z, y); y = fma(cv.w, dv4.w, y);
        s[k] = x; dp[k] = y;
      }
    }`;
}

/** Stages rows j0.. of k and v (f32 in qkv) into ks, vs. */
const stageKv = (j0: string): string => `for (var e = li; e < BT * V4; e += THREADS) {
      let row = e / V4; let c4 = e % V4; let j = ${j0} + row;
      var kv = vec4f(); var vv = vec4f();
      if (j < T) {
        let g = kbase + j * D3 + c4 * 4u;
        kv = vec4f(qkv[g], qkv[g + 1u], qkv[g + 2u], qkv[g + 3u]);
        vv = vec4f(qkv[g + KW], qkv[g + KW + 1u], qkv[g + KW + 2u], qkv[g + KW + 3u]);
      }
      ks[row * HV + c4] = kv; vs[row * HV + c4] = vv;
    }`;

function dqKernel(s: AttnShape, io: { qkv: number; ctx: number; lse: number }, workgroupBytes: number): Kernel {
  const bindings: Binding[] = [
    { buffer: 'qkv', type: 'f32', write: false },
    { buffer: 'ctx', type: s.act, write: false },
    { buffer: 'lse', type: 'f32', write: false },
    { buffer: 'dctx', type: s.act, write: false },
    { buffer: 'delta', type: 'f32', write: true },
    { buffer: 'dqkv', type: s.act, write: true },
  ];
  const { hd } = attnDims(s);
  const BT = attnBwdVecTile(hd, workgroupBytes);
  const THREADS = BT * LANES;
  const w = activeWindow(s.window, s.T);
  const tile = `array<vec4f, ${BT * (hd / 4 + 1)}>`;
  const code = `${header(bindings)}
${consts(s, BT)}
var<workgroup> qs: ${tile};
var<workgroup> gs: ${tile};
var<workgroup> ks: ${tile};
var<workgroup> vs: ${tile};
var<workgroup> dss: array<f32, ${BT * (BT + 1)}>;
var<workgroup> part: array<f32, ${THREADS}>;
var<workgroup> rowl: array<f32, ${BT}>;
var<workgroup> rowd: array<f32, ${BT}>;
@compute @workgroup_size(${THREADS}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let b = wg.z; let h = wg.y; let i0 = wg.x * BT;
  let base = ${u32(io.qkv)} + b * T * D3 + h * HD;
  let kbase = ${u32(io.qkv)} + b * T * D3 + D + (h / G) * HD;
  let r = li / LANES; let lane = li % LANES;
  // Q (scaled), dO and this thread's share of delta: the same elements and order as the scalar kernel.
  var pd = 0.0;
  for (var e = lane; e < HD; e += LANES) {
    let i = i0 + r;
    var qv = 0.0; var gv = 0.0; var ov = 0.0;
    if (i < T) {
      let orow = (b * T + i) * D + h * HD + e;
      qv = qkv[base + i * D3 + e] * SCALE; gv = f32(dctx[orow]); ov = f32(ctx[${u32(io.ctx)} + orow]);
    }
    qs[r * HV + e / 4u][e % 4u] = qv; gs[r * HV + e / 4u][e % 4u] = gv;
    pd = fma(gv, ov, pd);
  }
  part[li] = pd;
  workgroupBarrier();
  if (lane == 0u) {
    var dsum = 0.0;
    for (var k = 0u; k < LANES; k++) { dsum += part[li + k]; }
    rowd[r] = dsum;
    let i = i0 + r;
    var lv = 0.0;
    if (i < T) { lv = lse[${u32(io.lse)} + (b * H + h) * T + i]; delta[(b * H + h) * T + i] = dsum; }
    rowl[r] = lv;
  }
  var dq = array<vec4f, ${hd / 4 / LANES}>();
  for (var j0 = ${w === undefined ? '0u' : firstKeyRow(w, 'i0', 'BT')}; j0 <= i0 && j0 < T; j0 += BT) {
    workgroupBarrier();
    ${stageKv('j0')}
    workgroupBarrier();
    ${scoreLoop('qs', 'ks', 'gs', 'vs')}
    let i = i0 + r;
    for (var k = 0u; k < NC; k++) {
      let jj = lane + LANES * k; let j = j0 + jj;
      var ds = 0.0;
      if (${w === undefined ? 'i < T && j <= i' : `i < T && j <= i && ${inWindow(w, 'j', 'i')}`}) { ds = exp(s[k] - rowl[r]) * (dp[k] - rowd[r]); }
      dss[r * BTP + jj] = ds;
    }
    workgroupBarrier();
    for (var jj = 0u; jj < BT; jj++) {
      let ds = vec4f(dss[r * BTP + jj]);
      for (var m = 0u; m < PV; m++) { dq[m] = fma(ds, ks[jj * HV + lane * PV + m], dq[m]); }
    }
  }
  let i = i0 + r;
  if (i < T) {
    let o = (b * T + i) * D3 + h * HD + lane * PV * 4u;
    for (var m = 0u; m < PV; m++) {
      for (var c = 0u; c < 4u; c++) { dqkv[o + m * 4u + c] = ${s.act}(dq[m][c] * SCALE); }
    }
  }
}`;
  return { label: 'attn.bwd.dq', code, bindings, grid: [ceilDiv(s.T, BT), s.H, s.B] };
}

function dkvKernel(s: AttnShape, io: { qkv: number; lse: number }, workgroupBytes: number): Kernel {
  const bindings: Binding[] = [
    { buffer: 'qkv', type: 'f32', write: false },
    { buffer: 'lse', type: 'f32', write: false },
    { buffer: 'dctx', type: s.act, write: false },
    { buffer: 'delta', type: 'f32', write: false },
    { buffer: 'dqkv', type: s.act, write: true },
  ];
  const { hd, kv } = attnDims(s);
  const BT = attnBwdVecTile(hd, workgroupBytes);
  const THREADS = BT * LANES;
  const w = activeWindow(s.window, s.T);
  const tile = `array<vec4f, ${BT * (hd / 4 + 1)}>`;
  const code = `${header(bindings)}
${consts(s, BT)}
var<workgroup> qs: ${tile};
var<workgroup> gs: ${tile};
var<workgroup> ks: ${tile};
var<workgroup> vs: ${tile};
var<workgroup> ps: array<f32, ${BT * (BT + 1)}>;
var<workgroup> dss: array<f32, ${BT * (BT + 1)}>;
var<workgroup> rowl: array<f32, ${BT}>;
var<workgroup> rowd: array<f32, ${BT}>;
@compute @workgroup_size(${THREADS}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let b = wg.z; let kh = wg.y; let j0 = wg.x * BT;
  let kbase = ${u32(io.qkv)} + b * T * D3 + D + kh * HD;
  let r = li / LANES; let lane = li % LANES;
  ${stageKv('j0')}
  var dk = array<vec4f, ${hd / 4 / LANES}>();
  var dv = array<vec4f, ${hd / 4 / LANES}>();
  for (var g = 0u; g < G; g++) {
  let h = kh * G + g;
  let base = ${u32(io.qkv)} + b * T * D3 + h * HD;
  for (var i0 = j0; i0 < ${w === undefined ? 'T' : `min(T, ${queryRowsEnd(w, 'j0 + BT - 1u')})`}; i0 += BT) {
    workgroupBarrier();
    for (var e = li; e < BT * V4; e += THREADS) {
      let row = e / V4; let c4 = e % V4; let i = i0 + row;
      var qv = vec4f(); var gv = vec4f();
      if (i < T) {
        let q = base + i * D3 + c4 * 4u;
        qv = vec4f(qkv[q], qkv[q + 1u], qkv[q + 2u], qkv[q + 3u]) * SCALE;
        let o = (b * T + i) * D + h * HD + c4 * 4u;
        gv = vec4f(f32(dctx[o]), f32(dctx[o + 1u]), f32(dctx[o + 2u]), f32(dctx[o + 3u]));
      }
      qs[row * HV + c4] = qv; gs[row * HV + c4] = gv;
    }
    if (li < BT) {
      let i = i0 + li;
      var lv = 0.0; var dl = 0.0;
      if (i < T) { lv = lse[${u32(io.lse)} + (b * H + h) * T + i]; dl = delta[(b * H + h) * T + i]; }
      rowl[li] = lv; rowd[li] = dl;
    }
    workgroupBarrier();
    ${scoreLoop('qs', 'ks', 'gs', 'vs')}
    let i = i0 + r;
    for (var k = 0u; k < NC; k++) {
      let jj = lane + LANES * k; let j = j0 + jj;
      var p = 0.0; var ds = 0.0;
      if (${w === undefined ? 'i < T && j < T && j <= i' : `i < T && j < T && j <= i && ${inWindow(w, 'j', 'i')}`}) { p = exp(s[k] - rowl[r]); ds = p * (dp[k] - rowd[r]); }
      ps[r * BTP + jj] = p; dss[r * BTP + jj] = ds;
    }
    workgroupBarrier();
    for (var ii = 0u; ii < BT; ii++) {
      let p = vec4f(ps[ii * BTP + r]);
      let ds = vec4f(dss[ii * BTP + r]);
      for (var m = 0u; m < PV; m++) {
        dv[m] = fma(p, gs[ii * HV + lane * PV + m], dv[m]);
        dk[m] = fma(ds, qs[ii * HV + lane * PV + m], dk[m]);
      }
    }
  }
  workgroupBarrier();
  }
  let j = j0 + r;
  if (j < T) {
    let o = (b * T + j) * D3 + D + kh * HD + lane * PV * 4u;
    for (var m = 0u; m < PV; m++) {
      for (var c = 0u; c < 4u; c++) { dqkv[o + m * 4u + c] = ${s.act}(dk[m][c]); dqkv[o + KW + m * 4u + c] = ${s.act}(dv[m][c]); }
    }
  }
}`;
  return { label: 'attn.bwd.dkv', code, bindings, grid: [ceilDiv(s.T, BT), kv, s.B] };
}

/** The two backward kernels in dispatch order (dq also writes delta, which dk/dv reads). */
export function attentionBackwardVec(s: AttnShape, io: { qkv: number; ctx: number; lse: number }, workgroupBytes = 16384): Kernel[] {
  if (!attnVecOk(attnDims(s).hd)) throw new Error(`attention backward (vec4): head dim ${attnDims(s).hd} is not a multiple of 32`);
  return [dqKernel(s, io, workgroupBytes), dkvKernel(s, io, workgroupBytes)];
}
