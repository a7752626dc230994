// Causal attention backward, tiled: a workgroup owns a block of bt query rows (dq) or bt key rows (dk, dv), bt = 32
// where workgroup memory allows, and walks bt-row tiles of the other side, staging both tiles in workgroup memory.
// Per tile pair the bt × bt scores S and dP are computed by 8 threads per row, P and dS go through workgroup
// memory, and each thread then accumulates its own slice of the output block (one row, every 8th column). The earlier kernels (one thread per
// row, the whole row of k, v, dk, dv in registers) ran dk/dv at ~0.3 TFLOP/s on an H200: register spills and one
// dot product of length hd per pair per thread. Every output element is summed by one thread in a fixed order, so
// the result is deterministic without atomics. Rows are padded by one word so the 8 rows a warp reads at once fall
// in different banks.
// A layer with a sliding window (attention-window.ts) skips the key (dq) or query (dk, dv) tiles outside it and masks the rest.
import { header, f32, u32, ceilDiv, type Binding, type Kernel } from './kernel';
import { attnDims, type AttnShape } from './attention';
import { activeWindow, firstKeyRow, inWindow, queryRowsEnd } from './attention-window';

/** Threads that share one row of S; each takes every LANES-th column of it, and of the output row it owns. */
const LANES = 8;

/**
 * Rows per tile, the same for queries and keys so the causal diagonal is tile-aligned: the largest of 32, 16, 8
 * whose six tiles (dk/dv kernel, rows padded by one word) fit the device's workgroup memory. A workgroup has
 * 8 threads per row; each computes tile / 8 columns of S.
 */
export function attnBwdTile(hd: number, workgroupBytes: number): number {
  for (const bt of [32, 16, 8]) if ((4 * bt * (hd + 1) + 2 * bt * (bt + 1) + 2 * bt) * 4 <= workgroupBytes) return bt;
  throw new Error(`attention backward: head dim ${hd} does not fit ${workgroupBytes} bytes of workgroup memory`);
}

function consts(s: AttnShape, bt: number): string {
  const { hd, qw, kw, qkvw, group } = attnDims(s);
  // D: ctx row width (the q block's); D3: qkv row width; KW: the k (and v) block's; G: query heads per kv head.
  return `const T = ${u32(s.T)}; const H = ${u32(s.H)}; const D = ${u32(qw)}; const HD = ${u32(hd)}; const D3 = ${u32(qkvw)};
const KW = ${u32(kw)}; const G = ${u32(group)};
const HDP = ${u32(hd + 1)}; const BT = ${u32(bt)}; const BTP = ${u32(bt + 1)}; const LANES = ${u32(LANES)};
const NC = ${u32(bt / LANES)}; const PER = ${u32(Math.ceil(hd / LANES))}; const THREADS = ${u32(bt * LANES)};
const SCALE = ${f32(s.scale)};`;
}

/** Workgroup memory for two [BT, hd] tiles and the per-thread score loop shared by both kernels. */
function scoreLoop(a: string, b: string, c: string, d: string): string {
  // s[k] = a_r · b_{c_k}, dp[k] = c_r · d_{c_k} for the thread's NC columns c_k = lane + LANES·k.
  // Explicit zeros: a declaration inside a loop must start from zero on every pass.
  return `var s = array<f32, NC>();
    var dp = array<f32, NC>();
    for (var e = 0u; e < HD; e++) {
      let av = ${a}[r * HDP + e];
      let cv = ${c}[r * HDP + e];
      for (var k = 0u; k < NC; k++) {
        let col = (lane + LANES * k) * HDP + e;
        s[k] = fma(av, ${b}[col], s[k]);
        dp[k] = fma(cv, ${d}[col], dp[k]);
      }
    }`;
}

