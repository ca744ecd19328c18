//! Every CUDA op against its CPU twin (`steel_kernels::cpu`, the specification) on random
//! inputs. Inputs are rounded to bf16 first and the twin runs on the rounded values in f32, so
//! the differences left are the GPU's bf16 outputs and summation order: each test states its
//! tolerance as the largest error allowed relative to the reference's largest magnitude.
//!
//! These need a GPU: they are ignored by a plain `cargo test` and run on the GPU machine by
//! `scripts/gpu-check.sh` (`--ignored`).
#![cfg(feature = "cuda")]

use half::bf16;
use steel_kernels::cpu;
use steel_kernels::cuda::gemm::{
    Batch, Gemm, Operand, gemm, linear_backward_input, linear_backward_weight, linear_forward,
};
use steel_kernels::cuda::rope::Heads;
use steel_kernels::cuda::{
    Dtype, Gpu, Tensor, attention, cross_entropy, embedding, moe, reduce, rmsnorm, rope, swiglu,
};

fn gpu() -> Gpu {
    Gpu::open(0).expect("these tests need a GPU (run them on the GPU machine)")
}

/// Uniform in [-scale, scale), deterministic per seed, rounded to bf16.
fn values(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 40) as f32 / (1u64 << 24) as f32;
            bf16::from_f32((u * 2.0 - 1.0) * scale).to_f32()
        })
        .collect()
}

fn upload(gpu: &Gpu, v: &[f32], dtype: Dtype) -> Tensor {
    Tensor::from_f32(gpu, v, dtype).unwrap()
}

fn download(gpu: &Gpu, t: &Tensor) -> Vec<f32> {
    t.to_f32(gpu).unwrap()
}

fn zeros(gpu: &Gpu, dtype: Dtype, len: usize) -> Tensor {
    Tensor::zeros(gpu, dtype, len).unwrap()
}

