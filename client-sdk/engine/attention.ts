// Causal multi-head attention, forward and backward, flash-attention style: no [T, T] score matrix in memory.
// qkv is c_attn's output [B·T, 3D] (q | k | v column blocks, head h at columns h·hd). One thread owns one query
// row (forward, dq) or one key row (dk, dv) and walks the other rows in a fixed order with an online softmax,
// staging the shared rows in workgroup memory; the forward saves each row's log-sum-exp for the backward. Every
// output is written by exactly one thread: deterministic without atomics.
import { f32, header, u32, ceilDiv, type Binding, type Kernel } from './kernel';

export interface AttnShape {
  readonly B: number;
  readonly T: number;
  readonly H: number;
  readonly D: number;
  /** Multiplies q·k (1/√hd, possibly also 1/(layer+1)). */
  readonly scale: number;
  /** Element type of ctx / dctx / dqkv (the activation type of the path). */
  readonly act: 'f32' | 'f16';
}

const ROWS = 64;
const TILE = 32;

function consts(s: AttnShape): string {
  return `const T = ${u32(s.T)}; const H = ${u32(s.H)}; const D = ${u32(s.D)}; const HD = ${u32(s.D / s.H)}; const D3 = ${u32(3 * s.D)};
const SCALE = ${f32(s.scale)};`;
}

/** ctx[(b,t), h·hd..] = softmax(scale·q kᵀ + causal) v; lse[(b·H + h)·T + t]. Offsets select the layer's slices. */
export function attentionForward(s: AttnShape, io: { qkv: number; ctx: number; lse: number }): Kernel {
  const bindings: Binding[] = [
    { buffer: 'qkv', type: 'f32', write: false },
    { buffer: 'ctx', type: s.act, write: true },
    { buffer: 'lse', type: 'f32', write: true },
  ];
  const hd = s.D / s.H;
  const code = `${header(bindings)}
${consts(s)}
var<workgroup> ks: array<f32, ${TILE * hd}>;
var<workgroup> vs: array<f32, ${TILE * hd}>;
@compute @workgroup_size(${ROWS}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let b = wg.z; let h = wg.y; let i = wg.x * ${u32(ROWS)} + li;
  let base = ${u32(io.qkv)} + b * T * D3 + h * HD;
  var q: array<f32, ${hd}>;
  var acc: array<f32, ${hd}>;
  if (i < T) { for (var d = 0u; d < HD; d++) { q[d] = qkv[base + i * D3 + d] * SCALE; } }
  var mx = -3.0e38;
  var l = 0.0;
  let jEnd = min(T, wg.x * ${u32(ROWS)} + ${u32(ROWS)});
  for (var j0 = 0u; j0 < jEnd; j0 += ${u32(TILE)}) {
    for (var e = li; e < ${u32(TILE * hd)}; e += ${u32(ROWS)}) {
      let j = j0 + e / HD;
      var kv = 0.0; var vv = 0.0;
      if (j < T) { kv = qkv[base + j * D3 + D + e % HD]; vv = qkv[base + j * D3 + 2u * D + e % HD]; }
      ks[e] = kv; vs[e] = vv;
    }
    workgroupBarrier();
    for (var jj = 0u; jj < ${u32(TILE)}; jj++) {
      let j = j0 + jj;
      if (i < T && j <= i) {
        var sc = 0.0;
        for (var d = 0u; d < HD; d++) { sc = fma(q[d], ks[jj * HD + d], sc); }
        let mNew = max(mx, sc);
        let c = exp(mx - mNew);
        let p = exp(sc - mNew);
        l = l * c + p;
        for (var d = 0u; d < HD; d++) { acc[d] = fma(p, vs[jj * HD + d], acc[d] * c); }
        mx = mNew;
      }
    }
    workgroupBarrier();
  }
  if (i < T) {
    let o = ${u32(io.ctx)} + (b * T + i) * D + h * HD;
    for (var d = 0u; d < HD; d++) { ctx[o + d] = ${s.act}(acc[d] / l); }
    lse[${u32(io.lse)} + (b * H + h) * T + i] = mx + log(l);
  }
}`;
  return { label: 'attn.fwd', code, bindings, grid: [ceilDiv(s.T, ROWS), s.H, s.B] };
}

/**
 * Backward, two kernels. dq (thread per query row i): delta_i = dO_i·O_i (saved for the second kernel),
 * p_ij = exp(s_ij − lse_i), ds_ij = p_ij (dO_i·v_j − delta_i), dq_i = scale Σ_j ds_ij k_j.
 * dkv (thread per key row j): dv_j = Σ_{i≥j} p_ij dO_i, dk_j = scale Σ_{i≥j} ds_ij q_i.
 */
