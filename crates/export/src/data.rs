//! Tensor data: reading from safetensors shards in bounded chunks, the Q/K permutation, the
//! GPT-2 transpose and Gemma's `norm + 1`, and element conversion exactly as the reference converter does it
//! (numpy/gguf-py: f32→f16 round-to-nearest-even, gguf-py `BF16.quantize_blocks`, gguf-py
//! `Q8_0`, all equal to ggml's reference conversions for finite values).

use loraforge_adapter_merge::MergedTensor;
use loraforge_hf_model::Dtype;
use loraforge_quantize::{bf16_to_fp32, fp16_to_fp32, fp32_to_bf16, fp32_to_fp16, GgmlType};
use memmap2::Mmap;

use crate::arch::Transform;
use crate::source::SrcTensor;

/// Elements per piece when streaming without a transform (1 Mi elements: 2 MiB of bf16, a
/// piece's f32 widening still close to the L2 cache).
const PIECE_ELEMENTS: usize = 1 << 20;
/// Elements per step inside a piece (the finiteness scan, Q8_0's f32 staging): a block that
/// stays in cache.
const STEP_ELEMENTS: usize = 1 << 16;

pub(crate) type DataError = Box<dyn std::error::Error + Send + Sync>;

/// Reads a source tensor's bytes from its shard's mapping, merged with an adapter's update when
/// the tensor has one (the merged model's bytes, in the base dtype, as `loraforge merge` writes
/// them). Mapped rather than read: `read` copies every byte through the kernel once more, which
/// cost a quarter of a one-pass export's CPU at 7B.
pub(crate) struct TensorReader<'a, 'm> {
    /// The tensor's shard, mapped.
    pub map: &'a Mmap,
    /// The tensor's merge, if the adapter changes it.
    pub merge: Option<&'a MergedTensor<'m>>,
    /// Holds the merged bytes.
    pub scratch: &'a mut Vec<u8>,
}

/// The bytes in `map` (the shard) of elements `first .. first + count` of `t`.
fn mapped<'a>(
    map: &'a Mmap,
    t: &SrcTensor,
    first: usize,
    count: usize,
) -> Result<&'a [u8], DataError> {
    let size = t.dtype.size();
    let start = usize::try_from(t.offset)?.checked_add(first * size);
    let end = start.and_then(|s| s.checked_add(count * size));
    match (start, end) {
        (Some(start), Some(end)) if end <= map.len() => Ok(&map[start..end]),
        _ => Err(format!(
            "tensor {}: its data ends past the end of its file ({} bytes): the file is \
                 truncated or was changed while it was read",
            t.name,
            map.len()
        )
        .into()),
    }
}

impl TensorReader<'_, '_> {
    /// Elements `first .. first + count` of `t` (whole rows when `t` is merged), as the merged
    /// model holds them: the mapped bytes themselves, or their merge in `scratch`.
    fn bytes(&mut self, t: &SrcTensor, first: usize, count: usize) -> Result<&[u8], DataError> {
        match self.merge {
            None => mapped(self.map, t, first, count),
            Some(merge) => {
                let base = mapped(self.map, t, first, count)?;
                self.scratch.resize(base.len(), 0);
                merge.merge(first, base, self.scratch)?;
                Ok(self.scratch)
            }
        }
    }

    /// Drops the mapped pages of elements `first .. first + count` of `t` from this process:
    /// a mapping read through would otherwise keep the whole model resident.
    fn release(&self, t: &SrcTensor, first: usize, count: usize) {
        let size = t.dtype.size();
        if let Ok(offset) = usize::try_from(t.offset) {
            let start = offset + first * size;
            loraforge_hf_model::release_mapped(self.map, start..start + count * size);
        }
    }
}

/// A part of a tensor that is read and converted on its own; a tensor's pieces, in order,
/// make its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Elements `first .. first + count`, whole rows (no transform).
    Rows {
        /// First element.
        first: usize,
        /// Elements.
        count: usize,
    },
    /// Head `h` of a Q/K permutation (the permutation never moves a row out of its head).
    Head(usize),
    /// The whole tensor (transpose, `+ 1`).
    Whole,
}

