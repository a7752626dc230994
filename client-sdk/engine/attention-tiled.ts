// Causal attention forward, tiled like the backward (attention-backward.ts): a workgroup owns bt query rows with
// 8 threads per row, walks bt-row key tiles staged in workgroup memory, computes the bt × bt scores (each thread
// every 8th column), then per tile the row maximum, p = exp(s − max) by the thread that owns the score, and the
// online-softmax update of its slice of the output row (columns lane + 8m). attention.ts's kernel (one thread per
// query row holding q and the output row) keeps hd-long arrays per thread; this one keeps hd/8. Same outputs
// (ctx, lse); every value is summed by one thread in a fixed order, so reruns are bit-identical.
// A layer with a sliding window (attention-window.ts) skips the key tiles outside it and masks the rest.
import { attnDims, type AttnShape } from './attention';
import { activeWindow, firstKeyRow } from './attention-window';
import { ceilDiv, f32, header, u32, type Binding, type Kernel } from './kernel';

const LANES = 8;

/** Rows per tile: the largest of 32, 16, 8 whose q, k, v tiles and two score tiles fit the workgroup memory. */
export function attnFwdTile(hd: number, workgroupBytes: number): number {
  for (const bt of [32, 16, 8]) if ((3 * bt * (hd + 1) + 2 * bt * (bt + 1)) * 4 <= workgroupBytes) return bt;
  throw new Error(`attention forward: head dim ${hd} does not fit ${workgroupBytes} bytes of workgroup memory`);
}

/**
 * `vec` (tuning.attnVec, hd a multiple of 32): tiles held as vec4<f32> and each thread's hd/8 output columns
 * contiguous; the same sums in the same order, so bit-identical to the scalar form.
 */
