//! The numeric core: `W' = round(f32(W) + s · (B·A))` on BLAS, row block by row block.
//!
//! Bit-exactness with PEFT (torch on CPU) needs the same operation order: the rank-`r` product
//! `B·A` accumulated in f32 by an sgemm (fused multiply-adds over `k = 0..r` in order), then a
//! separate multiply by `scaling` (rounded), then the add to `f32(W)` (rounded), then one rounding
//! to the output dtype. Rust never contracts `a * b + c` into an FMA, so the scalar loop below
//! keeps those roundings.

use cblas_sys::{cblas_sgemm, CblasNoTrans, CblasRowMajor, CblasTrans};
use loraforge_hf_model::{decode_f32, encode_f32, Dtype};

use crate::update::{Layout, LoraUpdate, RowBlock, Scratch};

extern "C" {
    fn openblas_set_num_threads(num_threads: std::os::raw::c_int);
}

/// Makes OpenBLAS single-threaded and stops its idle worker threads, once per process.
///
/// loraforge parallelises across row blocks with its own threads instead (measured faster for
/// the skinny rank-r products, and it avoids oversubscription). OpenBLAS's pthread build starts
/// its workers when the library loads, and each one busy-waits (`sched_yield` in a loop) for
/// about 0.1 s before sleeping: on 2 cores that takes one from the work at every process start.
/// Call this first thing in a program that links loraforge; the merge calls it too. Stopping
/// the workers is OpenBLAS's own fork-time shutdown, looked up at run time because only the
/// pthread build has it. Any later multi-threaded BLAS call (another library raising the
/// thread count) restarts them lazily, as after a fork.
pub fn single_threaded_blas() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        // SAFETY: a plain setter in libopenblas with no preconditions. It must come before the
        // shutdown: it restarts the workers when they are not running.
        unsafe { openblas_set_num_threads(1) };
        #[cfg(unix)]
        {
            // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only searches the
            // loaded objects.
            let symbol =
                unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"blas_thread_shutdown_".as_ptr()) };
            if !symbol.is_null() {
                // SAFETY: in OpenBLAS this symbol is `int blas_thread_shutdown_(void)`; it
                // joins the idle workers under OpenBLAS's own lock, and no BLAS call of ours is
                // running (this runs once, before the first).
                let shutdown: unsafe extern "C" fn() -> std::os::raw::c_int =
                    unsafe { std::mem::transmute(symbol) };
                unsafe { shutdown() };
            }
        }
    });
}

/// How `B·A` is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `cblas_sgemm` (OpenBLAS), used when its kernel accumulates like torch.
    Blas,
    /// loraforge's own kernel: per element, fused multiply-adds over `k = 0..r` in order
    /// (AVX2+FMA when the CPU has them).
    SequentialFma,
}

impl Backend {
    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Blas => "openblas-sgemm",
            Backend::SequentialFma => "sequential-fma",
        }
    }
}

/// Picks the backend: OpenBLAS's sgemm if, on this CPU and OpenBLAS core, it reproduces the
/// sequential-FMA accumulation torch uses (checked bit for bit on a probe with the ranks that
/// matter), else the own kernel. Some OpenBLAS cores (e.g. Haswell's sgemm) split the `k` loop
/// into partial sums, which is off by an ulp in places; SkylakeX's kernel is exact.
pub(crate) fn choose_backend() -> Backend {
    static CHOICE: std::sync::OnceLock<Backend> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        single_threaded_blas();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for &(rows, cols, rank) in &[
            (37usize, 70usize, 8usize),
            (33, 64, 16),
            (19, 96, 64),
            (8, 40, 33),
        ] {
            let a: Vec<f32> = (0..rank * cols).map(|_| next()).collect();
            let b: Vec<f32> = (0..rows * rank).map(|_| next()).collect();
            for layout in [Layout::Normal, Layout::Transposed] {
                let (r, c) = match layout {
                    Layout::Normal => (rows, cols),
                    Layout::Transposed => (cols, rows),
                };
                let u = LoraUpdate::plain(layout, rank, r, c, &a, &b);
                let mut x = vec![0f32; r * c];
                let mut y = vec![0f32; r * c];
                delta_rows_blas(&u, 0, r, &mut x);
                delta_rows_fma(&u, 0, r, &mut y);
                if x.iter().zip(&y).any(|(p, q)| p.to_bits() != q.to_bits()) {
                    return Backend::SequentialFma;
                }
            }
        }
        Backend::Blas
    })
}

/// Computes `Δ` for rows `row0 .. row0 + n_rows` into `delta` (`n_rows × cols`).
fn delta_rows(backend: Backend, u: &LoraUpdate<'_>, row0: usize, n_rows: usize, delta: &mut [f32]) {
    match backend {
        Backend::Blas => delta_rows_blas(u, row0, n_rows, delta),
        Backend::SequentialFma => delta_rows_fma(u, row0, n_rows, delta),
    }
}