/// The pieces of tensor `t` under `transform`: whole rows of `row_len`, at most
/// [`PIECE_ELEMENTS`] elements (at least one row) when there is no transform.
pub(crate) fn pieces(
    t: &SrcTensor,
    transform: Transform,
    row_len: usize,
) -> Result<Vec<Piece>, DataError> {
    let n = usize::try_from(t.n_elements())?;
    let row_len = row_len.max(1);
    Ok(match transform {
        Transform::None => {
            let step = (PIECE_ELEMENTS / row_len).max(1) * row_len;
            (0..n)
                .step_by(step)
                .map(|first| Piece::Rows {
                    first,
                    count: step.min(n - first),
                })
                .collect()
        }
        Transform::Permute(n_head) => {
            let rows = t.shape.first().copied().unwrap_or(0);
            if n_head == 0 || rows % n_head != 0 || (rows / n_head) % 2 != 0 {
                return Err(format!(
                    "tensor {}: shape {:?} cannot be split into {n_head} heads of pairs",
                    t.name, t.shape
                )
                .into());
            }
            (0..n_head).map(Piece::Head).collect()
        }
        Transform::Transpose | Transform::AddOne => vec![Piece::Whole],
    })
}

/// The first output row of `piece` (for error messages).
pub(crate) fn first_row_of(
    t: &SrcTensor,
    transform: Transform,
    row_len: usize,
    piece: Piece,
) -> usize {
    let n = usize::try_from(t.n_elements()).unwrap_or(0);
    let first = match (piece, transform) {
        (Piece::Rows { first, .. }, _) => first,
        (Piece::Head(h), Transform::Permute(n_head)) => h * (n / n_head.max(1)),
        _ => 0,
    };
    first / row_len.max(1)
}

/// Reads piece `piece` of tensor `t` (one of [`pieces`]), applies `transform` and converts it
/// to `out_ty` into `dst`.
pub(crate) fn produce_piece(
    reader: &mut TensorReader<'_, '_>,
    t: &SrcTensor,
    transform: Transform,
    (out_ty, row_len): (GgmlType, usize),
    piece: Piece,
    dst: &mut Vec<u8>,
) -> Result<(), DataError> {
    with_piece(reader, t, transform, piece, |dtype, bytes| {
        convert(dtype, bytes, out_ty, row_len.max(1), dst)
    })
}

/// Reads piece `piece` of tensor `t`, applies `transform`, and hands the piece in `out_ty` to
/// `quantize`. When `out_ty` is the source's own format the piece goes as read (or as merged):
/// the conversion would copy every finite value unchanged, and `quantize` widens the values
/// and refuses NaN and infinity itself. Otherwise it is converted into `dst` first.
pub(crate) fn quantize_produced_piece<R>(
    reader: &mut TensorReader<'_, '_>,
    t: &SrcTensor,
    transform: Transform,
    (out_ty, row_len): (GgmlType, usize),
    piece: Piece,
    dst: &mut Vec<u8>,
    quantize: impl FnOnce(&[u8]) -> Result<R, DataError>,
) -> Result<R, DataError> {
    with_piece(reader, t, transform, piece, |dtype, bytes| {
        if is_same_format(dtype, out_ty) {
            quantize(bytes)
        } else {
            convert(dtype, bytes, out_ty, row_len.max(1), dst)?;
            quantize(dst)
        }
    })
}

/// Whether `out_ty` stores values exactly as `dtype` does, so that converting a finite value
/// leaves its bytes unchanged.
fn is_same_format(dtype: Dtype, out_ty: GgmlType) -> bool {
    cfg!(target_endian = "little")
        && matches!(
            (dtype, out_ty),
            (Dtype::F32, GgmlType::F32)
                | (Dtype::F16, GgmlType::F16)
                | (Dtype::BF16, GgmlType::BF16)
        )
}