export function attentionBackward(s: AttnShape, io: { qkv: number; ctx: number; lse: number }): Kernel[] {
  const hd = s.D / s.H;
  const dqB: Binding[] = [
    { buffer: 'qkv', type: 'f32', write: false },
    { buffer: 'ctx', type: s.act, write: false },
    { buffer: 'lse', type: 'f32', write: false },
    { buffer: 'dctx', type: s.act, write: false },
    { buffer: 'delta', type: 'f32', write: true },
    { buffer: 'dqkv', type: s.act, write: true },
  ];
  const dq = `${header(dqB)}
${consts(s)}
var<workgroup> ks: array<f32, ${TILE * hd}>;
var<workgroup> vs: array<f32, ${TILE * hd}>;
@compute @workgroup_size(${ROWS}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let b = wg.z; let h = wg.y; let i = wg.x * ${u32(ROWS)} + li;
  let base = ${u32(io.qkv)} + b * T * D3 + h * HD;
  let orow = (b * T + i) * D + h * HD;
  var q: array<f32, ${hd}>;
  var go: array<f32, ${hd}>;
  var dq: array<f32, ${hd}>;
  var delta = 0.0;
  var lse_i = 0.0;
  if (i < T) {
    for (var d = 0u; d < HD; d++) {
      q[d] = qkv[base + i * D3 + d] * SCALE;
      go[d] = f32(dctx[orow + d]);
      delta = fma(go[d], f32(ctx[${u32(io.ctx)} + orow + d]), delta);
    }
    lse_i = lse[${u32(io.lse)} + (b * H + h) * T + i];
    delta_out(b, h, i, delta);
  }
  let jEnd = min(T, wg.x * ${u32(ROWS)} + ${u32(ROWS)});
  for (var j0 = 0u; j0 < jEnd; j0 += ${u32(TILE)}) {
    for (var e = li; e < ${u32(TILE * hd)}; e += ${u32(ROWS)}) {
      let j = j0 + e / HD;
      var kv = 0.0; var vv = 0.0;
      if (j < T) { kv = qkv[base + j * D3 + D + e % HD]; vv = qkv[base + j * D3 + 2u * D + e % HD]; }
      ks[e] = kv; vs[e] = vv;
    }
    workgroupBarrier();
    for (var jj = 0u; jj < ${u32(TILE)}; jj++) {
      let j = j0 + jj;
      if (i < T && j <= i) {
        var sc = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < HD; d++) { sc = fma(q[d], ks[jj * HD + d], sc); dp = fma(go[d], vs[jj * HD + d], dp); }
        let ds = exp(sc - lse_i) * (dp - delta);
        for (var d = 0u; d < HD; d++) { dq[d] = fma(ds, ks[jj * HD + d], dq[d]); }
      }
    }
    workgroupBarrier();
  }
  if (i < T) {
    let o = (b * T + i) * D3 + h * HD;
    for (var d = 0u; d < HD; d++) { dqkv[o + d] = ${s.act}(dq[d] * SCALE); }
  }
}
fn delta_out(b: u32, h: u32, i: u32, v: f32) { delta[(b * H + h) * T + i] = v; }`;
  const kvB: Binding[] = [
    { buffer: 'qkv', type: 'f32', write: false },
    { buffer: 'lse', type: 'f32', write: false },
    { buffer: 'dctx', type: s.act, write: false },
    { buffer: 'delta', type: 'f32', write: false },
    { buffer: 'dqkv', type: s.act, write: true },
  ];
  const dkv = `${header(kvB)}
${consts(s)}
var<workgroup> qs: array<f32, ${TILE * hd}>;
var<workgroup> gs: array<f32, ${TILE * hd}>;
var<workgroup> ls: array<f32, ${TILE}>;
var<workgroup> dl: array<f32, ${TILE}>;
@compute @workgroup_size(${ROWS}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let b = wg.z; let h = wg.y; let j = wg.x * ${u32(ROWS)} + li;
  let base = ${u32(io.qkv)} + b * T * D3 + h * HD;
  var k: array<f32, ${hd}>;
  var v: array<f32, ${hd}>;
  var dk: array<f32, ${hd}>;
  var dv: array<f32, ${hd}>;
  if (j < T) { for (var d = 0u; d < HD; d++) { k[d] = qkv[base + j * D3 + D + d]; v[d] = qkv[base + j * D3 + 2u * D + d]; } }
  // queries i >= the first key of this workgroup
  for (var i0 = wg.x * ${u32(ROWS)}; i0 < T; i0 += ${u32(TILE)}) {
    for (var e = li; e < ${u32(TILE * hd)}; e += ${u32(ROWS)}) {
      let i = i0 + e / HD;
      var qv = 0.0; var gv = 0.0;
      if (i < T) { qv = qkv[base + i * D3 + e % HD] * SCALE; gv = f32(dctx[(b * T + i) * D + h * HD + e % HD]); }
      qs[e] = qv; gs[e] = gv;
    }
    for (var e = li; e < ${u32(TILE)}; e += ${u32(ROWS)}) {
      let i = i0 + e;
      var lv = 0.0; var dv0 = 0.0;
      if (i < T) { lv = lse[${u32(io.lse)} + (b * H + h) * T + i]; dv0 = delta[(b * H + h) * T + i]; }
      ls[e] = lv; dl[e] = dv0;
    }
    workgroupBarrier();
    for (var ii = 0u; ii < ${u32(TILE)}; ii++) {
      let i = i0 + ii;
      if (j < T && i < T && i >= j) {
        var sc = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < HD; d++) { sc = fma(qs[ii * HD + d], k[d], sc); dp = fma(gs[ii * HD + d], v[d], dp); }
        let p = exp(sc - ls[ii]);
        let ds = p * (dp - dl[ii]);
        for (var d = 0u; d < HD; d++) { dv[d] = fma(p, gs[ii * HD + d], dv[d]); dk[d] = fma(ds, qs[ii * HD + d], dk[d]); }
      }
    }
    workgroupBarrier();
  }
  if (j < T) {
    let o = (b * T + j) * D3 + h * HD;
    for (var d = 0u; d < HD; d++) { dqkv[o + D + d] = ${s.act}(dk[d]); dqkv[o + 2u * D + d] = ${s.act}(dv[d]); }
  }
}`;
  const grid: [number, number, number] = [ceilDiv(s.T, ROWS), s.H, s.B];
  return [
    { label: 'attn.bwd.dq', code: dq, bindings: dqB, grid },
    { label: 'attn.bwd.dkv', code: dkv, bindings: kvB, grid },
  ];
}