/// `Δ[i, j] = Σ_k fma(B[i,k], A[k,j])` for `Normal`, `Σ_k fma(B[j,k], A[k,i])` for
/// `Transposed`, `k` ascending, accumulated in f32 with one rounding per step.
fn delta_rows_fma(u: &LoraUpdate<'_>, row0: usize, n_rows: usize, delta: &mut [f32]) {
    let cols = u.cols;
    match u.layout {
        Layout::Normal => {
            for (i, out) in delta.chunks_exact_mut(cols).take(n_rows).enumerate() {
                out.fill(0.0);
                let brow = &u.b[(row0 + i) * u.rank..(row0 + i + 1) * u.rank];
                for (k, &bk) in brow.iter().enumerate() {
                    axpy_fma(bk, &u.a[k * cols..(k + 1) * cols], out);
                }
            }
        }
        Layout::Transposed => {
            // Δ[i, j] = Σ_k B[j,k] · A[k, row0+i]; make Bᵀ rows contiguous once per block.
            let mut bt = vec![0f32; u.rank * cols];
            for j in 0..cols {
                for k in 0..u.rank {
                    bt[k * cols + j] = u.b[j * u.rank + k];
                }
            }
            for (i, out) in delta.chunks_exact_mut(cols).take(n_rows).enumerate() {
                out.fill(0.0);
                for k in 0..u.rank {
                    let ak = u.a[k * u.rows + row0 + i];
                    axpy_fma(ak, &bt[k * cols..(k + 1) * cols], out);
                }
            }
        }
    }
}

/// `y[j] = fma(alpha, x[j], y[j])`.
fn axpy_fma(alpha: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx")
        {
            // SAFETY: the CPU supports AVX and FMA (checked above).
            unsafe { axpy_fma_avx(alpha, x, y) };
            return;
        }
    }
    for (yj, &xj) in y.iter_mut().zip(x) {
        *yj = alpha.mul_add(xj, *yj);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,fma")]
unsafe fn axpy_fma_avx(alpha: f32, x: &[f32], y: &mut [f32]) {
    use std::arch::x86_64::{_mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_storeu_ps};
    let n = x.len().min(y.len());
    let full = n - n % 8;
    let va = _mm256_set1_ps(alpha);
    let mut j = 0;
    while j < full {
        // SAFETY: j + 8 <= n <= both lengths.
        unsafe {
            let vx = _mm256_loadu_ps(x.as_ptr().add(j));
            let vy = _mm256_loadu_ps(y.as_ptr().add(j));
            _mm256_storeu_ps(y.as_mut_ptr().add(j), _mm256_fmadd_ps(va, vx, vy));
        }
        j += 8;
    }
    for k in full..n {
        y[k] = alpha.mul_add(x[k], y[k]);
    }
}

/// `Δ` through `cblas_sgemm`.
fn delta_rows_blas(u: &LoraUpdate<'_>, row0: usize, n_rows: usize, delta: &mut [f32]) {
    let (m, n, k) = (n_rows as i32, u.cols as i32, u.rank as i32);
    // SAFETY: dimensions were checked against the slice lengths when the plan was built
    // (A and B shapes match W, `row0 + n_rows <= rows`); pointers stay inside their slices.
    unsafe {
        match u.layout {
            Layout::Normal => cblas_sgemm(
                CblasRowMajor,
                CblasNoTrans,
                CblasNoTrans,
                m,
                n,
                k,
                1.0,
                u.b.as_ptr().add(row0 * u.rank),
                k,
                u.a.as_ptr(),
                n,
                0.0,
                delta.as_mut_ptr(),
                n,
            ),
            Layout::Transposed => cblas_sgemm(
                CblasRowMajor,
                CblasTrans,
                CblasTrans,
                m,
                n,
                k,
                1.0,
                u.a.as_ptr().add(row0),
                u.rows as i32,
                u.b.as_ptr(),
                k,
                0.0,
                delta.as_mut_ptr(),
                n,
            ),
        }
    }
}

/// SIMD width of torch's CPU kernels for f32 when the fixtures were made (AVX2: 8 lanes; 16
/// lanes reproduced only 70–90% of the rows of e_llama_dora, 8 lanes all of them).
const TORCH_F32_LANES: usize = 8;

/// `torch.linalg.norm(row)` for a contiguous f32 row, in torch's operation order
/// (`aten/src/ATen/native/cpu/ReduceOpsKernel.cpp`, the vectorised last-dim L2 path): lane-wise
/// `acc += x * x` (separate multiply and add) over full vectors, lanes summed left to right, the
/// tail added element by element, then `sqrt` in f32.
pub(crate) fn torch_row_norm(row: &[f32]) -> f32 {
    let mut acc = [0f32; TORCH_F32_LANES];
    let full = row.len() - row.len() % TORCH_F32_LANES;
    for chunk in row[..full].chunks_exact(TORCH_F32_LANES) {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += x * x;
        }
    }
    let mut sum = acc[0];
    for &a in &acc[1..] {
        sum += a;
    }
    for &x in &row[full..] {
        sum += x * x;
    }
    sum.sqrt()
}

/// Rounds f32 values to `dtype` and back, in place.
pub(crate) fn round_trip(dtype: Dtype, vals: &mut [f32]) {
    let mut tmp = vec![0u8; vals.len() * dtype.size()];
    encode_f32(dtype, vals, &mut tmp);
    decode_f32(dtype, &tmp, vals);
}

