"""llama.cpp loads loraforge's LoRA GGUF over loraforge's base GGUF, and the adapter does what the merge does.

Usage: check_lora.py BASE.gguf LORA.gguf MERGED.gguf IDS... [--scale-differs]

- BASE.gguf: `loraforge convert BASE_DIR BASE.gguf --outtype f32`
- LORA.gguf: `loraforge convert-lora ADAPTER_DIR LORA.gguf --base BASE_DIR`
- MERGED.gguf: `loraforge merge --dtype f32` of the same base + adapter, then `loraforge convert
  --outtype f32`

Checks, with llama.cpp through llama-cpp-python (`Llama(model_path=..., lora_path=...)`, which
calls `llama_adapter_lora_init` + `llama_set_adapters_lora`; the load fails if llama.cpp refuses
the file):

1. the adapter loads over the base and changes the logits: max |lora - base| > EFFECT_MIN;
2. the logits with the adapter applied at run time match the merged model's:
   max |lora - merged| <= TOL_ABS and <= TOL_REL * max |lora - base|.

With --scale-differs only check 1 runs (the difference is reported): for adapters whose scale a
LoRA GGUF cannot carry (use_rslora: PEFT scales by alpha/sqrt(r), llama.cpp by alpha/r;
rank_pattern/alpha_pattern: the file has one alpha), so llama.cpp's result is not the merge's.
`loraforge convert-lora` warns about those, as the reference script writes the same file.

Tolerances. Everything is f32: llama.cpp computes W·x + s·B·(A·x), the merged file holds
W + s·B·A rounded once to f32, so the two differ only by float reassociation (about 1e-6
relative per product, a few 1e-5 on logits of this size after two layers). TOL_ABS = 1e-3 leaves
room for that and is still two orders of magnitude below the adapter's effect on the fixture
(about 0.1, `check_max_abs_diff_merged_vs_base` in tests/fixtures/peft/a_llama_qv/case.json);
TOL_REL = 0.05 makes the same point whatever the effect's size: a merge or a LoRA file that lost
or doubled the scale (alpha/r), transposed A/B or skipped a layer moves the logits by a fraction
of the effect comparable to 1, not 5 %.

Needs only numpy and llama-cpp-python. Prints one JSON line and exits 0 on pass, 1 on fail.
"""

import json
import pathlib
import sys

import numpy as np

EFFECT_MIN = 1e-3
TOL_ABS = 1e-3
TOL_REL = 0.05


def logits(model: pathlib.Path, ids: list[int], lora: pathlib.Path | None = None) -> np.ndarray:
    """float32 logits [len(ids), n_vocab], ids evaluated as given in one batch, 1 thread."""
    from llama_cpp import Llama

    n = len(ids)
    llm = Llama(
        model_path=str(model),
        lora_path=str(lora) if lora else None,
        n_ctx=max(32, n),
        n_batch=max(32, n),
        n_threads=1,
        n_threads_batch=1,
        n_gpu_layers=0,
        logits_all=True,
        verbose=False,
    )
    try:
        llm.eval(ids)
        return np.array(llm.scores[:n, :], dtype=np.float32)
    finally:
        llm.close()


def main() -> int:
    if len(sys.argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    args = sys.argv[1:]
    scale_differs = "--scale-differs" in args
    args = [a for a in args if a != "--scale-differs"]
    base, lora, merged = (pathlib.Path(a) for a in args[:3])
    ids = [int(a) for a in args[3:]]

    import llama_cpp

    report: dict = {"llama_cpp_python": llama_cpp.__version__, "ids": ids}
    try:
        base_logits = logits(base, ids)
        lora_logits = logits(base, ids, lora)
        merged_logits = logits(merged, ids)
    except Exception as e:  # the load itself is the first check
        report.update(error=f"{type(e).__name__}: {e}", **{"pass": False})
        print(json.dumps(report))
        return 1

    effect = float(np.abs(lora_logits - base_logits).max())
    vs_merged = float(np.abs(lora_logits - merged_logits).max())
    merged_effect = float(np.abs(merged_logits - base_logits).max())
    checks = {"adapter_changes_logits": effect > EFFECT_MIN}
    if not scale_differs:
        checks["lora_matches_merged_abs"] = vs_merged <= TOL_ABS
        checks["lora_matches_merged_rel"] = vs_merged <= TOL_REL * effect
    report.update(
        n_vocab=int(base_logits.shape[1]),
        max_abs_lora_vs_base=effect,
        max_abs_merged_vs_base=merged_effect,
        max_abs_lora_vs_merged=vs_merged,
        scale_differs=scale_differs,
        tolerances={"effect_min": EFFECT_MIN, "abs": TOL_ABS, "rel": TOL_REL},
        checks=checks,
        **{"pass": all(checks.values())},
    )
    print(json.dumps(report))
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
