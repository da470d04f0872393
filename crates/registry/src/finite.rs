//! The check that a GGUF holds only finite numbers, made before it is uploaded to Ollama.
//!
//! From Ollama 0.30 the server rewrites every imported GGUF with `llama-quantize … COPY`, which
//! loads it with llama.cpp's tensor validation (`ggml_validate_row_data`): a NaN or an infinity
//! in a float tensor, or in the scale of a quantized block, fails the create after the whole
//! file was uploaded. The common cause is a BF16 model exported as F16, whose range ends at
//! 65504. Checking here costs one read of the file and says which tensor is at fault.

use std::path::Path;

use loraforge_gguf::GgufFile;
use loraforge_quantize::GgmlType;

use crate::error::{RegistryError, Result};

/// Block size in bytes and the byte offsets of the f16 scales that llama.cpp validates, for
/// the quantized types it checks by their scales.
fn block_scales(ty: GgmlType) -> Option<(usize, &'static [usize])> {
    match ty {
        // block_q8_0 { ggml_half d; int8_t qs[32]; }
        GgmlType::Q8_0 => Some((34, &[0])),
        // block_q4_K / block_q5_K { ggml_half d, dmin; … }
        GgmlType::Q4K => Some((144, &[0, 2])),
        GgmlType::Q5K => Some((176, &[0, 2])),
        // block_q6_K { ql[128]; qh[64]; int8_t scales[16]; ggml_half d; }
        GgmlType::Q6K => Some((210, &[208])),
        _ => None,
    }
}

fn f16_is_finite(bits: u16) -> bool {
    bits & 0x7c00 != 0x7c00
}

fn bf16_is_finite(bits: u16) -> bool {
    bits & 0x7f80 != 0x7f80
}

/// Bytes of a tensor checked between two releases of its mapped pages.
const CHECK_PIECE: usize = 8 << 20;

/// Whether `data` (whole values or blocks of `ty`) holds only finite values or block scales.
fn piece_is_finite(ty: GgmlType, data: &[u8]) -> bool {
    let u16s = || {
        data.chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
    };
    match ty {
        GgmlType::F32 => data
            .chunks_exact(4)
            .all(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite()),
        GgmlType::F16 => u16s().all(f16_is_finite),
        GgmlType::BF16 => u16s().all(bf16_is_finite),
        ty => match block_scales(ty) {
            Some((size, offsets)) => data.chunks_exact(size).all(|block| {
                offsets.iter().all(|&o| {
                    block
                        .get(o..o + 2)
                        .is_some_and(|b| f16_is_finite(u16::from_le_bytes([b[0], b[1]])))
                })
            }),
            None => true,
        },
    }
}