/// Reads piece `piece` of tensor `t`, applies `transform`, and calls `use_piece` with the
/// resulting elements and their dtype.
fn with_piece<R>(
    reader: &mut TensorReader<'_, '_>,
    t: &SrcTensor,
    transform: Transform,
    piece: Piece,
    use_piece: impl FnOnce(Dtype, &[u8]) -> Result<R, DataError>,
) -> Result<R, DataError> {
    let esize = t.dtype.size();
    let n = usize::try_from(t.n_elements())?;
    match (transform, piece) {
        (Transform::None, Piece::Rows { first, count }) => {
            let out = use_piece(t.dtype, reader.bytes(t, first, count)?)?;
            reader.release(t, first, count);
            Ok(out)
        }
        (Transform::Permute(n_head), Piece::Head(h)) => {
            let rows = t.shape.first().copied().unwrap_or(0);
            let head_el = n / n_head.max(1);
            let mut head_shape = t.shape.clone();
            head_shape[0] = rows / n_head.max(1);
            let head = reader.bytes(t, h * head_el, head_el)?;
            let permuted = permute_rows(head, &head_shape, 1, esize)
                .ok_or_else(|| format!("tensor {}: cannot permute head {h}", t.name))?;
            reader.release(t, h * head_el, head_el);
            use_piece(t.dtype, &permuted)
        }
        (Transform::Transpose, Piece::Whole) => {
            let all = reader.bytes(t, 0, n)?;
            let [r, c] = t.shape[..] else {
                return Err(format!(
                    "tensor {}: transpose needs 2 dimensions, has {:?}",
                    t.name, t.shape
                )
                .into());
            };
            let mut tr = vec![0u8; all.len()];
            for i in 0..r {
                for j in 0..c {
                    let s = (i * c + j) * esize;
                    let d = (j * r + i) * esize;
                    tr[d..d + esize].copy_from_slice(&all[s..s + esize]);
                }
            }
            reader.release(t, 0, n);
            use_piece(t.dtype, &tr)
        }
        (Transform::AddOne, Piece::Whole) => {
            // Norm vectors: small, read whole.
            let plus_one = add_one(t.dtype, reader.bytes(t, 0, n)?);
            reader.release(t, 0, n);
            use_piece(Dtype::F32, &plus_one)
        }
        (transform, piece) => Err(format!(
            "tensor {}: piece {piece:?} does not belong to transform {transform:?}",
            t.name
        )
        .into()),
    }
}

/// `data_torch + 1` as the reference computes it (Gemma norms), as f32 bytes: bf16 tensors are
/// upcast to f32 before `modify_tensors`, so they and f32 tensors add in f32; an f16 tensor
/// stays f16 and torch rounds the f32 sum back to f16.
fn add_one(dtype: Dtype, src: &[u8]) -> Vec<u8> {
    let mut f = vec![0f32; src.len() / dtype.size()];
    to_f32(dtype, src, &mut f);
    f.iter()
        .map(|&x| match dtype {
            Dtype::F16 => fp16_to_fp32(fp32_to_fp16(x + 1.0)),
            Dtype::F32 | Dtype::BF16 => x + 1.0,
        })
        .flat_map(f32::to_le_bytes)
        .collect()
}

/// `LlamaModel.permute`: within each of `n_head` heads (rows = dim 0), output row
/// `2*i + j` is input row `j*(d/2) + i`. Works on raw elements of `esize` bytes.
pub(crate) fn permute_rows(
    data: &[u8],
    shape: &[usize],
    n_head: usize,
    esize: usize,
) -> Option<Vec<u8>> {
    let rows = *shape.first()?;
    let row_bytes = shape[1..].iter().product::<usize>().checked_mul(esize)?;
    if n_head == 0 || rows % n_head != 0 || !(rows / n_head).is_multiple_of(2) {
        return None;
    }
    let d = rows / n_head;
    let half = d / 2;
    let mut out = vec![0u8; data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let dst_row = h * d + 2 * i + j;
                let src_row = h * d + j * half + i;
                out[dst_row * row_bytes..(dst_row + 1) * row_bytes]
                    .copy_from_slice(data.get(src_row * row_bytes..(src_row + 1) * row_bytes)?);
            }
        }
    }
    Some(out)
}