/**
 * dq (workgroup per 32 query rows): delta_i = dO_i·O_i (written for the dk/dv kernel), then over key tiles
 * j ≤ i: p_ij = exp(s_ij − lse_i), ds_ij = p_ij (dO_i·v_j − delta_i), dq_i = scale Σ_j ds_ij k_j.
 */
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
  const BT = attnBwdTile(hd, workgroupBytes);
  const THREADS = BT * LANES;
  const w = activeWindow(s.window, s.T);
  const per = Math.ceil(hd / LANES);
  const code = `${header(bindings)}
${consts(s, BT)}
var<workgroup> qs: array<f32, ${BT * (hd + 1)}>;
var<workgroup> gs: array<f32, ${BT * (hd + 1)}>;
var<workgroup> ks: array<f32, ${BT * (hd + 1)}>;
var<workgroup> vs: array<f32, ${BT * (hd + 1)}>;
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
  // Q (scaled), dO and this thread's share of delta.
  var pd = 0.0;
  for (var e = lane; e < HD; e += LANES) {
    let i = i0 + r;
    var qv = 0.0; var gv = 0.0; var ov = 0.0;
    if (i < T) {
      let orow = (b * T + i) * D + h * HD + e;
      qv = qkv[base + i * D3 + e] * SCALE; gv = f32(dctx[orow]); ov = f32(ctx[${u32(io.ctx)} + orow]);
    }
    qs[r * HDP + e] = qv; gs[r * HDP + e] = gv;
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
  var dq = array<f32, ${per}>();
  for (var j0 = ${w === undefined ? '0u' : firstKeyRow(w, 'i0', 'BT')}; j0 <= i0 && j0 < T; j0 += BT) {
    workgroupBarrier();
    for (var e = li; e < BT * HD; e += THREADS) {
      let j = j0 + e / HD; let c = e % HD;
      var kv = 0.0; var vv = 0.0;
      if (j < T) { kv = qkv[kbase + j * D3 + c]; vv = qkv[kbase + j * D3 + KW + c]; }
      ks[(e / HD) * HDP + c] = kv; vs[(e / HD) * HDP + c] = vv;
    }
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
      let ds = dss[r * BTP + jj];
      for (var m = 0u; m < PER; m++) {
        let e = lane + LANES * m;
        if (e < HD) { dq[m] = fma(ds, ks[jj * HDP + e], dq[m]); }
      }
    }
  }
  let i = i0 + r;
  if (i < T) {
    let o = (b * T + i) * D3 + h * HD;
    for (var m = 0u; m < PER; m++) {
      let e = lane + LANES * m;
      if (e < HD) { dqkv[o + e] = ${s.act}(dq[m] * SCALE); }
    }
  }
}`;
  return { label: 'attn.bwd.dq', code, bindings, grid: [ceilDiv(s.T, BT), s.H, s.B] };
}