export function attentionForwardTiled(s: AttnShape, io: { qkv: number; ctx: number; lse: number }, workgroupBytes = 16384, vec = false): Kernel {
  const bindings: Binding[] = [
    { buffer: 'qkv', type: 'f32', write: false },
    { buffer: 'ctx', type: s.act, write: true },
    { buffer: 'lse', type: 'f32', write: true },
  ];
  const { hd, qw, kw, qkvw, group } = attnDims(s);
  if (vec && hd % (4 * LANES) !== 0) throw new Error(`attention forward (vec4): head dim ${hd} is not a multiple of 32`);
  const BT = attnFwdTile(vec ? hd + 3 : hd, workgroupBytes);
  const THREADS = BT * LANES;
  const per = Math.ceil(hd / LANES);
  const nc = BT / LANES;
  const w = activeWindow(s.window, s.T);
  // With a window (attention-window.ts), key tiles before the block's first visible key are skipped.
  const j0Start = w === undefined ? '0u' : firstKeyRow(w, 'i0', 'BT');
  const masked = w === undefined ? 'i >= T || j0 + jj > i' : `i >= T || j0 + jj > i || j0 + jj + ${u32(w)} <= i`;
  const stageQ = `for (var e = li; e < BT * HD; e += THREADS) {
    let q = i0 + e / HD; let c = e % HD;
    var qv = 0.0;
    if (q < T) { qv = qkv[base + q * D3 + c] * SCALE; }
    qs[(e / HD) * HDP + c] = qv;
  }`;
  const stageQVec = `for (var e = li; e < BT * V4; e += THREADS) {
    let q = i0 + e / V4; let c4 = e % V4;
    var qv = vec4f();
    if (q < T) { let g = base + q * D3 + c4 * 4u; qv = vec4f(qkv[g], qkv[g + 1u], qkv[g + 2u], qkv[g + 3u]) * SCALE; }
    qs[(e / V4) * HV + c4] = qv;
  }`;
  const stageKv = `for (var e = li; e < BT * HD; e += THREADS) {
      let j = j0 + e / HD; let c = e % HD;
      var kv = 0.0; var vv = 0.0;
      if (j < T) { kv = qkv[kbase + j * D3 + c]; vv = qkv[kbase + j * D3 + KW + c]; }
      ks[(e / HD) * HDP + c] = kv; vs[(e / HD) * HDP + c] = vv;
    }`;
  const stageKvVec = `for (var e = li; e < BT * V4; e += THREADS) {
      let j = j0 + e / V4; let c4 = e % V4;
      var kv = vec4f(); var vv = vec4f();
      if (j < T) {
        let g = kbase + j * D3 + c4 * 4u;
        kv = vec4f(qkv[g], qkv[g + 1u], qkv[g + 2u], qkv[g + 3u]);
        vv = vec4f(qkv[g + KW], qkv[g + KW + 1u], qkv[g + KW + 2u], qkv[g + KW + 3u]);
      }
      ks[(e / V4) * HV + c4] = kv; vs[(e / V4) * HV + c4] = vv;
    }`;
  const scores = `for (var e = 0u; e < HD; e++) {
      let qv = qs[r * HDP + e];
      for (var k = 0u; k < NC; k++) { sc[k] = fma(qv, ks[(lane + LANES * k) * HDP + e], sc[k]); }
    }`;
  const scoresVec = `for (var e4 = 0u; e4 < V4; e4++) {
      let qv = qs[r * HV + e4];
      for (var k = 0u; k < NC; k++) {
        let kv = ks[(lane + LANES * k) * HV + e4];
        var x = sc[k];
        x = fma(qv.x, kv.x, x); x = fma(qv.y, kv.y, x); x = fma(qv.z, kv.z, x); x = fma(qv.w, kv.w, x);
        sc[k] = x;
      }
    }`;
  const accumulate = `for (var m = 0u; m < PER; m++) { acc[m] *= c; }
    for (var jj = 0u; jj < BT; jj++) {
      let p = pss[r * BTP + jj];
      psum += p;
      for (var m = 0u; m < PER; m++) {
        let e = lane + LANES * m;
        if (e < HD) { acc[m] = fma(p, vs[jj * HDP + e], acc[m]); }
      }
    }`;
  const accumulateVec = `for (var m = 0u; m < PV; m++) { acc[m] *= c; }
    for (var jj = 0u; jj < BT; jj++) {
      let p = pss[r * BTP + jj];
      psum += p;
      for (var m = 0u; m < PV; m++) { acc[m] = fma(vec4f(p), vs[jj * HV + lane * PV + m], acc[m]); }
    }`;
  const write = `for (var m = 0u; m < PER; m++) {
      let e = lane + LANES * m;
      if (e < HD) { ctx[o + e] = ${s.act}(acc[m] / l); }
    }`;
  const writeVec = `for (var m = 0u; m < PV; m++) {
      for (var c = 0u; c < 4u; c++) { ctx[o + lane * PV * 4u + m * 4u + c] = ${s.act}(acc[m][c] / l); }
    }`;
  const code = `${header(bindings)}
const T = ${u32(s.T)}; const H = ${u32(s.H)}; const D = ${u32(qw)}; const HD = ${u32(hd)}; const D3 = ${u32(qkvw)};
const KW = ${u32(kw)}; const G = ${u32(group)};
const HDP = ${u32(hd + 1)}; const BT = ${u32(BT)}; const BTP = ${u32(BT + 1)}; const LANES = ${u32(LANES)};
const NC = ${u32(nc)}; const PER = ${u32(per)}; const THREADS = ${u32(THREADS)};
const V4 = ${u32(Math.floor(hd / 4))}; const HV = ${u32(Math.floor(hd / 4) + 1)}; const PV = ${u32(Math.floor(per / 4))};
const SCALE = ${f32(s.scale)};
const MASKED = -3.0e38;
${(vec ? ['qs', 'ks', 'vs'].map((n) => `var<workgroup> ${n}: array<vec4f, ${BT * (hd / 4 + 1)}>;`) : ['qs', 'ks', 'vs'].map((n) => `var<workgroup> ${n}: array<f32, ${BT * (hd + 1)}>;`)).join('\n')}
var<workgroup> ss: array<f32, ${BT * (BT + 1)}>;
var<workgroup> pss: array<f32, ${BT * (BT + 1)}>;
@compute @workgroup_size(${THREADS}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let b = wg.z; let h = wg.y; let i0 = wg.x * BT;
  let base = ${u32(io.qkv)} + b * T * D3 + h * HD;
  let kbase = ${u32(io.qkv)} + b * T * D3 + D + (h / G) * HD;
  let r = li / LANES; let lane = li % LANES;
  let i = i0 + r;
  ${vec ? stageQVec : stageQ}
  var acc = array<${vec ? 'vec4f' : 'f32'}, ${vec ? per / 4 : per}>();
  var mx = MASKED;
  var l = 0.0;
  for (var j0 = ${j0Start}; j0 <= i0 && j0 < T; j0 += BT) {
    workgroupBarrier();
    ${vec ? stageKvVec : stageKv}
    workgroupBarrier();
    // Explicit zeros: a declaration inside a loop must start from zero on every pass.
    var sc = array<f32, ${nc}>();
    ${vec ? scoresVec : scores}
    for (var k = 0u; k < NC; k++) {
      let jj = lane + LANES * k;
      if (${masked}) { sc[k] = MASKED; }
      ss[r * BTP + jj] = sc[k];
    }
    workgroupBarrier();
    var tmax = MASKED;
    for (var jj = 0u; jj < BT; jj++) { tmax = max(tmax, ss[r * BTP + jj]); }
    let mNew = max(mx, tmax);
    for (var k = 0u; k < NC; k++) {
      var p = 0.0;
      if (sc[k] > MASKED) { p = exp(sc[k] - mNew); }
      pss[r * BTP + lane + LANES * k] = p;
    }
    workgroupBarrier();
    let c = exp(mx - mNew);
    var psum = 0.0;
    ${vec ? accumulateVec : accumulate}
    l = l * c + psum;
    mx = mNew;
  }
  if (i < T) {
    let o = ${u32(io.ctx)} + (b * T + i) * D + h * HD;
    ${vec ? writeVec : write}
    if (lane == 0u) { lse[${u32(io.lse)} + (b * H + h) * T + i] = mx + log(l); }
  }
}`;
  return { label: 'attn.fwd', code, bindings, grid: [ceilDiv(s.T, BT), s.H, s.B] };
}
