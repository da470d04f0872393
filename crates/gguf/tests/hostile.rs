//! GGUF files a reference tool would misread (issue 11 #9, #14): a zero-sized dimension and
//! bytes after the data section are refused by the reader with a message naming the problem.
#![allow(clippy::unwrap_used)]

use std::io::Write;

use loraforge_gguf::{FormatError, GgufFile, GgufWriter, SourceError, TensorInfo};
use loraforge_quantize::GgmlType;

/// One F32 tensor `t` of 4 elements, written by our writer (same layout as llama.cpp's).
fn small_file(dims: Vec<u64>) -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set("a", 7u32);
    w.add_tensor(TensorInfo::new("t", GgmlType::F32, dims.clone()))
        .unwrap();
    let n: u64 = dims.iter().product();
    let mut out = Vec::new();
    w.write_to(&mut out, &mut |_: usize,
                               _: &TensorInfo,
                               out: &mut dyn Write|
     -> Result<(), SourceError> {
        out.write_all(&vec![0u8; n as usize * 4])?;
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn a_zero_sized_dimension_is_refused_at_read() {
    let good = small_file(vec![4, 2]);
    GgufFile::from_bytes(good.clone()).unwrap();
    // dims are at a fixed place after the name: find the two u64 dims (4, 2) and zero the 2
    let needle: Vec<u8> = [4u64.to_le_bytes(), 2u64.to_le_bytes()].concat();
    let at = good
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap();
    let mut bad = good.clone();
    bad[at + 8..at + 16].copy_from_slice(&0u64.to_le_bytes());
    let e = GgufFile::from_bytes(bad).unwrap_err();
    assert!(
        matches!(e, FormatError::ZeroDim { ref tensor, dim: 1, .. } if tensor == "t"),
        "{e}"
    );
    assert!(e.to_string().contains("zero-sized"), "{e}");
}

#[test]
fn bytes_after_the_data_section_are_refused() {
    let good = small_file(vec![4]);
    GgufFile::from_bytes(good.clone()).unwrap();
    let mut bad = good.clone();
    bad.extend_from_slice(b"garbage");
    let e = GgufFile::from_bytes(bad).unwrap_err();
    assert!(
        matches!(e, FormatError::TrailingBytes { extra: 7, .. }),
        "{e}"
    );
}

#[test]
fn the_writer_refuses_what_the_reader_refuses() {
    let mut w = GgufWriter::new();
    let e = w
        .add_tensor(TensorInfo::new("t", GgmlType::F32, vec![4, 0]))
        .unwrap_err();
    assert!(
        matches!(e, loraforge_gguf::WriteError::ZeroDim { .. }),
        "{e}"
    );
}