fn to_f32(dtype: Dtype, src: &[u8], dst: &mut [f32]) {
    match dtype {
        Dtype::F32 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Dtype::F16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = fp16_to_fp32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        Dtype::BF16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = bf16_to_fp32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
    }
}

/// `src` and `dst` viewed as slices of `S` and `D`, when both are aligned for them.
fn typed<'a, S: bytemuck::Pod, D: bytemuck::Pod>(
    src: &'a [u8],
    dst: &'a mut [u8],
) -> Option<(&'a [S], &'a mut [D])> {
    let s = bytemuck::try_cast_slice(src).ok()?;
    Some((s, bytemuck::try_cast_slice_mut(dst).ok()?))
}

/// Typed fast paths (little-endian hosts, aligned buffers): plain loops over `u16`/`f32` that
/// the compiler vectorizes. Returns false when the caller must take the byte path.
fn convert_fast(dtype: Dtype, src: &[u8], out_ty: GgmlType, dst: &mut [u8]) -> bool {
    if cfg!(target_endian = "big") {
        return false;
    }
    match (dtype, out_ty) {
        (Dtype::BF16, GgmlType::F16) => {
            let Some((s, d)) = typed::<u16, u16>(src, dst) else {
                return false;
            };
            #[cfg(target_arch = "x86_64")]
            if f16c::available() {
                // SAFETY: AVX2 and F16C were detected.
                unsafe { f16c::bf16_to_f16(s, d) };
                return true;
            }
            for (o, &h) in d.iter_mut().zip(s) {
                *o = fp32_to_fp16(bf16_to_fp32(h));
            }
            true
        }
        (Dtype::F32, GgmlType::F16) => {
            let Some((s, d)) = typed::<f32, u16>(src, dst) else {
                return false;
            };
            #[cfg(target_arch = "x86_64")]
            if f16c::available() {
                // SAFETY: AVX2 and F16C were detected.
                unsafe { f16c::f32_to_f16(s, d) };
                return true;
            }
            for (o, &f) in d.iter_mut().zip(s) {
                *o = fp32_to_fp16(f);
            }
            true
        }
        (Dtype::BF16, GgmlType::BF16) => {
            // As `convert_elementwise`, on aligned words so that it vectorizes (a one-pass
            // export of a bf16 model runs every merged element through here).
            let Some((s, d)) = typed::<u16, u16>(src, dst) else {
                return false;
            };
            for (o, &h) in d.iter_mut().zip(s) {
                *o = if h & 0x7fff > 0x7f80 { h | 0x40 } else { h };
            }
            true
        }
        (Dtype::F32, GgmlType::BF16) => {
            let Some((s, d)) = typed::<f32, u16>(src, dst) else {
                return false;
            };
            for (o, &f) in d.iter_mut().zip(s) {
                *o = fp32_to_bf16(f);
            }
            true
        }
        (Dtype::BF16 | Dtype::F16, GgmlType::F32) => {
            let Some((s, d)) = typed::<u16, f32>(src, dst) else {
                return false;
            };
            if dtype == Dtype::BF16 {
                for (o, &h) in d.iter_mut().zip(s) {
                    *o = bf16_to_fp32(h);
                }
            } else {
                for (o, &h) in d.iter_mut().zip(s) {
                    *o = fp16_to_fp32(h);
                }
            }
            true
        }
        _ => false,
    }
}

/// f32/bf16 → f16 with the F16C instruction, 8 values at a time. `vcvtps2ph` rounds to nearest
/// even like [`fp32_to_fp16`] (subnormals and overflow included); NaNs differ in payload, so a
/// group of 8 holding a NaN takes the scalar function.
#[cfg(target_arch = "x86_64")]
mod f16c {
    use std::arch::x86_64::*;

