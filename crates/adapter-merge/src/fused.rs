//! The fused fast path for the common LoRA merge: `W [out, in]`, `Δ = B·A` (no transpose, no
//! DoRA, no embedding rounding) and the output in the base's own dtype.
//!
//! The generic path makes four passes over each row block (Δ by axpy into memory, decode `W`,
//! add, encode). Here one pass does it all with Δ held in registers: for a group of 4 rows and
//! 16 columns, `acc = fma(B[i,k], A[k,j], acc)` for `k = 0..r` in order (the sgemm accumulation
//! torch uses, so the result is the same bits as the generic path), then `round(f32(W) + acc·s)`
//! with a separate multiply and add, written straight into the output bytes. `A` is reused across
//! the 4 rows from L1/L2, which is what makes this several times faster than the axpy form.
//!
//! Non-finite results are not encoded here: the block is reported back and the generic path
//! redoes it, so NaN bit patterns and the index in the error stay exactly as before.

use loraforge_hf_model::Dtype;

use crate::update::{Layout, LoraUpdate};

/// Whether the fused kernel can run this update on this CPU.
pub(crate) fn applicable(u: &LoraUpdate<'_>, w_dtype: Dtype, out_dtype: Dtype) -> bool {
    u.layout == Layout::Normal
        && u.round_delta_to.is_none()
        && u.magnitude.is_none()
        && w_dtype == out_dtype
        && cpu_supported(out_dtype)
}

