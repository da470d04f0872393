#!/usr/bin/env python3
"""Check a GGUF quantized by `loraforge quantize` against llama.cpp's own quantizer, and run it.

Usage:
    check_quant.py OUR_Q.gguf SRC.gguf TYPE IDS... [--gen 8] [--max-drift 1.0]

TYPE is q8_0, q4_K_M or q4_K_S; SRC.gguf is the F16/BF16/F32 file OUR_Q.gguf was made from.

1. llama.cpp quantizes SRC.gguf itself (`llama_model_quantize` through llama-cpp-python's
   bindings, default parameters, no imatrix) into a temporary file; gguf-py reads both files and
   their tensors (types, shapes, bytes) and metadata are compared and reported, along with
   whether the two files are byte-identical.
2. llama.cpp loads OUR_Q.gguf and llama.cpp's own quantized file and evaluates IDS; the logits
   must be equal (1e-6): equal tensors give equal arithmetic.
3. The quantization error against SRC.gguf's logits is reported (--max-drift is only a sanity
   bound: a 4-bit model of random tiny weights drifts, a broken one is off by far more or NaN),
   and a greedy continuation of IDS is generated and detokenized with OUR_Q.gguf.

Prints one JSON line; exit status 0 = pass, 1 = fail.
"""

import argparse
import json
import pathlib
import sys
import tempfile

import numpy as np

from gguf_common import compare_gguf, llama_greedy, llama_logits, read_gguf, sha256, type_histogram

FTYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q4_k_s": "LLAMA_FTYPE_MOSTLY_Q4_K_S"}


def llama_quantize(src: pathlib.Path, dst: pathlib.Path, file_type: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FTYPES[file_type.lower()])
    params.nthread = 1
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src}, {file_type}) returned {rc}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ours", type=pathlib.Path)
    p.add_argument("src", type=pathlib.Path)
    p.add_argument("file_type", choices=sorted(FTYPES, key=str) + ["q4_K_M", "q4_K_S"])
    p.add_argument("ids", type=int, nargs="+")
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--gen", type=int, default=8)
    p.add_argument("--max-drift", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()

    import llama_cpp

    report: dict = {"tool": "llama-cpp-python", "llama_cpp_python": llama_cpp.__version__, "ours": str(a.ours)}
    ours = read_gguf(a.ours)
    report["tensor_types"] = type_histogram(ours)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        theirs_path = pathlib.Path(tmp) / "llama-quantized.gguf"
        llama_quantize(a.src, theirs_path, a.file_type)
        report["same_file_bytes_as_llama_quantize"] = sha256(theirs_path) == sha256(a.ours)
        diff = compare_gguf(ours, read_gguf(theirs_path))
        report["gguf_diff_vs_llama_quantize"] = diff

        ours_logits = llama_logits(a.ours, a.ids, a.threads)
        theirs_logits = llama_logits(theirs_path, a.ids, a.threads)
    src_logits = llama_logits(a.src, a.ids, a.threads)

    finite = bool(np.isfinite(ours_logits).all())
    d_theirs = float(np.abs(ours_logits - theirs_logits).max())
    d_src = float(np.abs(ours_logits - src_logits).max())
    report.update(
        finite=finite,
        max_abs_diff_vs_llama_quantize=d_theirs,
        tol=a.tol,
        max_abs_drift_vs_src=d_src,
        argmax_equal_vs_src=bool((ours_logits.argmax(-1) == src_logits.argmax(-1)).all()),
        max_drift=a.max_drift,
    )
    ok = finite and d_theirs <= a.tol and d_src <= a.max_drift
    if a.gen > 0:
        report["greedy"] = llama_greedy(a.ours, a.ids, a.gen, a.threads)
    report["pass"] = bool(ok)
    print(json.dumps(report, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
