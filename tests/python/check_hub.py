"""Upload a folder to a Hub endpoint with huggingface_hub's own client, then download it back.

Used by crates/hub/tests/official_client.rs against the fake Hub (tests/hub-fake): the fake must
accept what the official client sends (create repo, preupload, LFS batch and transfers, verify,
commit NDJSON) and serve what it downloads (repo info, tree, resolve). Xet is disabled
(HF_HUB_DISABLE_XET=1) so the upload goes through Git LFS, the protocol loraforge speaks.

usage: check_hub.py ENDPOINT TOKEN REPO_ID FOLDER OUT_DIR

Prints one JSON line: {"commit": oid, "files": {path: sha256}, "pass": true} and exits 0 when the
downloaded files are byte-identical to FOLDER's, 1 otherwise.
"""

import hashlib
import json
import os
import sys

os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree(folder):
    out = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            if rel.startswith(".cache/"):
                continue
            out[rel] = sha256(path)
    return out


def main():
    endpoint, token, repo_id, folder, out_dir = sys.argv[1:6]
    os.environ["HF_ENDPOINT"] = endpoint
    os.environ["HF_HOME"] = os.path.join(out_dir, ".hf-home")
    from huggingface_hub import HfApi, snapshot_download
    import huggingface_hub

    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload folder using huggingface_hub")
    download = os.path.join(out_dir, "download")
    snapshot_download(repo_id, endpoint=endpoint, token=token, local_dir=download)
    sent = tree(folder)
    got = {k: v for k, v in tree(download).items() if k != ".gitattributes"}
    ok = sent == got
    print(json.dumps({
        "huggingface_hub": huggingface_hub.__version__,
        "commit": info.oid,
        "files": sent,
        "downloaded": got,
        "pass": ok,
    }))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
