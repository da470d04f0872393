#!/usr/bin/env python3
"""Load a model folder written by `loraforge merge` with transformers and compare its logits.

Usage:
    check_merge.py MERGED_DIR CASE_DIR [--tol 1e-4]
    check_merge.py MERGED_DIR --ids 1 2 3 [--save-logits out.npy] [--peft BASE_DIR ADAPTER_DIR]

With CASE_DIR (a `tests/fixtures/peft/<case>` folder) the script runs the input ids from
`case.json` through `AutoModelForCausalLM` loaded from MERGED_DIR, the same way the fixture's
logits were made (float32 upcast of the saved weights, eager attention, no mask, batch 1), and
compares them with `expected/logits.npy` (PEFT's `merge_and_unload()` model). It also checks
that the result differs from `expected/base_logits.npy` by about as much as PEFT's does, so an
adapter that was silently not applied cannot pass.

Why the default tolerance of 1e-4: rounding PEFT's merged weights once to the base dtype already
moves the logits by up to ~8e-4 (`check_max_abs_diff_merged_vs_peft_unmerged_f32` in case.json)
and the adapter itself moves them by 0.05-0.33. A merge that is bit-identical to PEFT's gives
0 (or float32 reduction-order noise, ~1e-7, if torch splits the matmuls differently); a merge with
a wrong scaling, a missing module or a swapped transpose lands far above 1e-4.

Without CASE_DIR (e.g. the demo model, which has no reference), `--ids` are run, the logits must
be finite, and `--save-logits` writes them (float32 [1, n, vocab]) for check_gguf.py to compare
against llama.cpp. With `--peft BASE_DIR ADAPTER_DIR` the reference is made on the spot the
way the fixtures' were: PEFT merges the adapter into the base in the base's dtype
(`merge_and_unload()`), the result is upcast to float32 and its logits must match ours within
--tol, as above.

Prints one JSON line with the numbers; exit status 0 = pass, 1 = fail.
"""

import argparse
import json
import pathlib
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM


def run_logits(model_dir: pathlib.Path, ids: list[int]) -> np.ndarray:
    """float32 logits [1, len(ids), vocab] of the model in model_dir for one sequence."""
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor([ids], dtype=torch.long))
    return out.logits.float().numpy()


def peft_logits(base_dir: pathlib.Path, adapter_dir: pathlib.Path, ids: list[int]):
    """Logits (float32) of the base alone and of PEFT's merge of the adapter into it.

    The merge is done like the fixtures' expected/ models: base loaded in its own dtype,
    `PeftModel.from_pretrained(...).merge_and_unload()`, then upcast (exactly) to float32.
    """
    from peft import PeftModel

    x = torch.tensor([ids], dtype=torch.long)
    model = AutoModelForCausalLM.from_pretrained(base_dir, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        base = model.to(torch.float32)(x).logits.float().numpy()
    model = AutoModelForCausalLM.from_pretrained(base_dir, attn_implementation="eager")
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    merged = merged.to(torch.float32)
    merged.eval()
    with torch.no_grad():
        merged_logits = merged(x).logits.float().numpy()
    return base, merged_logits


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("merged_dir", type=pathlib.Path)
    p.add_argument("case_dir", type=pathlib.Path, nargs="?")
    p.add_argument("--tol", type=float, default=1e-4, help="max abs logit difference allowed")
    p.add_argument("--ids", type=int, nargs="+", help="token ids (when there is no CASE_DIR)")
    p.add_argument("--save-logits", type=pathlib.Path, help="write the logits here (.npy)")
    p.add_argument("--peft", type=pathlib.Path, nargs=2, metavar=("BASE_DIR", "ADAPTER_DIR"))
    a = p.parse_args()

    torch.manual_seed(0)
    report = {
        "tool": "transformers",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "model": str(a.merged_dir),
    }
    if a.case_dir is not None:
        case = json.loads((a.case_dir / "case.json").read_text())
        ids = case["input_ids"]
    elif a.ids:
        ids = a.ids
    else:
        p.error("give CASE_DIR or --ids")

    logits = run_logits(a.merged_dir, ids)
    if a.save_logits:
        np.save(a.save_logits, logits)
    report["shape"] = list(logits.shape)
    ok = bool(np.isfinite(logits).all())
    report["finite"] = ok

    if a.case_dir is not None:
        expected = np.load(a.case_dir / "expected" / "logits.npy")
        base = np.load(a.case_dir / "expected" / "base_logits.npy")
        report["case"] = a.case_dir.name
        if logits.shape != expected.shape:
            report["error"] = f"shape {logits.shape} != expected {expected.shape}"
            ok = False
        else:
            diff = float(np.abs(logits - expected).max())
            adapter_effect = float(np.abs(expected - base).max())
            ours_vs_base = float(np.abs(logits - base).max())
            report.update(
                max_abs_diff_vs_peft=diff,
                tol=a.tol,
                peft_vs_base=adapter_effect,
                ours_vs_base=ours_vs_base,
                argmax_equal=bool((logits.argmax(-1) == expected.argmax(-1)).all()),
            )
            ok = ok and diff <= a.tol and ours_vs_base > 0.5 * adapter_effect
    if a.peft is not None:
        import peft

        base, expected = peft_logits(a.peft[0], a.peft[1], ids)
        diff = float(np.abs(logits - expected).max())
        adapter_effect = float(np.abs(expected - base).max())
        ours_vs_base = float(np.abs(logits - base).max())
        report.update(
            peft=peft.__version__,
            max_abs_diff_vs_peft=diff,
            tol=a.tol,
            peft_vs_base=adapter_effect,
            ours_vs_base=ours_vs_base,
            argmax_equal=bool((logits.argmax(-1) == expected.argmax(-1)).all()),
        )
        ok = ok and diff <= a.tol and ours_vs_base > 0.5 * adapter_effect
    report["pass"] = ok
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
