#!/usr/bin/env python3
"""Check a GGUF written by `loraforge convert` with gguf-py and llama.cpp (llama-cpp-python).

Usage:
    check_gguf.py OUR.gguf REF.gguf IDS... [--tol 1e-6] [--hf-logits L.npy --hf-tol 1e-2]
    check_gguf.py OUR.gguf - IDS...        (no reference file, e.g. the demo model)

1. gguf-py's `GGUFReader` parses OUR.gguf (any structural error fails here) and, with a
   reference (`convert_hf_to_gguf.py`'s output for the same model and outtype), the tensor sets,
   types, shapes and data bytes and the metadata values are compared and reported.
2. llama.cpp loads OUR.gguf (and REF.gguf) on the CPU and evaluates IDS in one batch with
   logits for every position. OUR's logits must match REF's within --tol. Two files with the
   same tensor bytes and the same hyperparameters run the exact same arithmetic, so the expected
   difference is 0; the default 1e-6 only leaves room for nothing more than float32 noise.
3. With --hf-logits (transformers' float32 logits of the HF model the GGUF was made from, e.g.
   a fixture's expected/logits.npy or check_merge.py --save-logits), llama.cpp's logits of OUR
   are compared with them across tools. These cannot be equal: the GGUF holds 16-bit weights and
   ggml's CPU matmul rounds the activations to the weights' type as well. Measured on the
   fixtures (9 cases, ours and convert_hf_to_gguf.py's files give the same numbers): f16
   1.6e-4 to 3.7e-4, bf16 1.4e-3 to 2.4e-3 (demo model: f16 6.0e-4, bf16 4.3e-3), f32 1.1e-4.
   The default --hf-tol 1e-2 is over 2x the worst of these and still 5x below the smallest
   effect of the adapter on the same logits (0.052, case f), so a GGUF of the unmerged base,
   with a wrong or transposed tensor, a swapped norm or a wrong rope setting fails.
   The argmax at each position is reported too.

4. With --tokenizer-dir (the HF folder the GGUF was made from), llama.cpp's tokenizer built from
   OUR's vocabulary encodes a few test strings (or --text) and the ids are compared with
   transformers' `AutoTokenizer` and with REF's llama.cpp tokenizer. With a reference, OUR must
   tokenize exactly like REF (llama.cpp itself differs from transformers on some inputs, e.g.
   leading double spaces with SentencePiece, whatever the converter); without one, OUR must
   tokenize like transformers.

Prints one JSON line; exit status 0 = pass, 1 = fail.
"""

import argparse
import json
import pathlib
import sys

import gguf
import numpy as np

from gguf_common import compare_gguf, llama_logits, read_gguf, sha256, type_histogram


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ours", type=pathlib.Path)
    p.add_argument("ref", help="reference GGUF, or - for none")
    p.add_argument("ids", type=int, nargs="+")
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--hf-logits", type=pathlib.Path)
    p.add_argument("--hf-tol", type=float, default=1e-2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tokenizer-dir", type=pathlib.Path)
    p.add_argument("--text", action="append", help="text to tokenize (repeatable)")
    a = p.parse_args()

    import llama_cpp

    report: dict = {
        "tool": "gguf-py + llama-cpp-python",
        "gguf": getattr(gguf, "__version__", None) or _dist_version("gguf"),
        "llama_cpp_python": llama_cpp.__version__,
        "ours": str(a.ours),
        "sha256": sha256(a.ours),
    }
    ok = True

    ours = read_gguf(a.ours)
    report["arch"] = ours["meta"].get("general.architecture")
    report["tensor_types"] = type_histogram(ours)
    if a.ref != "-":
        ref_path = pathlib.Path(a.ref)
        report["ref"] = str(ref_path)
        report["same_file_bytes"] = sha256(ref_path) == report["sha256"]
        report["gguf_diff"] = compare_gguf(ours, read_gguf(ref_path))

    ours_logits = llama_logits(a.ours, a.ids, a.threads)
    report["shape"] = list(ours_logits.shape)
    report["finite"] = bool(np.isfinite(ours_logits).all())
    ok = ok and report["finite"]

    if a.ref != "-":
        ref_logits = llama_logits(pathlib.Path(a.ref), a.ids, a.threads)
        if ref_logits.shape != ours_logits.shape:
            report["error"] = f"logits shape {ours_logits.shape} != ref {ref_logits.shape}"
            ok = False
        else:
            d = float(np.abs(ours_logits - ref_logits).max())
            report.update(max_abs_diff_vs_ref=d, tol=a.tol)
            ok = ok and d <= a.tol

    if a.hf_logits is not None:
        hf = np.load(a.hf_logits).astype(np.float32)
        if hf.shape != ours_logits.shape:
            report["error_hf"] = f"logits shape {ours_logits.shape} != transformers {hf.shape}"
            ok = False
        else:
            d = float(np.abs(ours_logits - hf).max())
            report.update(
                max_abs_diff_vs_transformers=d,
                hf_tol=a.hf_tol,
                argmax_equal_vs_transformers=bool((ours_logits.argmax(-1) == hf.argmax(-1)).all()),
                max_abs_transformers_logit=float(np.abs(hf).max()),
            )
            ok = ok and d <= a.hf_tol

    if a.tokenizer_dir is not None:
        texts = a.text or TEXTS
        ref = None if a.ref == "-" else pathlib.Path(a.ref)
        report["tokenizer"] = check_tokenizer(a.ours, ref, a.tokenizer_dir, texts)
        key = "same_as_ref" if ref is not None else "same_as_transformers"
        ok = ok and all(t[key] for t in report["tokenizer"])

    report["pass"] = bool(ok)
    print(json.dumps(report, default=str))
    return 0 if ok else 1


# Plain words, digits, punctuation, runs of spaces, tabs/newlines, accents, an em dash.
TEXTS = [
    "The quick brown fox jumps over the lazy dog. 12345",
    "Hello,  world!\n\tIt's 2026: caf\u00e9 na\u00efve \u2014 1234567 tokens?? ok",
    "  leading spaces and UPPER lower MiXeD 3.14159",
]


def check_tokenizer(ours: pathlib.Path, ref, hf_dir: pathlib.Path, texts: list[str]) -> list[dict]:
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    def llama_ids(path):
        llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
        try:
            return [llm.tokenize(t.encode(), add_bos=True, special=False) for t in texts]
        finally:
            llm.close()

    hf = AutoTokenizer.from_pretrained(hf_dir)
    ours_ids = llama_ids(ours)
    ref_ids = llama_ids(ref) if ref is not None else [None] * len(texts)
    out = []
    for text, o, r in zip(texts, ours_ids, ref_ids):
        h = hf(text).input_ids
        row = {"text": text, "n_tokens": len(o), "same_as_transformers": o == h}
        if r is not None:
            row["same_as_ref"] = o == r
        if o != h:
            row["llama_cpp"], row["transformers"] = o, h
        out.append(row)
    return out


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