    use loraforge_quantize::{bf16_to_fp32, fp32_to_fp16};

    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c")
    }

    /// # Safety
    /// AVX2 and F16C must be available.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn bf16_to_f16(src: &[u16], dst: &mut [u16]) {
        let n = src.len().min(dst.len());
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n, within both slices.
            unsafe {
                let h = _mm_loadu_si128(src.as_ptr().add(i).cast());
                let f = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
                store8(f, dst.as_mut_ptr().add(i));
            }
            i += 8;
        }
        for (o, &h) in dst[i..n].iter_mut().zip(&src[i..n]) {
            *o = fp32_to_fp16(bf16_to_fp32(h));
        }
    }

    /// # Safety
    /// AVX2 and F16C must be available.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn f32_to_f16(src: &[f32], dst: &mut [u16]) {
        let n = src.len().min(dst.len());
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n, within both slices.
            unsafe {
                store8(
                    _mm256_loadu_ps(src.as_ptr().add(i)),
                    dst.as_mut_ptr().add(i),
                )
            };
            i += 8;
        }
        for (o, &f) in dst[i..n].iter_mut().zip(&src[i..n]) {
            *o = fp32_to_fp16(f);
        }
    }

    #[inline(always)]
    unsafe fn store8(f: __m256, dst: *mut u16) {
        // SAFETY: the caller guarantees 8 writable values at `dst`.
        unsafe {
            if _mm256_movemask_ps(_mm256_cmp_ps(f, f, _CMP_UNORD_Q)) == 0 {
                let h = _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT);
                _mm_storeu_si128(dst.cast(), h);
            } else {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), f);
                for (k, v) in lanes.iter().enumerate() {
                    dst.add(k).write(fp32_to_fp16(*v));
                }
            }
        }
    }
}

/// Converts one element-wise chunk (`src` of `in_size`-byte elements) into `dst`.
fn convert_elementwise(dtype: Dtype, src: &[u8], out_ty: GgmlType, dst: &mut [u8]) {
    if convert_fast(dtype, src, out_ty, dst) {
        return;
    }
    match (dtype, out_ty) {
        (Dtype::F32, GgmlType::F32) | (Dtype::F16, GgmlType::F16) => dst.copy_from_slice(src),
        (Dtype::BF16, GgmlType::BF16) => {
            // bf16 -> f32 -> bf16 is the identity except that NaNs become quiet.
            for (o, b) in dst.chunks_exact_mut(2).zip(src.chunks_exact(2)) {
                let mut h = u16::from_le_bytes([b[0], b[1]]);
                if h & 0x7fff > 0x7f80 {
                    h |= 0x40;
                }
                o.copy_from_slice(&h.to_le_bytes());
            }
        }
        (_, GgmlType::F32) => {
            let step = dtype.size();
            for (o, b) in dst.chunks_exact_mut(4).zip(src.chunks_exact(step)) {
                let mut v = [0f32];
                to_f32(dtype, b, &mut v);
                o.copy_from_slice(&v[0].to_le_bytes());
            }
        }
        (_, GgmlType::F16) => {
            let step = dtype.size();
            for (o, b) in dst.chunks_exact_mut(2).zip(src.chunks_exact(step)) {
                let mut v = [0f32];
                to_f32(dtype, b, &mut v);
                o.copy_from_slice(&fp32_to_fp16(v[0]).to_le_bytes());
            }
        }
        (_, GgmlType::BF16) => {
            let step = dtype.size();
            for (o, b) in dst.chunks_exact_mut(2).zip(src.chunks_exact(step)) {
                let mut v = [0f32];
                to_f32(dtype, b, &mut v);
                o.copy_from_slice(&fp32_to_bf16(v[0]).to_le_bytes());
            }
        }
        // Only F32/F16/BF16 reach the element-wise path; block types go through quantize_rows.
        _ => {}
    }
}