/** dk, dv (workgroup per 32 key rows), over query tiles i ≥ j: dv_j = Σ_i p_ij dO_i, dk_j = scale Σ_i ds_ij q_i. */
function dkvKernel(s: AttnShape, io: { qkv: number; lse: number }, workgroupBytes: number): Kernel {
  const bindings: Binding[] = [
    { buffer: 'qkv', type: 'f32', write: false },
    { buffer: 'lse', type: 'f32', write: false },
    { buffer: 'dctx', type: s.act, write: false },
    { buffer: 'delta', type: 'f32', write: false },
    { buffer: 'dqkv', type: s.act, write: true },
  ];
  const { hd, kv } = attnDims(s);
  const BT = attnBwdTile(hd, workgroupBytes);
  const THREADS = BT * LANES;
  const w = activeWindow(s.window, s.T);
  const per = Math.ceil(hd / LANES);
  const code = `${header(bindings)}
${consts(s, BT)}
var<workgroup> qs: array<f32, ${BT * (hd + 1)}>;
var<workgroup> gs: array<f32, ${BT * (hd + 1)}>;
var<workgroup> ks: array<f32, ${BT * (hd + 1)}>;
var<workgroup> vs: array<f32, ${BT * (hd + 1)}>;
var<workgroup> ps: array<f32, ${BT * (BT + 1)}>;
var<workgroup> dss: array<f32, ${BT * (BT + 1)}>;
var<workgroup> rowl: array<f32, ${BT}>;
var<workgroup> rowd: array<f32, ${BT}>;
@compute @workgroup_size(${THREADS}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  // wg.y is the kv head; its G query heads are summed in a fixed order (GQA: dk, dv of a shared kv head).
  let b = wg.z; let kh = wg.y; let j0 = wg.x * BT;
  let kbase = ${u32(io.qkv)} + b * T * D3 + D + kh * HD;
  let r = li / LANES; let lane = li % LANES;
  for (var e = li; e < BT * HD; e += THREADS) {
    let j = j0 + e / HD; let c = e % HD;
    var kv = 0.0; var vv = 0.0;
    if (j < T) { kv = qkv[kbase + j * D3 + c]; vv = qkv[kbase + j * D3 + KW + c]; }
    ks[(e / HD) * HDP + c] = kv; vs[(e / HD) * HDP + c] = vv;
  }
  var dk = array<f32, ${per}>();
  var dv = array<f32, ${per}>();
  for (var g = 0u; g < G; g++) {
  let h = kh * G + g;
  let base = ${u32(io.qkv)} + b * T * D3 + h * HD;
  for (var i0 = j0; i0 < ${w === undefined ? 'T' : `min(T, ${queryRowsEnd(w, 'j0 + BT - 1u')})`}; i0 += BT) {
    workgroupBarrier();
    for (var e = li; e < BT * HD; e += THREADS) {
      let i = i0 + e / HD; let c = e % HD;
      var qv = 0.0; var gv = 0.0;
      if (i < T) { qv = qkv[base + i * D3 + c] * SCALE; gv = f32(dctx[(b * T + i) * D + h * HD + c]); }
      qs[(e / HD) * HDP + c] = qv; gs[(e / HD) * HDP + c] = gv;
    }
    if (li < BT) {
      let i = i0 + li;
      var lv = 0.0; var dl = 0.0;
      if (i < T) { lv = lse[${u32(io.lse)} + (b * H + h) * T + i]; dl = delta[(b * H + h) * T + i]; }
      rowl[li] = lv; rowd[li] = dl;
    }
    workgroupBarrier();
    // Scores for query row r of this tile against this block's keys lane + 8k.
    ${scoreLoop('qs', 'ks', 'gs', 'vs')}
    let i = i0 + r;
    for (var k = 0u; k < NC; k++) {
      let jj = lane + LANES * k; let j = j0 + jj;
      var p = 0.0; var ds = 0.0;
      if (${w === undefined ? 'i < T && j < T && j <= i' : `i < T && j < T && j <= i && ${inWindow(w, 'j', 'i')}`}) { p = exp(s[k] - rowl[r]); ds = p * (dp[k] - rowd[r]); }
      ps[r * BTP + jj] = p; dss[r * BTP + jj] = ds;
    }
    workgroupBarrier();
    // This thread's outputs: key row r of the block (the same index, now over keys), columns lane + 8m.
    for (var ii = 0u; ii < BT; ii++) {
      let p = ps[ii * BTP + r];
      let ds = dss[ii * BTP + r];
      for (var m = 0u; m < PER; m++) {
        let e = lane + LANES * m;
        if (e < HD) { dv[m] = fma(p, gs[ii * HDP + e], dv[m]); dk[m] = fma(ds, qs[ii * HDP + e], dk[m]); }
      }
    }
  }
  workgroupBarrier();
  }
  let j = j0 + r;
  if (j < T) {
    let o = (b * T + j) * D3 + D + kh * HD;
    for (var m = 0u; m < PER; m++) {
      let e = lane + LANES * m;
      if (e < HD) { dqkv[o + e] = ${s.act}(dk[m]); dqkv[o + KW + e] = ${s.act}(dv[m]); }
    }
  }
}`;
  return { label: 'attn.bwd.dkv', code, bindings, grid: [ceilDiv(s.T, BT), kv, s.B] };
}

/** The two backward kernels in dispatch order (dq also writes delta, which dk/dv reads). */
export function attentionBackward(s: AttnShape, io: { qkv: number; ctx: number; lse: number }, workgroupBytes = 16384): Kernel[] {
  if (s.headDim === undefined && s.D % s.H !== 0) throw new Error(`attention: D ${s.D} is not a multiple of H ${s.H}`);
  return [dqKernel(s, io, workgroupBytes), dkvKernel(s, io, workgroupBytes)];
}
