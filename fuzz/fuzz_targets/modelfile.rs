//! Fuzz the Ollama Modelfile parser: any text parses or fails with an error; a parsed Modelfile
//! renders to text that parses back to the same rendering.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loraforge_ollama_client::Modelfile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = Modelfile::parse(text) else {
        return;
    };
    let rendered = parsed.to_string();
    let again = Modelfile::parse(&rendered).expect("a rendered Modelfile parses");
    assert_eq!(again.to_string(), rendered, "render → parse → render is stable");
});
