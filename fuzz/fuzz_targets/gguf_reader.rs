//! Fuzz the GGUF reader: any input must parse or fail with an error, never panic, never
//! allocate beyond the named caps; what parses must survive a write → read round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loraforge_gguf::{inspect, GgufFile, GgufWriter, InspectOptions, SourceError, TensorInfo};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    let _ = inspect(&file, &InspectOptions::default()).to_string();
    let mut w = GgufWriter::with_metadata(file.metadata().clone());
    for t in file.tensors() {
        w.add_tensor(t.info.clone()).expect("a parsed tensor is valid for the writer");
    }
    let mut out = Vec::new();
    let mut source =
        |i: usize, _: &TensorInfo, out: &mut dyn std::io::Write| -> Result<(), SourceError> {
            out.write_all(file.tensor_data(i))?;
            Ok(())
        };
    w.write_to(&mut out, &mut source).expect("a parsed file can be rewritten");
    let again = GgufFile::from_bytes(out).expect("a rewritten file parses");
    assert!(again.metadata().bitwise_eq(file.metadata()));
    assert_eq!(again.tensors().len(), file.tensors().len());
    for i in 0..file.tensors().len() {
        assert_eq!(again.tensor_data(i), file.tensor_data(i));
    }
});