/// Whether `src` (elements of `dtype`) holds a NaN or an infinity: a branch-free reduction over
/// the exponent bits that the compiler vectorizes, in cache-sized steps so that a bad piece
/// stops early.
fn any_non_finite(dtype: Dtype, src: &[u8]) -> bool {
    fn scan(dtype: Dtype, chunk: &[u8]) -> bool {
        match dtype {
            Dtype::F32 => chunk.chunks_exact(4).fold(false, |seen, b| {
                seen | (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x7f80_0000 == 0x7f80_0000)
            }),
            Dtype::F16 => chunk.chunks_exact(2).fold(false, |seen, b| {
                seen | (u16::from_le_bytes([b[0], b[1]]) & 0x7c00 == 0x7c00)
            }),
            Dtype::BF16 => chunk.chunks_exact(2).fold(false, |seen, b| {
                seen | (u16::from_le_bytes([b[0], b[1]]) & 0x7f80 == 0x7f80)
            }),
        }
    }
    src.chunks(STEP_ELEMENTS * dtype.size())
        .any(|c| scan(dtype, c))
}

/// Index of the first NaN or infinity in `src` (elements of `dtype`), read from the bits.
fn first_non_finite(dtype: Dtype, src: &[u8]) -> Option<usize> {
    match dtype {
        Dtype::F32 => src.chunks_exact(4).position(|b| {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x7f80_0000 == 0x7f80_0000
        }),
        Dtype::F16 => src
            .chunks_exact(2)
            .position(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7c00 == 0x7c00),
        Dtype::BF16 => src
            .chunks_exact(2)
            .position(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7f80 == 0x7f80),
    }
}