#[cfg(target_arch = "x86_64")]
fn cpu_supported(dtype: Dtype) -> bool {
    let base =
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
    match dtype {
        Dtype::F16 => base && std::arch::is_x86_feature_detected!("f16c"),
        Dtype::F32 | Dtype::BF16 => base,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_supported(_dtype: Dtype) -> bool {
    false
}

/// Whether the fused path runs on this CPU at all (for the report).
pub(crate) fn available() -> bool {
    cpu_supported(Dtype::BF16)
}

/// Merges rows `row0 .. row0 + n_rows` of `u` (whose base rows are `w`, in `dtype`) into `out`
/// (same dtype). Returns `false` when the block must be redone by the generic path: a result was
/// not finite, or the slices do not have the lengths the update implies (never expected; the plan
/// checked the shapes).
pub(crate) fn merge_rows(
    u: &LoraUpdate<'_>,
    row0: usize,
    n_rows: usize,
    w: &[u8],
    dtype: Dtype,
    out: &mut [u8],
) -> bool {
    let bytes = n_rows * u.cols * dtype.size();
    let lengths_fit = u.a.len() >= u.rank * u.cols
        && u.b.len() >= (row0 + n_rows) * u.rank
        && w.len() == bytes
        && out.len() == bytes;
    if !lengths_fit || !cpu_supported(dtype) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let io = match dtype {
            Dtype::F32 => avx2::Io::F32,
            Dtype::BF16 => avx2::Io::Bf16,
            Dtype::F16 => avx2::Io::F16,
        };
        // SAFETY: the CPU features were checked by `cpu_supported`, and the slice lengths above
        // bound every pointer the kernel forms.
        unsafe { avx2::merge_rows(io, u, row0, n_rows, w, out) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use loraforge_hf_model::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};

    use crate::update::LoraUpdate;

    /// Element encoding of `W` and the output.
    #[derive(Clone, Copy)]
    pub(super) enum Io {
        F32,
        Bf16,
        F16,
    }

    impl Io {
        fn size(self) -> usize {
            match self {
                Io::F32 => 4,
                Io::Bf16 | Io::F16 => 2,
            }
        }
    }

    /// Rows handled together: 4 rows × 16 columns = 8 accumulators, plus two `A` vectors and a
    /// broadcast, fits the 16 ymm registers.
    const ROWS: usize = 4;

    /// # Safety
    /// AVX2, FMA (and F16C for `Io::F16`) must be available; `u.a` holds `rank × cols`, `u.b`
    /// at least `(row0 + n_rows) × rank`, `w` and `out` exactly `n_rows × cols` elements.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn merge_rows(
        io: Io,
        u: &LoraUpdate<'_>,
        row0: usize,
        n_rows: usize,
        w: &[u8],
        out: &mut [u8],
    ) -> bool {
        let row_bytes = u.cols * io.size();
        let mut non_finite = 0;
        let mut i = 0;
        while i + ROWS <= n_rows {
            // SAFETY: rows i..i+ROWS are inside the block (caller's contract).
            non_finite |= unsafe {
                row_group::<ROWS>(
                    io,
                    u,
                    row0 + i,
                    w.as_ptr().add(i * row_bytes),
                    out.as_mut_ptr().add(i * row_bytes),
                )
            };
            i += ROWS;
        }
        while i < n_rows {
            // SAFETY: as above, one row.
            non_finite |= unsafe {
                row_group::<1>(
                    io,
                    u,
                    row0 + i,
                    w.as_ptr().add(i * row_bytes),
                    out.as_mut_ptr().add(i * row_bytes),
                )
            };
            i += 1;
        }
        non_finite == 0
    }

    /// `R` rows starting at absolute row `row`; returns non-zero if any result is not finite.
    #[inline(always)]
    unsafe fn row_group<const R: usize>(
        io: Io,
        u: &LoraUpdate<'_>,
        row: usize,
        w: *const u8,
        out: *mut u8,
    ) -> i32 {
        let (cols, rank) = (u.cols, u.rank);
        let (a, b) = (u.a.as_ptr(), u.b.as_ptr());
        let size = io.size();
        // SAFETY (whole body): pointers stay within the slices per the caller's contract: `A`
        // rows are `cols` long, `B` rows `rank` long, and `j + 16 <= cols` in the vector loop.
        unsafe {
            let scale = _mm256_set1_ps(u.scaling);
            let mut non_finite = 0;
            let mut j = 0;
            while j + 16 <= cols {
                let mut lo = [_mm256_setzero_ps(); R];
                let mut hi = [_mm256_setzero_ps(); R];
                for k in 0..rank {
                    let ak = a.add(k * cols + j);
                    let a_lo = _mm256_loadu_ps(ak);
                    let a_hi = _mm256_loadu_ps(ak.add(8));
                    for r in 0..R {
                        let bk = _mm256_set1_ps(*b.add((row + r) * rank + k));
                        lo[r] = _mm256_fmadd_ps(bk, a_lo, lo[r]);
                        hi[r] = _mm256_fmadd_ps(bk, a_hi, hi[r]);
                    }
                }
                for r in 0..R {
                    let at = (r * cols + j) * size;
                    let w_lo = load8(io, w.add(at));
                    let w_hi = load8(io, w.add(at + 8 * size));
                    // Δ·s then + W: two roundings, as torch does (no FMA here).
                    let d_lo = _mm256_add_ps(w_lo, _mm256_mul_ps(lo[r], scale));
                    let d_hi = _mm256_add_ps(w_hi, _mm256_mul_ps(hi[r], scale));
                    non_finite |= store8(io, d_lo, out.add(at));
                    non_finite |= store8(io, d_hi, out.add(at + 8 * size));
                }
                j += 16;
            }
            // Column tail, element by element in the same operation order.
            for r in 0..R {
                for jj in j..cols {
                    let mut acc = 0f32;
                    for k in 0..rank {
                        acc = (*b.add((row + r) * rank + k)).mul_add(*a.add(k * cols + jj), acc);
                    }
                    let at = (r * cols + jj) * size;
                    let wv = load1(io, w.add(at));
                    let d = wv + acc * u.scaling;
                    if !store1(io, d, out.add(at)) {
                        non_finite |= 1;
                    }
                }
            }
            non_finite
        }
    }

    #[inline(always)]
    unsafe fn load8(io: Io, p: *const u8) -> __m256 {
        // SAFETY: the caller guarantees 8 readable elements at `p`.
        unsafe {
            match io {
                Io::F32 => _mm256_loadu_ps(p.cast()),
                Io::Bf16 => {
                    let h = _mm_loadu_si128(p.cast());
                    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                }
                Io::F16 => _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
            }
        }
    }

    /// Stores 8 values rounded to nearest-even; returns non-zero if any is not finite after
    /// rounding (those lanes are redone by the generic path).
    #[inline(always)]
    unsafe fn store8(io: Io, v: __m256, p: *mut u8) -> i32 {
        // SAFETY: the caller guarantees 8 writable elements at `p`.
        unsafe {
            match io {
                Io::F32 => {
                    _mm256_storeu_ps(p.cast(), v);
                    let exp = _mm256_set1_epi32(0x7F80_0000);
                    let e = _mm256_and_si256(_mm256_castps_si256(v), exp);
                    _mm256_movemask_epi8(_mm256_cmpeq_epi32(e, exp))
                }
                Io::Bf16 => {
                    let bits = _mm256_castps_si256(v);
                    let lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
                    let bias = _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF));
                    let rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, bias), 16);
                    let packed = _mm_packus_epi32(
                        _mm256_castsi256_si128(rounded),
                        _mm256_extracti128_si256(rounded, 1),
                    );
                    _mm_storeu_si128(p.cast(), packed);
                    // A NaN can wrap in the add above, so test the f32 too.
                    let exp = _mm256_set1_epi32(0x7F80);
                    let inf = _mm256_cmpeq_epi32(_mm256_and_si256(rounded, exp), exp);
                    let nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
                    _mm256_movemask_epi8(_mm256_or_si256(inf, nan))
                }
                Io::F16 => {
                    let h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
                    _mm_storeu_si128(p.cast(), h);
                    let exp = _mm_set1_epi16(0x7C00);
                    _mm_movemask_epi8(_mm_cmpeq_epi16(_mm_and_si128(h, exp), exp))
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn load1(io: Io, p: *const u8) -> f32 {
        // SAFETY: the caller guarantees one readable element at `p` (unaligned reads).
        unsafe {
            match io {
                Io::F32 => p.cast::<f32>().read_unaligned(),
                Io::Bf16 => bf16_to_f32(p.cast::<u16>().read_unaligned()),
                Io::F16 => f16_to_f32(p.cast::<u16>().read_unaligned()),
            }
        }
    }

    /// Stores one value; returns whether it is finite after rounding.
    #[inline(always)]
    unsafe fn store1(io: Io, v: f32, p: *mut u8) -> bool {
        // SAFETY: the caller guarantees one writable element at `p` (unaligned writes).
        unsafe {
            match io {
                Io::F32 => {
                    p.cast::<f32>().write_unaligned(v);
                    v.is_finite()
                }
                Io::Bf16 => {
                    let h = f32_to_bf16(v);
                    p.cast::<u16>().write_unaligned(h);
                    h & 0x7F80 != 0x7F80
                }
                Io::F16 => {
                    let h = f32_to_f16(v);
                    p.cast::<u16>().write_unaligned(h);
                    h & 0x7C00 != 0x7C00
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::tests::values;
    use crate::kernel::{merge_rows_generic, Backend};
    use crate::update::{RowBlock, Scratch};
    use loraforge_hf_model::encode_f32;
    use proptest::prelude::*;

    /// One block to merge both ways: a `rows`×`cols` weight of `dtype` with a rank-`rank` update,
    /// merged from row `row0` on; weights drawn at `w_scale`, A and B at `ab_scale`.
    struct Case {
        dtype: Dtype,
        rows: usize,
        cols: usize,
        rank: usize,
        row0: usize,
        w_scale: f32,
        ab_scale: f32,
        seed: u32,
    }

    impl Case {
        /// The usual case: the whole tensor, unit weights, A and B at 0.5.
        fn new(dtype: Dtype, rows: usize, cols: usize, rank: usize, seed: u32) -> Case {
            Case {
                dtype,
                rows,
                cols,
                rank,
                row0: 0,
                w_scale: 1.0,
                ab_scale: 0.5,
                seed,
            }
        }
    }

    /// Runs the fused and the generic path on the same block; returns (fused handled it, both
    /// outputs).
    fn both(case: Case) -> (bool, Vec<u8>, Vec<u8>) {
        let Case {
            dtype,
            rows,
            cols,
            rank,
            row0,
            w_scale,
            ab_scale,
            seed,
        } = case;
        let a = values(rank * cols, seed, ab_scale);
        let b = values(rows * rank, seed.wrapping_add(1), ab_scale);
        let w_vals = values(rows * cols, seed.wrapping_add(2), w_scale);
        let mut w = vec![0u8; rows * cols * dtype.size()];
        encode_f32(dtype, &w_vals, &mut w);
        let u = LoraUpdate {
            scaling: 0.7,
            ..LoraUpdate::plain(Layout::Normal, rank, rows, cols, &a, &b)
        };
        let n = rows - row0;
        let row_bytes = cols * dtype.size();
        let w_block = &w[row0 * row_bytes..];
        let mut fused = vec![0u8; n * row_bytes];
        let handled = merge_rows(&u, row0, n, w_block, dtype, &mut fused);
        let mut generic = vec![0u8; n * row_bytes];
        merge_rows_generic(
            Backend::SequentialFma,
            &u,
            RowBlock {
                row0,
                n_rows: n,
                w: w_block,
                w_dtype: dtype,
                out: &mut generic,
                out_dtype: dtype,
            },
            &mut Scratch::default(),
        );
        (handled, fused, generic)
    }

    #[test]
    fn fused_equals_generic_bit_for_bit_on_awkward_shapes() {
        if !available() {
            return;
        }
        for dtype in [Dtype::BF16, Dtype::F16, Dtype::F32] {
            // column tails (cols % 16 != 0), row tails (n % 4 != 0), block starting mid-tensor
            for &(rows, cols, rank, row0) in &[
                (9usize, 37usize, 16usize, 0usize),
                (13, 64, 8, 3),
                (4, 16, 1, 0),
                (7, 5, 3, 2),
                (8, 48, 64, 1),
            ] {
                let (handled, fused, generic) = both(Case {
                    row0,
                    ab_scale: 0.3,
                    ..Case::new(dtype, rows, cols, rank, 7)
                });
                assert!(handled, "{dtype:?} {rows}x{cols} r{rank}");
                assert_eq!(
                    fused, generic,
                    "{dtype:?} {rows}x{cols} r{rank} from {row0}"
                );
            }
        }
    }

    #[test]
    fn non_finite_results_are_left_to_the_generic_path() {
        if !available() {
            return;
        }
        // Products of ~1e40 overflow f32 itself: Δ is ±inf (or NaN) for every dtype.
        for dtype in [Dtype::F16, Dtype::BF16, Dtype::F32] {
            let (handled, _, generic) = both(Case {
                ab_scale: 1e20,
                ..Case::new(dtype, 6, 32, 4, 3)
            });
            assert!(!handled, "{dtype:?} overflow must be handed back");
            let exp: u32 = match dtype {
                Dtype::F16 => 0x7C00,
                Dtype::BF16 => 0x7F80,
                Dtype::F32 => 0x7F80_0000,
            };
            let any_non_finite = generic.chunks_exact(dtype.size()).any(|c| {
                let mut le = [0u8; 4];
                le[..c.len()].copy_from_slice(c);
                u32::from_le_bytes(le) & exp == exp
            });
            assert!(
                any_non_finite,
                "{dtype:?}: the generic path sees the overflow too"
            );
        }
        // Close to f16's largest value, adding Δ rounds past it: inf after rounding only.
        let (handled, _, _) = both(Case {
            w_scale: 2.0 * 65500.0,
            ab_scale: 300.0,
            ..Case::new(Dtype::F16, 6, 32, 4, 3)
        });
        assert!(!handled, "f16 rounding overflow must be handed back");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn fused_equals_generic_for_any_small_block(
            rows in 1usize..12,
            cols in 1usize..70,
            rank in 1usize..20,
            seed in any::<u32>(),
            w_scale in prop_oneof![Just(1e-3f32), Just(1.0f32), Just(100.0f32)],
            dtype in prop_oneof![Just(Dtype::BF16), Just(Dtype::F16), Just(Dtype::F32)],
        ) {
            prop_assume!(available());
            let (handled, fused, generic) = both(Case {
                w_scale,
                ..Case::new(dtype, rows, cols, rank, seed)
            });
            prop_assert!(handled);
            prop_assert_eq!(fused, generic);
        }
    }
}