/// Whether a value in `dtype` bits is inf or NaN.
fn non_finite(dtype: Dtype, bytes: &[u8]) -> Option<usize> {
    match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .position(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite()),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .position(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7F80 == 0x7F80),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .position(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7C00 == 0x7C00),
    }
}

/// Merges a block of rows the generic way: Δ into `scratch.delta`, then decode, add and encode
/// in separate passes. Returns the index (within the block) of the first non-finite output
/// element, if any. Every update shape goes through here; it is also the oracle the fused kernel
/// is tested against.
pub(crate) fn merge_rows_generic(
    backend: Backend,
    u: &LoraUpdate<'_>,
    block: RowBlock<'_>,
    scratch: &mut Scratch,
) -> Option<usize> {
    let RowBlock {
        row0,
        n_rows,
        w,
        w_dtype,
        out,
        out_dtype,
    } = block;
    let Scratch {
        delta: scratch_delta,
        w: scratch_w,
    } = scratch;
    let len = n_rows * u.cols;
    scratch_delta.resize(len, 0.0);
    scratch_w.resize(len, 0.0);
    delta_rows(backend, u, row0, n_rows, scratch_delta);
    decode_f32(w_dtype, w, scratch_w);
    if w_dtype != out_dtype {
        // The base as PEFT would see it when loaded in the output dtype.
        round_trip(out_dtype, scratch_w);
    }
    let s = u.scaling;
    match u.round_delta_to {
        None => {
            // Δ·s rounded, then + W rounded: two f32 roundings, as torch does (no FMA here).
            for (d, w) in scratch_delta.iter_mut().zip(scratch_w.iter()) {
                *d = *w + *d * s;
            }
        }
        Some(dt) => {
            for d in scratch_delta.iter_mut() {
                *d *= s;
            }
            round_trip(dt, scratch_delta);
            for (d, w) in scratch_delta.iter_mut().zip(scratch_w.iter()) {
                *d += *w;
            }
        }
    }
    if let Some(m) = u.magnitude {
        for (i, row) in scratch_delta.chunks_exact_mut(u.cols).enumerate() {
            let norm = torch_row_norm(row);
            let factor = m[row0 + i] / norm;
            for v in row.iter_mut() {
                *v *= factor;
            }
        }
    }
    encode_f32(out_dtype, scratch_delta, out);
    non_finite(out_dtype, out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `n` deterministic values in `[-scale/2, scale/2]` (xorshift32).
    pub(crate) fn values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32 - 0.5) * scale
            })
            .collect()
    }

    /// Scalar oracle: Σ_k fma in ascending k.
    fn oracle(u: &LoraUpdate<'_>) -> Vec<f32> {
        let mut out = vec![0f32; u.rows * u.cols];
        for i in 0..u.rows {
            for j in 0..u.cols {
                let mut acc = 0f32;
                for k in 0..u.rank {
                    let (b, a) = match u.layout {
                        Layout::Normal => (u.b[i * u.rank + k], u.a[k * u.cols + j]),
                        Layout::Transposed => (u.b[j * u.rank + k], u.a[k * u.rows + i]),
                    };
                    acc = b.mul_add(a, acc);
                }
                out[i * u.cols + j] = acc;
            }
        }
        out
    }

    #[test]
    fn fma_kernel_matches_the_scalar_oracle_bit_for_bit() {
        for &(rows, cols, rank) in &[(5usize, 13usize, 3usize), (17, 40, 16), (9, 7, 64)] {
            let a = values(rank * cols.max(rows), 7, 1.0);
            let b = values(rows.max(cols) * rank, 11, 1.0);
            for layout in [Layout::Normal, Layout::Transposed] {
                let u = LoraUpdate::plain(layout, rank, rows, cols, &a, &b);
                let want = oracle(&u);
                // whole tensor, and in row blocks starting mid-way
                let mut got = vec![0f32; rows * cols];
                delta_rows_fma(&u, 0, rows, &mut got);
                assert!(want
                    .iter()
                    .zip(&got)
                    .all(|(x, y)| x.to_bits() == y.to_bits()));
                let mut tail = vec![0f32; (rows - 2) * cols];
                delta_rows_fma(&u, 2, rows - 2, &mut tail);
                assert!(want[2 * cols..]
                    .iter()
                    .zip(&tail)
                    .all(|(x, y)| x.to_bits() == y.to_bits()));
            }
        }
    }

    #[test]
    fn blas_backend_agrees_within_rounding() {
        let (rows, cols, rank) = (33usize, 64usize, 16usize);
        let a = values(rank * cols, 3, 1.0);
        let b = values(rows * rank, 5, 1.0);
        let u = LoraUpdate::plain(Layout::Normal, rank, rows, cols, &a, &b);
        let want = oracle(&u);
        let mut got = vec![0f32; rows * cols];
        delta_rows_blas(&u, 0, rows, &mut got);
        for (x, y) in want.iter().zip(&got) {
            assert!((x - y).abs() <= 1e-5, "{x} vs {y}");
        }
    }
}