/// `max |got − want| ≤ tol · max(1e-3, max |want|)`, and in norm `‖got − want‖ ≤ tol ·
/// ‖want‖` (the first alone lets errors confined to small entries — the last keys, a last
/// partial tile — hide under the largest value).
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    let (worst, at) = got
        .iter()
        .zip(want)
        .enumerate()
        .map(|(i, (g, w))| ((g - w).abs(), i))
        .fold((0.0f32, 0), |a, b| if b.0 > a.0 { b } else { a });
    assert!(
        worst <= tol * scale && got.iter().all(|g| g.is_finite()),
        "{what}: max error {worst} at {at} (got {}, want {}), allowed {}",
        got[at],
        want[at],
        tol * scale
    );
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    let error = norm(&mut got.iter().zip(want).map(|(g, w)| (g - w) as f64));
    let size = norm(&mut want.iter().map(|&w| w as f64)).max(1e-6);
    assert!(
        error <= tol as f64 * size,
        "{what}: error {error} in norm against a norm of {size}, allowed {}",
        tol as f64 * size
    );
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn linear_gemms_match_cpu() {
    let gpu = gpu();
    let (n, d_in, d_out) = (37, 48, 40);
    let x = values(1, n * d_in, 1.0);
    let w = values(2, d_out * d_in, 1.0);
    let dy = values(3, n * d_out, 1.0);
    let dw0 = values(4, d_out * d_in, 1.0);
    let mut y = vec![0.0; n * d_out];
    cpu::linear::forward(&x, &w, None, n, d_in, d_out, &mut y);
    let (mut dx, mut dw) = (vec![0.0; n * d_in], dw0.clone());
    cpu::linear::backward(&dy, &x, &w, n, d_in, d_out, &mut dx, &mut dw, None);
    let xg = upload(&gpu, &x, Dtype::Bf16);
    let wg = upload(&gpu, &w, Dtype::Bf16);
    let dyg = upload(&gpu, &dy, Dtype::Bf16);
    let yg = zeros(&gpu, Dtype::F32, n * d_out);
    let y_op = Operand::f32(yg.addr());
    linear_forward(&gpu, xg.addr(), wg.addr(), y_op, n, d_in, d_out, 0.0).unwrap();
    assert_close("y (fp32 out)", &download(&gpu, &yg), &y, 1e-4);
    let y16 = zeros(&gpu, Dtype::Bf16, n * d_out);
    let y16_op = Operand::bf16(y16.addr());
    linear_forward(&gpu, xg.addr(), wg.addr(), y16_op, n, d_in, d_out, 0.0).unwrap();
    assert_close("y (bf16 out)", &download(&gpu, &y16), &y, 8e-3);
    let dxg = zeros(&gpu, Dtype::F32, n * d_in);
    let dx_op = Operand::f32(dxg.addr());
    linear_backward_input(&gpu, dyg.addr(), wg.addr(), dx_op, n, d_in, d_out, 0.0).unwrap();
    assert_close("dx", &download(&gpu, &dxg), &dx, 1e-4);
    let dwg = upload(&gpu, &dw0, Dtype::F32);
    linear_backward_weight(&gpu, dyg.addr(), xg.addr(), dwg.addr(), n, d_in, d_out).unwrap();
    assert_close("dw (accumulated)", &download(&gpu, &dwg), &dw, 1e-4);
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn batched_gemm_with_a_broadcast_operand() {
    let gpu = gpu();
    let (count, m, n, k) = (3, 5, 7, 9);
    let a = values(5, m * k, 1.0); // shared by every problem (stride 0)
    let b = values(6, count * n * k, 1.0); // [count, n, k], used transposed
    let ag = upload(&gpu, &a, Dtype::Bf16);
    let bg = upload(&gpu, &b, Dtype::Bf16);
    let cg = zeros(&gpu, Dtype::F32, count * m * n);
    let problem = Gemm {
        m,
        n,
        k,
        a: Operand::bf16(ag.addr()),
        a_t: false,
        b: Operand::bf16(bg.addr()),
        b_t: true,
        c: Operand::f32(cg.addr()),
        alpha: 0.5,
        beta: 0.0,
        batch: Some(Batch {
            count,
            stride_a: 0,
            stride_b: n * k,
            stride_c: m * n,
        }),
    };
    gemm(&gpu, &problem).unwrap();
    let mut want = vec![0.0; count * m * n];
    for e in 0..count {
        let mut c = vec![0.0; m * n];
        cpu::linear::forward(&a, &b[e * n * k..(e + 1) * n * k], None, m, k, n, &mut c);
        for (o, v) in want[e * m * n..(e + 1) * m * n].iter_mut().zip(c) {
            *o = 0.5 * v;
        }
    }
    assert_close("batched", &download(&gpu, &cg), &want, 1e-4);
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn swiglu_matches_cpu() {
    let gpu = gpu();
    let (rows, w) = (33, 40);
    let gu = values(7, rows * 2 * w, 3.0);
    let dh = values(8, rows * w, 1.0);
    let g: Vec<f32> = gu.chunks(2 * w).flat_map(|r| r[..w].to_vec()).collect();
    let u: Vec<f32> = gu.chunks(2 * w).flat_map(|r| r[w..].to_vec()).collect();
    let mut h = vec![0.0; rows * w];
    cpu::swiglu::forward(&g, &u, &mut h);
    let (mut dg, mut du) = (vec![0.0; rows * w], vec![0.0; rows * w]);
    cpu::swiglu::backward(&dh, &g, &u, &mut dg, &mut du);
    let dgu_want: Vec<f32> = dg
        .chunks(w)
        .zip(du.chunks(w))
        .flat_map(|(a, b)| a.iter().chain(b).copied().collect::<Vec<_>>())
        .collect();
    let gug = upload(&gpu, &gu, Dtype::Bf16);
    let hg = zeros(&gpu, Dtype::Bf16, rows * w);
    swiglu::forward(&gpu, gug.addr(), hg.addr(), rows, w).unwrap();
    assert_close("h", &download(&gpu, &hg), &h, 8e-3);
    let dhg = upload(&gpu, &dh, Dtype::Bf16);
    let dgug = zeros(&gpu, Dtype::Bf16, rows * 2 * w);
    swiglu::backward(&gpu, dhg.addr(), gug.addr(), dgug.addr(), rows, w).unwrap();
    assert_close("dgu", &download(&gpu, &dgug), &dgu_want, 8e-3);
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn embedding_matches_cpu_with_repeated_ids() {
    let gpu = gpu();
    let (vocab, d) = (50, 24);
    let ids: Vec<u32> = vec![3, 7, 3, 49, 0, 7, 7, 12, 3];
    let table = values(9, vocab * d, 1.0);
    let dout = values(10, ids.len() * d, 1.0);
    let mut x = vec![0.0; ids.len() * d];
    cpu::embedding::forward(&ids, &table, d, &mut x);
    let dtable0 = values(11, vocab * d, 1.0);
    let mut dtable = dtable0.clone();
    cpu::embedding::backward(&ids, &dout, d, &mut dtable);
    let ids_i32: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
    let idsg = Tensor::from_i32(&gpu, &ids_i32).unwrap();
    let tg = upload(&gpu, &table, Dtype::Bf16);
    let xg = zeros(&gpu, Dtype::F32, ids.len() * d);
    embedding::forward(&gpu, idsg.addr(), tg.addr(), xg.addr(), ids.len(), d).unwrap();
    assert_eq!(download(&gpu, &xg), x, "embedding rows are copied exactly");
    let doutg = upload(&gpu, &dout, Dtype::F32);
    let dtg = upload(&gpu, &dtable0, Dtype::F32);
    embedding::backward(&gpu, &embedding::group(&ids), doutg.addr(), dtg.addr(), d).unwrap();
    assert_close("dtable", &download(&gpu, &dtg), &dtable, 1e-6);
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn fused_residual_rmsnorm_matches_cpu() {
    let gpu = gpu();
    let (n, d, eps) = (300, 96, 1e-6);
    let x_in = values(12, n * d, 2.0);
    let delta = values(13, n * d, 1.0);
    let w = values(14, d, 1.5);
    let dy = values(15, n * d, 1.0);
    let dx0 = values(16, n * d, 1.0);
    let x: Vec<f32> = x_in.iter().zip(&delta).map(|(a, b)| a + b).collect();
    let mut y = vec![0.0; n * d];
    cpu::rmsnorm::forward(&x, &w, d, eps, &mut y);
    let (mut dx, mut dw) = (vec![0.0; n * d], vec![0.5; d]);
    cpu::rmsnorm::backward(&dy, &x, &w, d, eps, &mut dx, &mut dw);
    let dx_want: Vec<f32> = dx.iter().zip(&dx0).map(|(a, b)| a + b).collect();
    let xg = upload(&gpu, &x_in, Dtype::F32);
    let deltag = upload(&gpu, &delta, Dtype::F32);
    let wg = upload(&gpu, &w, Dtype::Bf16);
    let x_out = zeros(&gpu, Dtype::F32, n * d);
    let yg = zeros(&gpu, Dtype::Bf16, n * d);
    let rstd = zeros(&gpu, Dtype::F32, n);
    let (xa, da, xo, wa) = (xg.addr(), deltag.addr(), x_out.addr(), wg.addr());
    rmsnorm::forward(&gpu, xa, da, xo, wa, yg.addr(), rstd.addr(), n, d, eps).unwrap();
    assert_close("x_out", &download(&gpu, &x_out), &x, 1e-6);
    assert_close("y", &download(&gpu, &yg), &y, 8e-3);
    let dyg = upload(&gpu, &dy, Dtype::Bf16);
    let dxg = upload(&gpu, &dx0, Dtype::F32);
    let dwg = upload(&gpu, &vec![0.5; d], Dtype::F32);
    let (dya, ra, dxa, dwa) = (dyg.addr(), rstd.addr(), dxg.addr(), dwg.addr());
    rmsnorm::backward(&gpu, dya, xo, wa, ra, dxa, dwa, n, d).unwrap();
    assert_close(
        "dx (added to the residual)",
        &download(&gpu, &dxg),
        &dx_want,
        1e-4,
    );
    assert_close("dw", &download(&gpu, &dwg), &dw, 1e-4);
}

/// `[t, heads, hd]` token-major rows of sequence `b` from head-major `[B, heads, T, hd]`.
fn token_major(x: &[f32], b: usize, heads: usize, t: usize, hd: usize) -> Vec<f32> {
    let mut out = vec![0.0; t * heads * hd];
    for h in 0..heads {
        for i in 0..t {
            let from = ((b * heads + h) * t + i) * hd;
            let to = (i * heads + h) * hd;
            out[to..to + hd].copy_from_slice(&x[from..from + hd]);
        }
    }
    out
}

/// Each token's document start, `[rows · t]`, from each row's sorted document starts (the
/// first 0), as `Batch::push_row` lays them out.
fn doc_starts(t: usize, rows: &[&[u32]]) -> Vec<u32> {
    let mut out = Vec::with_capacity(rows.len() * t);
    for starts in rows {
        assert_eq!(starts[0], 0, "a row's first document starts at 0");
        for i in 0..t as u32 {
            out.push(*starts.iter().rfind(|&&s| s <= i).unwrap());
        }
    }
    out
}

fn upload_i32(gpu: &Gpu, v: &[u32]) -> Tensor {
    Tensor::from_i32(gpu, &v.iter().map(|&x| x as i32).collect::<Vec<_>>()).unwrap()
}

fn heads(batch: usize, t: usize, hq: usize, hkv: usize, hd: usize) -> Heads {
    Heads {
        batch,
        t,
        hq,
        hkv,
        hd,
    }
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn rope_with_bias_and_head_split_matches_cpu() {
    let gpu = gpu();
    let h = heads(2, 21, 4, 2, 16);
    let theta = 1e6;
    let n = h.tokens();
    let width = h.qkv_width();
    let qkv = values(17, n * width, 1.0);
    let bias = values(18, width, 0.5);
    // Row 0 one document; row 1 three, so positions restart at 5 and 13.
    let starts = doc_starts(h.t, &[&[0], &[0, 5, 13]]);
    let positions: Vec<u32> = starts
        .iter()
        .enumerate()
        .map(|(i, &s)| (i % h.t) as u32 - s)
        .collect();
    let qkvg = upload(&gpu, &qkv, Dtype::Bf16);
    let biasg = upload(&gpu, &bias, Dtype::Bf16);
    let pg = upload_i32(&gpu, &positions);
    let q = zeros(&gpu, Dtype::Bf16, n * h.hq * h.hd);
    let k = zeros(&gpu, Dtype::Bf16, n * h.hkv * h.hd);
    let v = zeros(&gpu, Dtype::Bf16, n * h.hkv * h.hd);
    let (qa, ka, va, pa) = (q.addr(), k.addr(), v.addr(), pg.addr());
    rope::forward(&gpu, &h, qkvg.addr(), biasg.addr(), pa, qa, ka, va, theta).unwrap();
    let (qd, kd, vd) = (download(&gpu, &q), download(&gpu, &k), download(&gpu, &v));
    let (qw, kw) = (h.hq * h.hd, h.hkv * h.hd);
    let with_bias: Vec<f32> = qkv
        .chunks(width)
        .flat_map(|r| r.iter().zip(&bias).map(|(a, c)| a + c).collect::<Vec<_>>())
        .collect();
    for b in 0..h.batch {
        let rows = &with_bias[b * h.t * width..(b + 1) * h.t * width];
        let part = |from: usize, len: usize| -> Vec<f32> {
            rows.chunks(width)
                .flat_map(|r| r[from..from + len].to_vec())
                .collect()
        };
        let (mut qc, mut kc, vc) = (part(0, qw), part(qw, kw), part(qw + kw, kw));
        let row_positions = &positions[b * h.t..(b + 1) * h.t];
        cpu::rope::forward(&mut qc, row_positions, h.hq, h.hd, theta);
        cpu::rope::forward(&mut kc, row_positions, h.hkv, h.hd, theta);
        assert_close("q", &token_major(&qd, b, h.hq, h.t, h.hd), &qc, 8e-3);
        assert_close("k", &token_major(&kd, b, h.hkv, h.t, h.hd), &kc, 8e-3);
        assert_close("v", &token_major(&vd, b, h.hkv, h.t, h.hd), &vc, 8e-3);
    }
    // The backward turns q and k back and packs them with v: applied to the forward's
    // outputs it gives the biased projection again.
    let dqkv = zeros(&gpu, Dtype::Bf16, n * width);
    rope::backward(&gpu, &h, qa, ka, va, pa, dqkv.addr(), theta).unwrap();
    assert_close(
        "rope backward ∘ forward",
        &download(&gpu, &dqkv),
        &with_bias,
        2e-2,
    );
}

/// Random head-major q, k, v, an output gradient, each token's document start `[B·T]`, and
/// the CPU reference per row.
struct AttentionCase {
    h: Heads,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    dout: Vec<f32>,
    doc_start: Vec<u32>,
}

/// GPU results: token-major out, head-major dq, dk, dv.
struct AttentionResult {
    out: Vec<f32>,
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
}

impl AttentionCase {
    /// One document per row.
    fn new(h: Heads, seed: u64) -> AttentionCase {
        AttentionCase::packed(h, seed, &vec![&[0][..]; h.batch])
    }

    /// Rows packing documents that start at `starts[b]` in row `b`.
    fn packed(h: Heads, seed: u64, starts: &[&[u32]]) -> AttentionCase {
        assert_eq!(starts.len(), h.batch, "document starts for each row");
        AttentionCase {
            q: values(seed, h.tokens() * h.hq * h.hd, 1.0),
            k: values(seed + 1, h.tokens() * h.hkv * h.hd, 1.0),
            v: values(seed + 2, h.tokens() * h.hkv * h.hd, 1.0),
            dout: values(seed + 3, h.tokens() * h.hq * h.hd, 1.0),
            doc_start: doc_starts(h.t, starts),
            h,
        }
    }

    /// Token-major `[out, dq, dk, dv]` of row `b` on the CPU.
    fn reference(&self, b: usize) -> [Vec<f32>; 4] {
        let h = &self.h;
        let shape = cpu::attention::Shape {
            t: h.t,
            hq: h.hq,
            hkv: h.hkv,
            d: h.hd,
        };
        let q = token_major(&self.q, b, h.hq, h.t, h.hd);
        let k = token_major(&self.k, b, h.hkv, h.t, h.hd);
        let v = token_major(&self.v, b, h.hkv, h.t, h.hd);
        let width = h.hq * h.hd;
        let dout = self.dout[b * h.t * width..(b + 1) * h.t * width].to_vec();
        let starts = &self.doc_start[b * h.t..(b + 1) * h.t];
        let mut out = vec![0.0; q.len()];
        let mut p = vec![0.0; h.hq * h.t * h.t];
        cpu::attention::forward(&q, &k, &v, &shape, starts, &mut out, &mut p);
        let mut dq = vec![0.0; q.len()];
        let (mut dk, mut dv) = (vec![0.0; k.len()], vec![0.0; v.len()]);
        cpu::attention::backward(
            &dout, &q, &k, &v, &p, &shape, starts, &mut dq, &mut dk, &mut dv,
        );
        [out, dq, dk, dv]
    }

    fn run(&self, gpu: &Gpu, flash: bool) -> AttentionResult {
        let h = &self.h;
        let q = upload(gpu, &self.q, Dtype::Bf16);
        let k = upload(gpu, &self.k, Dtype::Bf16);
        let v = upload(gpu, &self.v, Dtype::Bf16);
        let dout = upload(gpu, &self.dout, Dtype::Bf16);
        let starts = upload_i32(gpu, &self.doc_start);
        let out = zeros(gpu, Dtype::Bf16, self.q.len());
        let dq = zeros(gpu, Dtype::Bf16, self.q.len());
        let dk = zeros(gpu, Dtype::Bf16, self.k.len());
        let dv = zeros(gpu, Dtype::Bf16, self.v.len());
        let (qa, ka, va, oa) = (q.addr(), k.addr(), v.addr(), out.addr());
        let (da, dqa, dka, dva) = (dout.addr(), dq.addr(), dk.addr(), dv.addr());
        let sa = starts.addr();
        if flash {
            let lse = zeros(gpu, Dtype::F32, h.batch * h.hq * h.t);
            attention::flash_forward(gpu, h, qa, ka, va, sa, oa, lse.addr()).unwrap();
            let la = lse.addr();
            attention::flash_backward(gpu, h, qa, ka, va, sa, oa, la, da, dqa, dka, dva).unwrap();
        } else {
            let scores = h.batch * h.hq * h.t * h.t;
            let s = zeros(gpu, Dtype::F32, scores);
            let p = zeros(gpu, Dtype::Bf16, scores);
            attention::cublas_forward(gpu, h, qa, ka, va, sa, oa, &s, &p).unwrap();
            attention::cublas_backward(gpu, h, qa, ka, va, &p, da, dqa, dka, dva, &s).unwrap();
        }
        AttentionResult {
            out: download(gpu, &out),
            dq: download(gpu, &dq),
            dk: download(gpu, &dk),
            dv: download(gpu, &dv),
        }
    }

    fn check(&self, gpu: &Gpu, flash: bool) {
        let h = &self.h;
        let got = self.run(gpu, flash);
        let width = h.hq * h.hd;
        let method = if flash { "flash" } else { "cublas" };
        for b in 0..h.batch {
            let [o, wq, wk, wv] = self.reference(b);
            let rows = &got.out[b * h.t * width..(b + 1) * h.t * width];
            assert_close(&format!("{method} out b{b}"), rows, &o, 2e-2);
            let dq = token_major(&got.dq, b, h.hq, h.t, h.hd);
            assert_close(&format!("{method} dq b{b}"), &dq, &wq, 3e-2);
            let dk = token_major(&got.dk, b, h.hkv, h.t, h.hd);
            assert_close(&format!("{method} dk b{b}"), &dk, &wk, 3e-2);
            let dv = token_major(&got.dv, b, h.hkv, h.t, h.hd);
            assert_close(&format!("{method} dv b{b}"), &dv, &wv, 3e-2);
        }
    }
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn cublas_attention_matches_cpu() {
    let gpu = gpu();
    AttentionCase::new(heads(2, 70, 4, 2, 16), 20).check(&gpu, false);
    AttentionCase::new(heads(1, 33, 2, 2, 56), 30).check(&gpu, false);
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn flash_attention_matches_cpu() {
    let gpu = gpu();
    // T not a multiple of the tiles; grouped heads; every head size with a kernel.
    AttentionCase::new(heads(2, 70, 4, 2, 16), 40).check(&gpu, true);
    AttentionCase::new(heads(1, 130, 4, 1, 64), 50).check(&gpu, true);
    for hd in [32, 56, 128] {
        AttentionCase::new(heads(1, 65, 2, 2, hd), 60 + hd as u64).check(&gpu, true);
    }
}

/// Rows packing several documents: starts crossing the 32-key tiles and the 64-row blocks,
/// one-token documents (7, and 149 the row's last token), a document spanning a whole block.
const PACKED_150: [&[u32]; 2] = [
    &[0, 3, 7, 8, 40, 64, 65, 100, 149],
    &[0, 31, 32, 33, 96, 140],
];

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn cublas_attention_within_documents_matches_cpu() {
    let gpu = gpu();
    AttentionCase::packed(heads(2, 70, 4, 2, 16), 120, &[&[0, 3, 7, 40, 69], &[0, 33]])
        .check(&gpu, false);
    AttentionCase::packed(heads(2, 150, 2, 1, 64), 130, &PACKED_150).check(&gpu, false);
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn flash_attention_within_documents_matches_cpu() {
    let gpu = gpu();
    AttentionCase::packed(heads(2, 150, 4, 2, 64), 140, &PACKED_150).check(&gpu, true);
    AttentionCase::packed(heads(2, 150, 2, 2, 16), 150, &PACKED_150).check(&gpu, true);
    AttentionCase::packed(
        heads(2, 70, 4, 1, 128),
        160,
        &[&[0, 3, 7, 40, 69], &[0, 64]],
    )
    .check(&gpu, true);
}

/// Head-major `[1, heads, len, hd]` of positions `from .. from + len` of the one row of
/// head-major `x: [1, heads, t, hd]`.
fn span(x: &[f32], heads: usize, t: usize, hd: usize, from: usize, len: usize) -> Vec<f32> {
    (0..heads)
        .flat_map(|h| x[(h * t + from) * hd..(h * t + from + len) * hd].to_vec())
        .collect()
}

/// Two documents packed in one row give, on the flash kernels, what each gives alone: every
/// sum is over the same keys (or queries) in the same order.
#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn flash_attention_of_a_packed_row_equals_its_documents_alone() {
    let gpu = gpu();
    let (ta, tb, hq, hkv, hd) = (70, 45, 4, 2, 64);
    let t = ta + tb;
    let packed = AttentionCase::packed(heads(1, t, hq, hkv, hd), 170, &[&[0, ta as u32]]);
    let together = packed.run(&gpu, true);
    for (from, len) in [(0, ta), (ta, tb)] {
        let alone = AttentionCase {
            h: heads(1, len, hq, hkv, hd),
            q: span(&packed.q, hq, t, hd, from, len),
            k: span(&packed.k, hkv, t, hd, from, len),
            v: span(&packed.v, hkv, t, hd, from, len),
            dout: packed.dout[from * hq * hd..(from + len) * hq * hd].to_vec(),
            doc_start: vec![0; len],
        }
        .run(&gpu, true);
        let what = |name: &str| format!("{name} of the document at {from}");
        let out = &together.out[from * hq * hd..(from + len) * hq * hd];
        assert_close(&what("out"), out, &alone.out, 1e-6);
        let dq = span(&together.dq, hq, t, hd, from, len);
        assert_close(&what("dq"), &dq, &alone.dq, 1e-6);
        let dk = span(&together.dk, hkv, t, hd, from, len);
        assert_close(&what("dk"), &dk, &alone.dk, 1e-6);
        let dv = span(&together.dv, hkv, t, hd, from, len);
        assert_close(&what("dv"), &dv, &alone.dv, 1e-6);
    }
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn flash_attention_backward_is_bitwise_repeatable() {
    let gpu = gpu();
    let case = AttentionCase::new(heads(2, 200, 4, 2, 64), 70);
    let bits = |r: AttentionResult| -> Vec<u32> {
        [r.dq, r.dk, r.dv]
            .concat()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    };
    assert_eq!(bits(case.run(&gpu, true)), bits(case.run(&gpu, true)));
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn fused_head_and_cross_entropy_match_cpu() {
    let gpu = gpu();
    // A vocabulary over one chunk, so the running log-sum-exp merges chunks.
    let (n, d, vocab) = (19, 32, cross_entropy::CHUNK + 808);
    let x = values(80, n * d, 1.0);
    let w = values(81, vocab * d, 1.0);
    let targets: Vec<u32> = (0..n as u32)
        .map(|i| (i * 977 + 5) % vocab as u32)
        .collect();
    let mut logits = vec![0.0; n * vocab];
    cpu::linear::forward(&x, &w, None, n, d, vocab, &mut logits);
    let terms = cpu::cross_entropy::row_terms(&logits, &targets, vocab);
    let xg = upload(&gpu, &x, Dtype::Bf16);
    let wg = upload(&gpu, &w, Dtype::Bf16);
    let tg = upload_i32(&gpu, &targets);
    // The mean (every weight 1, norm n), then weights with zeros (left out) and negative
    // values (DPO's) over a norm that is not n.
    let mixed: Vec<f32> = (0..n).map(|i| [1.0, 0.0, 0.5, -1.25, 2.0][i % 5]).collect();
    for (weights, norm) in [(vec![1.0; n], n as f32), (mixed, 7.5)] {
        let loss = cpu::cross_entropy::forward(&logits, &targets, &weights, norm, vocab);
        let mut dlogits = vec![0.0; n * vocab];
        cpu::cross_entropy::backward(&logits, &targets, &weights, norm, vocab, &mut dlogits);
        let (mut dx, mut dw) = (vec![0.0; n * d], vec![0.0; vocab * d]);
        cpu::linear::backward(&dlogits, &x, &w, n, d, vocab, &mut dx, &mut dw, None);
        let weights_g = upload(&gpu, &weights, Dtype::F32);
        let lossg = zeros(&gpu, Dtype::F32, 1);
        let (xa, wa, ta, ka) = (xg.addr(), wg.addr(), tg.addr(), weights_g.addr());
        let saved =
            cross_entropy::forward(&gpu, xa, wa, ta, ka, n, d, vocab, norm, lossg.addr()).unwrap();
        let got = download(&gpu, &lossg)[0];
        assert!(
            (got - loss).abs() <= 1e-4 * loss.abs().max(1.0),
            "norm {norm}: loss {got} vs {loss}"
        );
        let want_terms: Vec<f32> = terms
            .iter()
            .zip(&weights)
            .map(|(t, &w)| (w as f64 * t) as f32)
            .collect();
        assert_close("terms", &download(&gpu, &saved.terms), &want_terms, 1e-4);
        let dxg = zeros(&gpu, Dtype::F32, n * d);
        let dwg = zeros(&gpu, Dtype::F32, vocab * d);
        cross_entropy::backward(
            &gpu,
            &saved,
            xa,
            wa,
            ta,
            ka,
            n,
            d,
            vocab,
            norm,
            dxg.addr(),
            dwg.addr(),
        )
        .unwrap();
        let dx_got = download(&gpu, &dxg);
        assert_close("dx", &dx_got, &dx, 2e-2);
        assert_close("dw", &download(&gpu, &dwg), &dw, 2e-2);
        // A row of weight 0 sends back exactly nothing.
        for (row, _) in weights.iter().enumerate().filter(|(_, w)| **w == 0.0) {
            assert!(dx_got[row * d..(row + 1) * d].iter().all(|&g| g == 0.0));
        }
    }
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn gate_routing_and_mixing_match_cpu() {
    let gpu = gpu();
    let (n, e, k, d) = (41, 6, 2, 16);
    let logits = values(90, n * e, 3.0);
    let bias = values(91, e, 0.5);
    let biased: Vec<f32> = logits
        .chunks(e)
        .flat_map(|r| r.iter().zip(&bias).map(|(a, b)| a + b).collect::<Vec<_>>())
        .collect();
    let mut probs = vec![0.0; n * e];
    cpu::softmax::forward(&biased, e, &mut probs);
    let lg = upload(&gpu, &logits, Dtype::F32);
    let bg = upload(&gpu, &bias, Dtype::Bf16);
    let pg = zeros(&gpu, Dtype::F32, n * e);
    moe::gate_forward(&gpu, lg.addr(), bg.addr(), pg.addr(), n, e).unwrap();
    assert_close("probs", &download(&gpu, &pg), &probs, 1e-5);
    // Route from the CPU's probabilities so the choices compare exactly.
    let probs_g = upload(&gpu, &probs, Dtype::F32);
    for renormalize in [false, true] {
        let (mut chosen, mut weights) = (vec![0u32; n * k], vec![0.0; n * k]);
        cpu::topk::route(&probs, e, k, renormalize, &mut chosen, &mut weights);
        let route = moe::Route {
            n,
            experts: e,
            k,
            renormalize,
        };
        let cg = zeros(&gpu, Dtype::I32, n * k);
        let wg = zeros(&gpu, Dtype::F32, n * k);
        let mix = zeros(&gpu, Dtype::F32, n * e);
        moe::route(
            &gpu,
            &route,
            probs_g.addr(),
            cg.addr(),
            wg.addr(),
            mix.addr(),
        )
        .unwrap();
        let got: Vec<u32> = cg.to_i32(&gpu).unwrap().iter().map(|&c| c as u32).collect();
        assert_eq!(got, chosen, "chosen experts");
        assert_close("weights", &download(&gpu, &wg), &weights, 1e-6);
        // The routing weights' backward.
        let dmix = values(92, n * e, 1.0);
        let dweights: Vec<f32> = chosen
            .iter()
            .enumerate()
            .map(|(i, &c)| dmix[(i / k) * e + c as usize])
            .collect();
        let mut dprobs = vec![0.0; n * e];
        cpu::topk::route_backward(&dweights, &probs, &chosen, e, k, renormalize, &mut dprobs);
        let dmg = upload(&gpu, &dmix, Dtype::F32);
        let dpg = zeros(&gpu, Dtype::F32, n * e);
        moe::route_backward(
            &gpu,
            &route,
            dmg.addr(),
            probs_g.addr(),
            cg.addr(),
            0,
            dpg.addr(),
        )
        .unwrap();
        assert_close("dprobs", &download(&gpu, &dpg), &dprobs, 1e-5);
        // Mixing expert 1's output, and its backward.
        let mix_host = download(&gpu, &mix);
        let y = values(93, n * d, 1.0);
        let dout = values(94, n * d, 1.0);
        let yg = upload(&gpu, &y, Dtype::Bf16);
        let out = zeros(&gpu, Dtype::F32, n * d);
        moe::mix_forward(&gpu, out.addr(), yg.addr(), mix.addr(), 1, e, n, d, true).unwrap();
        let want: Vec<f32> = (0..n * d)
            .map(|i| mix_host[(i / d) * e + 1] * y[i])
            .collect();
        assert_close("mixed", &download(&gpu, &out), &want, 1e-6);
        let doutg = upload(&gpu, &dout, Dtype::F32);
        let dmix_g = zeros(&gpu, Dtype::F32, n * e);
        let dy = zeros(&gpu, Dtype::Bf16, n * d);
        let (da, ya, ma) = (doutg.addr(), yg.addr(), mix.addr());
        moe::mix_backward(&gpu, da, ya, ma, 1, e, n, d, dmix_g.addr(), dy.addr()).unwrap();
        let dmix_want: Vec<f32> = (0..n)
            .map(|t| (0..d).map(|j| dout[t * d + j] * y[t * d + j]).sum())
            .collect();
        let dmix_got: Vec<f32> = download(&gpu, &dmix_g).chunks(e).map(|r| r[1]).collect();
        assert_close("dmix", &dmix_got, &dmix_want, 1e-5);
    }
    // The gate softmax's backward, into the bf16 logits' gradient.
    let dprobs = values(95, n * e, 1.0);
    let mut dl = vec![0.0; n * e];
    cpu::softmax::backward(&dprobs, &probs, e, &mut dl);
    let dpg = upload(&gpu, &dprobs, Dtype::F32);
    let dlg = zeros(&gpu, Dtype::Bf16, n * e);
    moe::gate_backward(&gpu, dpg.addr(), probs_g.addr(), dlg.addr(), n, e).unwrap();
    assert_close("dlogits", &download(&gpu, &dlg), &dl, 8e-3);
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn reductions_match_f64_sums() {
    let gpu = gpu();
    let x = values(100, 1_000_003, 1.0);
    let xg = upload(&gpu, &x, Dtype::F32);
    let out = zeros(&gpu, Dtype::F32, 1);
    reduce::norm(&gpu, xg.addr(), x.len(), 0.5, out.addr()).unwrap();
    let want = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt() * 0.5;
    let got = download(&gpu, &out)[0] as f64;
    assert!((got - want).abs() < 1e-6 * want, "norm {got} vs {want}");
    let (rows, cols) = (1000, 70);
    let m = values(101, rows * cols, 1.0);
    let mg = upload(&gpu, &m, Dtype::Bf16);
    let sums = upload(&gpu, &vec![1.0; cols], Dtype::F32);
    reduce::add_column_sums(&gpu, mg.addr(), rows, cols, sums.addr()).unwrap();
    let want: Vec<f32> = (0..cols)
        .map(|j| 1.0 + (0..rows).map(|r| m[r * cols + j]).sum::<f32>())
        .collect();
    assert_close("column sums", &download(&gpu, &sums), &want, 1e-5);
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn casts_round_trip() {
    let gpu = gpu();
    let x = values(110, 1001, 4.0);
    let xg = upload(&gpu, &x, Dtype::F32);
    let half = zeros(&gpu, Dtype::Bf16, x.len());
    let back = zeros(&gpu, Dtype::F32, x.len());
    swiglu::cast_f32_to_bf16(&gpu, xg.addr(), half.addr(), x.len()).unwrap();
    swiglu::cast_bf16_to_f32(&gpu, half.addr(), back.addr(), x.len()).unwrap();
    // The inputs are bf16 values already: the round trip is exact.
    assert_eq!(download(&gpu, &back), x);
}

/// Runs everywhere: a binary built with the `cuda` feature on a machine without a driver
/// says so instead of crashing.
#[test]
fn opening_without_a_driver_is_a_clear_error() {
    // SAFETY: only asks the dynamic loader whether libcuda can be opened.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        return; // a GPU machine: the ignored tests above cover it
    }
    let error = Gpu::open(0).err().expect("no driver, no GPU");
    assert!(error.0.contains("no CUDA driver"), "{error}");
}

/// `[n, heads, hd]` token-major rows as head-major `[heads, n, hd]`.
fn head_major(x: &[f32], heads: usize, hd: usize) -> Vec<f32> {
    let n = x.len() / (heads * hd);
    let mut out = vec![0.0; x.len()];
    for i in 0..n {
        for h in 0..heads {
            let from = (i * heads + h) * hd;
            let to = (h * n + i) * hd;
            out[to..to + hd].copy_from_slice(&x[from..from + hd]);
        }
    }
    out
}

/// Generation's attention: `n` new queries at positions `start..start + n` over a cache of
/// `start + n` positions (in a larger buffer), against rows `start..` of the CPU's causal
/// attention over all `t` positions (what the trainer's `infer::attention` gives, bit for
/// bit) — prefill (start 0), a chunk after a prefix, one token after a long prefix; GQA, MQA
/// and MHA; head sizes with and without a flash kernel. The cache is filled as the decoder
/// fills it: a prefix from a token-major copy, the new rows from the RoPE kernel's head-major
/// layout; its rows read back are the keys and values exactly. Queries read head-major or
/// token-major give the same output bit for bit.
#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh"]
fn decode_attention_over_a_cache_matches_cpu_rows() {
    use steel_kernels::cuda::decode::{self, Queries, Shape};
    let gpu = gpu();
    let cases = [
        (4, 2, 16, 37, 0),
        (4, 2, 16, 37, 30),
        (8, 1, 64, 300, 299),
        (4, 4, 128, 150, 100),
        (2, 1, 200, 40, 7),
    ];
    for (c, &(hq, hkv, hd, t, start)) in cases.iter().enumerate() {
        let seed = 200 + 10 * c as u64;
        let n = t - start;
        let (q_row, kv_row) = (hq * hd, hkv * hd);
        let q = values(seed, t * q_row, 1.0);
        let k = values(seed + 1, t * kv_row, 1.0);
        let v = values(seed + 2, t * kv_row, 1.0);
        let shape = cpu::attention::Shape { t, hq, hkv, d: hd };
        let (mut want, mut probs) = (vec![0.0; q.len()], vec![0.0; hq * t * t]);
        cpu::attention::forward(&q, &k, &v, &shape, &vec![0; t], &mut want, &mut probs);
        let want = &want[start * q_row..];

        let dshape = Shape { hq, hkv, hd };
        let capacity = t + 5;
        let mut cache = Vec::new();
        for (x, sd) in [(&k, seed + 3), (&v, seed + 4)] {
            // Garbage past the sequence, which attention must not read.
            let layer = upload(&gpu, &values(sd, capacity * kv_row, 9.0), Dtype::Bf16);
            let prefix = upload(&gpu, &x[..start * kv_row], Dtype::Bf16);
            decode::append(
                &gpu,
                &dshape,
                prefix.addr(),
                kv_row,
                hd,
                start,
                layer.addr(),
                0,
            )
            .unwrap();
            let new = upload(
                &gpu,
                &head_major(&x[start * kv_row..], hkv, hd),
                Dtype::Bf16,
            );
            let (src, head_stride) = (new.addr(), n * hd);
            decode::append(&gpu, &dshape, src, hd, head_stride, n, layer.addr(), start).unwrap();
            let back = download(&gpu, &layer);
            assert_eq!(&back[..t * kv_row], &x[..], "case {c}: the cache's rows");
            cache.push(layer);
        }
        let (kc, vc) = (cache[0].addr(), cache[1].addr());
        let run = |queries: &Queries| {
            let out = zeros(&gpu, Dtype::Bf16, n * q_row);
            decode::attention(&gpu, &dshape, queries, kc, vc, start, out.addr()).unwrap();
            download(&gpu, &out)
        };
        let head_q = upload(&gpu, &head_major(&q[start * q_row..], hq, hd), Dtype::Bf16);
        let got = run(&Queries {
            addr: head_q.addr(),
            n,
            token_stride: hd,
            head_stride: n * hd,
        });
        assert_close(&format!("decode attention, case {c}"), &got, want, 1e-2);
        let token_q = upload(&gpu, &q[start * q_row..], Dtype::Bf16);
        let token_major_got = run(&Queries {
            addr: token_q.addr(),
            n,
            token_stride: q_row,
            head_stride: hd,
        });
        assert_eq!(token_major_got, got, "case {c}: the query layout");
    }
}