/// Fails with [`RegistryError::BadInput`] naming the first tensor that holds a NaN or an
/// infinity (F32, F16 and BF16 values; the scales of Q8_0, Q4_K, Q5_K and Q6_K blocks).
pub(crate) fn check_finite(path: &Path) -> Result<()> {
    let file = GgufFile::open(path).map_err(|e| RegistryError::BadInput {
        path: path.to_owned(),
        problem: format!("cannot read the GGUF to check its values: {e}"),
    })?;
    file.advise_sequential();
    for (i, tensor) in file.tensors().iter().enumerate() {
        let data = file.tensor_data(i);
        let ty = tensor.info.ty;
        // Scanned a few MiB at a time, each piece's pages dropped after it is read: the mapped
        // file would otherwise stay resident and count in this process's RSS (GBs at 7B).
        let unit = match ty {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            ty => block_scales(ty).map_or(data.len().max(1), |(size, _)| size),
        };
        let piece_len = (CHECK_PIECE / unit).max(1) * unit;
        let finite = data.chunks(piece_len).enumerate().all(|(p, piece)| {
            let start = (p * piece_len) as u64;
            let finite = piece_is_finite(ty, piece);
            file.release_tensor_range(i, start..start + piece.len() as u64);
            finite
        });
        if !finite {
            return Err(RegistryError::BadInput {
                path: path.to_owned(),
                problem: format!(
                    "tensor '{}' ({:?}) holds NaN or infinite values; Ollama (0.30 and newer) \
                     refuses such a model after the upload. A BF16 model exported as F16 \
                     overflows: deploy with no_quantization from a bf16 save, or check the merge",
                    tensor.info.name, tensor.info.ty
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use loraforge_gguf::{GgufWriter, SourceError, TensorInfo};

    /// Writes a GGUF with one finite F32 tensor and one tensor of `ty` holding `data`.
    fn gguf_with(dir: &Path, ty: GgmlType, elements: u64, data: Vec<u8>) -> std::path::PathBuf {
        let mut w = GgufWriter::new();
        w.set("general.architecture", "llama");
        w.add_tensor(TensorInfo::new(
            "output_norm.weight",
            GgmlType::F32,
            vec![2],
        ))
        .unwrap();
        w.add_tensor(TensorInfo::new("blk.0.attn_q.weight", ty, vec![elements]))
            .unwrap();
        let mut bytes = Vec::new();
        w.write_to(&mut bytes, &mut |i: usize,
                                     _t: &TensorInfo,
                                     out: &mut dyn std::io::Write|
         -> std::result::Result<
            (),
            SourceError,
        > {
            match i {
                0 => out.write_all(&[0, 0, 128, 63, 0, 0, 0, 64])?,
                _ => out.write_all(&data)?,
            }
            Ok(())
        })
        .unwrap();
        let path = dir.join("model.gguf");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn non_finite_tensors_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f16 = |bits: [u16; 4]| {
            bits.iter()
                .flat_map(|b| b.to_le_bytes())
                .collect::<Vec<u8>>()
        };
        let ok = gguf_with(
            dir.path(),
            GgmlType::F16,
            4,
            f16([0x3c00, 0x7bff, 0xfbff, 0]),
        );
        check_finite(&ok).unwrap();
        // 65504 overflowed to +inf: the BF16-exported-as-F16 case.
        let inf = gguf_with(dir.path(), GgmlType::F16, 4, f16([0x3c00, 0x7c00, 0, 0]));
        let err = check_finite(&inf).unwrap_err();
        assert!(err.to_string().contains("blk.0.attn_q.weight"), "{err}");
        assert!(err.is_user_error(), "{err:?}");
        let nan = gguf_with(dir.path(), GgmlType::BF16, 4, f16([0x3f80, 0x7fc0, 0, 0]));
        assert!(check_finite(&nan).is_err());
        let f32_nan: Vec<u8> = [1.0f32, f32::NAN]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert!(check_finite(&gguf_with(dir.path(), GgmlType::F32, 2, f32_nan)).is_err());
        // A Q8_0 block (f16 scale + 32 int8) whose scale is NaN.
        let mut block = vec![0u8; 34];
        block[..2].copy_from_slice(&0x7e00u16.to_le_bytes());
        assert!(check_finite(&gguf_with(dir.path(), GgmlType::Q8_0, 32, block)).is_err());
    }

    #[test]
    fn values_past_the_first_piece_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        // Q6_K blocks (210 bytes) do not divide the piece length: the piece must still end on
        // a block boundary, or the scale of the block at the cut would be read from the
        // wrong bytes. Every scale here is finite but the one in the last block.
        let blocks = CHECK_PIECE / 210 * 2 + 3;
        let mut data = vec![0u8; blocks * 210];
        for block in data.chunks_exact_mut(210) {
            block[208..].copy_from_slice(&0x3c00u16.to_le_bytes());
            block[..208].fill(0x7c);
        }
        let ok = gguf_with(
            dir.path(),
            GgmlType::Q6K,
            (blocks * 256) as u64,
            data.clone(),
        );
        check_finite(&ok).unwrap();
        let last = data.len() - 2;
        data[last..].copy_from_slice(&0x7c00u16.to_le_bytes());
        let bad = gguf_with(dir.path(), GgmlType::Q6K, (blocks * 256) as u64, data);
        let err = check_finite(&bad).unwrap_err();
        assert!(err.to_string().contains("blk.0.attn_q.weight"), "{err}");
    }

    #[test]
    fn half_precision_specials() {
        assert!(f16_is_finite(0x7bff)); // 65504
        assert!(!f16_is_finite(0x7c00)); // +inf
        assert!(!f16_is_finite(0xfe00)); // NaN
        assert!(bf16_is_finite(0x7f7f));
        assert!(!bf16_is_finite(0x7f80));
        assert!(!bf16_is_finite(0xffc1));
    }
}