/// Converts `src` (elements of `dtype`, whole rows of `row_len`) to `out_ty` into `dst`.
///
/// NaN or infinite weights are refused: `convert_hf_to_gguf.py` copies them silently and the
/// file then fails `llama-quantize`'s row validation or gives garbage at inference.
pub(crate) fn convert(
    dtype: Dtype,
    src: &[u8],
    out_ty: GgmlType,
    row_len: usize,
    dst: &mut Vec<u8>,
) -> Result<(), DataError> {
    if let Some(i) = any_non_finite(dtype, src)
        .then(|| first_non_finite(dtype, src))
        .flatten()
    {
        return Err(format!(
            "the weights hold NaN or infinity (element {i} of a chunk of {} values): the model \
             is broken; loraforge does not export it",
            src.len() / dtype.size()
        )
        .into());
    }
    let n = src.len() / dtype.size();
    match out_ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
            let osize = out_ty.type_size();
            dst.resize(n * osize, 0);
            convert_elementwise(dtype, src, out_ty, dst);
        }
        GgmlType::Q8_0 => {
            let row_bytes = usize::try_from(
                out_ty
                    .row_size(row_len as u64)
                    .ok_or_else(|| format!("row length {row_len} is not a multiple of 32"))?,
            )?;
            let rows = n / row_len;
            dst.resize(rows * row_bytes, 0);
            let isize = dtype.size();
            let rows_per_step = (STEP_ELEMENTS / row_len).max(1);
            let mut f = Vec::new();
            for (s, d) in src
                .chunks(rows_per_step * row_len * isize)
                .zip(dst.chunks_mut(rows_per_step * row_bytes))
            {
                f.resize(s.len() / isize, 0f32);
                to_f32(dtype, s, &mut f);
                loraforge_quantize::quantize_rows(GgmlType::Q8_0, &f, row_len, d)
                    .map_err(|e| e.to_string())?;
            }
        }
        other => return Err(format!("the converter does not write {other} tensors").into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The workspace has two f32 → f16 conversions: ggml's branch-free one (quantize, used for
    /// GGUF) and torch's (hf-model, used for safetensors). Both round to nearest even and turn
    /// every NaN into `sign | 0x7E00`, so they are bit-identical; this checks it over a spread of
    /// bit patterns, every NaN class and the edges. (Their bf16 counterparts differ on NaN on
    /// purpose: gguf-py keeps the payload, torch writes the canonical `0x7FC0`.)
    #[test]
    fn non_finite_weights_are_refused_in_every_source_dtype() {
        let mut dst = Vec::new();
        for (dtype, bad) in [
            (Dtype::F32, f32::NAN.to_le_bytes().to_vec()),
            (Dtype::F32, f32::NEG_INFINITY.to_le_bytes().to_vec()),
            (Dtype::F16, 0x7c00u16.to_le_bytes().to_vec()),
            (Dtype::BF16, 0x7fc0u16.to_le_bytes().to_vec()),
        ] {
            let mut src = vec![0u8; dtype.size() * 3];
            src.extend_from_slice(&bad);
            let e = convert(dtype, &src, GgmlType::F16, 4, &mut dst).unwrap_err();
            assert!(e.to_string().contains("element 3"), "{e}");
            let finite = vec![0u8; dtype.size() * 4];
            convert(dtype, &finite, GgmlType::F16, 4, &mut dst).unwrap();
        }
    }

    /// The typed fast paths (aligned buffers) against the byte loops (the same buffers one
    /// byte off alignment), NaNs, infinities and subnormals included.
    #[test]
    fn typed_fast_paths_equal_the_byte_paths() {
        let words: Vec<u16> = (0..=u16::MAX)
            .step_by(7)
            .chain([
                0x7f80, 0x7fc0, 0x7f81, 0xff81, 0x7c00, 0x7c01, 0xfe00, 0x0001, 0x8001,
            ])
            .collect();
        for dtype in [Dtype::BF16, Dtype::F16, Dtype::F32] {
            let src: Vec<u8> = match dtype {
                Dtype::F32 => words
                    .iter()
                    .flat_map(|&w| (u32::from(w) << 16 | u32::from(w)).to_le_bytes())
                    .collect(),
                _ => words.iter().flat_map(|w| w.to_le_bytes()).collect(),
            };
            for out_ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
                let out_len = words.len() * if out_ty == GgmlType::F32 { 4 } else { 2 };
                // u32 storage: aligned for both u16 and f32 views.
                let mut src_store = vec![0u32; src.len() / 4 + 2];
                let mut dst_store = vec![0u32; out_len / 4 + 2];
                let src_bytes = bytemuck::cast_slice_mut::<u32, u8>(&mut src_store);
                let dst_bytes = bytemuck::cast_slice_mut::<u32, u8>(&mut dst_store);
                src_bytes[..src.len()].copy_from_slice(&src);
                let fast_dst = &mut dst_bytes[..out_len];
                if !convert_fast(dtype, &src_bytes[..src.len()], out_ty, fast_dst) {
                    continue;
                }
                let fast = fast_dst.to_vec();
                src_bytes[1..=src.len()].copy_from_slice(&src);
                let slow_dst = &mut dst_bytes[1..=out_len];
                convert_elementwise(dtype, &src_bytes[1..=src.len()], out_ty, slow_dst);
                assert!(
                    fast == slow_dst[..],
                    "{dtype:?} -> {out_ty:?}: the fast path differs from the byte path"
                );
            }
        }
    }

    #[test]
    fn ggml_and_torch_f32_to_f16_agree_bit_for_bit() {
        let edges = [
            0u32,
            0x8000_0000,
            0x7F80_0000,
            0xFF80_0000,
            0x7F80_0001,
            0xFFC0_0000,
            0x7FFF_FFFF,
            0x477F_E000,
            0x477F_F000,
            0x477F_EFFF,
            0x3300_0000,
            0x3300_0001,
            0x387F_E000,
        ];
        let spread = (0..=u32::MAX).step_by(65_521);
        for bits in edges.into_iter().chain(spread) {
            let f = f32::from_bits(bits);
            assert_eq!(
                fp32_to_fp16(f),
                loraforge_hf_model::f32_to_f16(f),
                "{bits:#010x}"
            );
        }
    }

    #[test]
    fn permute_interleaves_the_two_halves_of_each_head() {
        // 2 heads x 4 rows, 1 column, 1-byte elements: rows 0..8.
        let data: Vec<u8> = (0..8).collect();
        let out = permute_rows(&data, &[8, 1], 2, 1).unwrap();
        // head 0: rows [0,1,2,3] -> [0,2,1,3]; head 1: [4,5,6,7] -> [4,6,5,7]
        assert_eq!(out, vec![0, 2, 1, 3, 4, 6, 5, 7]);
        assert!(permute_rows(&data, &[8, 1], 3, 1).is_none());
    }

    #[test]
    fn f32_to_f16_rounds_to_nearest_even_like_numpy() {
        // 1 + 2^-11 is exactly between 1.0 and the next f16: ties to even (1.0).
        let x = 1.0f32 + f32::powi(2.0, -11);
        let mut dst = Vec::new();
        convert(Dtype::F32, &x.to_le_bytes(), GgmlType::F16, 1, &mut dst).unwrap();
        assert_eq!(dst, 0x3c00u16.to_le_bytes());
        // 70000 overflows f16 to +inf.
        convert(
            Dtype::F32,
            &70000f32.to_le_bytes(),
            GgmlType::F16,
            1,
            &mut dst,
        )
        .unwrap();
        assert_eq!(dst, 0x7c00u16.to_le_bytes());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn f16c_conversion_equals_the_scalar_one_for_every_bf16_value() {
        if !f16c::available() {
            return;
        }
        // All 65536 bf16 bit patterns (NaNs, infinities, subnormals, ties), in an order that
        // puts NaNs inside otherwise ordinary groups of 8; plus a tail of 5.
        let src: Vec<u16> = (0..=u16::MAX)
            .map(|i| i.rotate_left(3))
            .chain(0..5)
            .collect();
        let mut fast = vec![0u16; src.len()];
        // SAFETY: availability checked above.
        unsafe { f16c::bf16_to_f16(&src, &mut fast) };
        for (i, (&h, &got)) in src.iter().zip(&fast).enumerate() {
            assert_eq!(got, fp32_to_fp16(bf16_to_fp32(h)), "bf16 {h:#06x} at {i}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn f16c_conversion_equals_the_scalar_one_for_f32() {
        if !f16c::available() {
            return;
        }
        // Every f32 whose low 10 bits are one of a few patterns (so every exponent, the f16
        // rounding boundaries at bit 13 and the subnormal range are all covered), and specials.
        let mut src: Vec<f32> = Vec::new();
        for hi in 0u32..(1 << 22) {
            for low in [0u32, 0x1FF, 0x3FF] {
                src.push(f32::from_bits((hi << 10) | low));
            }
        }
        src.extend([
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            65504.0,
            65520.0,
            65519.996,
            6e-8,
            3e-8,
        ]);
        let mut fast = vec![0u16; src.len()];
        // SAFETY: availability checked above.
        unsafe { f16c::f32_to_f16(&src, &mut fast) };
        for (&f, &got) in src.iter().zip(&fast) {
            assert_eq!(got, fp32_to_fp16(f), "f32 {:#010x}", f.to_bits());
        }
    }

    #[test]
    fn add_one_rounds_in_the_tensor_precision() {
        // f16 0.0004882812 (0x1000) + 1 = 1.00048828 is not an f16: rounds to 1.0 in f16,
        // stays exact in f32.
        let h = 0x1000u16;
        let x = fp16_to_fp32(h);
        let out = add_one(Dtype::F16, &h.to_le_bytes());
        assert_eq!(out, 1.0f32.to_le_bytes());
        let out = add_one(Dtype::F32, &x.to_le_bytes());
        assert_eq!(out, (x + 1.0).to_le_bytes());
        // bf16 -0.5 (0xbf00) + 1 = 0.5.
        let out = add_one(Dtype::BF16, &0xbf00u16.to_le_bytes());
        assert_eq!(out, 0.5f32.to_le_bytes());
    }
}
