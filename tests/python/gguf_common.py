"""Helpers shared by check_gguf.py and check_quant.py: read a GGUF with gguf-py, run it in llama.cpp.

Nothing here is specific to loraforge: it only uses the public APIs of gguf-py (`GGUFReader`)
and llama-cpp-python (`Llama`).
"""

import hashlib
import pathlib

import numpy as np
from gguf import GGUFReader, GGUFValueType


def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_gguf(path: pathlib.Path) -> dict:
    """Everything gguf-py's reader sees: metadata values and tensors (type, shape, data bytes).

    Raises whatever GGUFReader raises on a malformed file, which is the first thing tested.
    """
    reader = GGUFReader(path)
    meta = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue  # header fields (version, counts) that GGUFReader adds itself
        value = field.contents()
        if field.types and field.types[0] == GGUFValueType.ARRAY and len(value) > 64:
            # long arrays (vocab, merges, scores): compare by digest, keep reports short
            value = "sha256:" + hashlib.sha256(repr(value).encode()).hexdigest()[:16]
        meta[name] = value
    tensors = {}
    for t in reader.tensors:
        tensors[t.name] = {
            "type": t.tensor_type.name,
            "shape": [int(x) for x in t.shape],
            "bytes": bytes(np.asarray(t.data).tobytes()),
        }
    return {"meta": meta, "tensors": tensors}


def compare_gguf(ours: dict, ref: dict) -> dict:
    """Differences between two read_gguf() results, as a JSON-able summary."""
    names_o, names_r = set(ours["tensors"]), set(ref["tensors"])
    common = sorted(names_o & names_r)
    layout_diff = [
        n
        for n in common
        if (ours["tensors"][n]["type"], ours["tensors"][n]["shape"])
        != (ref["tensors"][n]["type"], ref["tensors"][n]["shape"])
    ]
    data_diff = [n for n in common if ours["tensors"][n]["bytes"] != ref["tensors"][n]["bytes"]]
    keys_o, keys_r = set(ours["meta"]), set(ref["meta"])
    meta_diff = {
        k: {"ours": ours["meta"][k], "ref": ref["meta"][k]}
        for k in sorted(keys_o & keys_r)
        if ours["meta"][k] != ref["meta"][k]
    }
    return {
        "n_tensors": [len(names_o), len(names_r)],
        "tensors_only_ours": sorted(names_o - names_r),
        "tensors_only_ref": sorted(names_r - names_o),
        "tensors_type_or_shape_differ": layout_diff,
        "tensors_data_differ": data_diff,
        "tensors_identical": len(common) - len(set(layout_diff) | set(data_diff)),
        "meta_only_ours": sorted(keys_o - keys_r),
        "meta_only_ref": sorted(keys_r - keys_o),
        "meta_values_differ": meta_diff,
    }


def type_histogram(info: dict) -> dict:
    hist: dict[str, int] = {}
    for t in info["tensors"].values():
        hist[t["type"]] = hist.get(t["type"], 0) + 1
    return dict(sorted(hist.items()))


def llama_logits(path: pathlib.Path, ids: list[int], threads: int = 2) -> np.ndarray:
    """float32 logits [1, len(ids), n_vocab] from llama.cpp (CPU) for one sequence of token ids.

    The ids are evaluated as given (no BOS added), in one batch, with logits kept for every
    position. A fixed thread count keeps the float reduction order the same between two files.
    """
    from llama_cpp import Llama  # imported here so gguf-only checks work without llama.cpp

    n = len(ids)
    llm = Llama(
        model_path=str(path),
        n_ctx=max(32, n),
        n_batch=max(32, n),
        n_threads=threads,
        n_threads_batch=threads,
        n_gpu_layers=0,
        logits_all=True,
        verbose=False,
    )
    try:
        llm.eval(ids)
        return np.array(llm.scores[:n, :], dtype=np.float32).reshape(1, n, -1)
    finally:
        llm.close()


def llama_greedy(path: pathlib.Path, ids: list[int], n_new: int, threads: int = 2) -> dict:
    """Greedy continuation of ids with llama.cpp's generate loop: new ids and their detokenized text."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(path),
        n_ctx=max(64, len(ids) + n_new + 1),
        n_threads=threads,
        n_threads_batch=threads,
        n_gpu_layers=0,
        verbose=False,
    )
    try:
        out = []
        for tok in llm.generate(ids, temp=0.0, top_k=1, reset=True):
            out.append(int(tok))
            if len(out) >= n_new:
                break
        text = llm.detokenize(out).decode("utf-8", errors="replace")
        return {"ids": out, "text": text, "n_vocab": llm.n_vocab()}
    finally:
        llm.close()
