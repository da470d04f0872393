#!/usr/bin/env bash
# One entry point for a fresh Debian machine with only the Rust toolchain:
#   ./dev.sh demo   installs system packages, builds, and runs `loraforge demo` end to end
#   ./dev.sh test   installs system packages (with chromium + chromium-driver for the browser
#                   test), then runs formatting, lints, every test and the documentation build
set -euo pipefail
cd "$(dirname "$0")"

install_system_packages() {
    # OpenBLAS backs the LoRA merge (blas-src / openblas-src with the `system` feature).
    # Chromium and its WebDriver run the web UI's browser test (crates/web/tests/browser.rs).
    local packages="libopenblas-dev pkg-config"
    if [ "${1:-}" = test ]; then packages="$packages chromium chromium-driver"; fi
    # shellcheck disable=SC2086
    if ! dpkg -s $packages >/dev/null 2>&1; then
        local sudo=""
        if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
        $sudo apt-get update -qq
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $packages
    fi
}

install_rust_components() {
    # fmt and clippy run in `test`; a minimal rustup profile lacks them.
    if command -v rustup >/dev/null 2>&1; then
        for component in rustfmt clippy; do
            if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
                rustup component add "$component"
            fi
        done
    fi
}

setup_hub_python() {
    # huggingface_hub's own client checks the fake Hub (crates/hub/tests/official_client.rs,
    # crates/cli/tests/hub_push.rs: the folders loraforge pushed).
    # A small venv outside the repo; about 20 s the first time, reused afterwards.
    local venv="${LORAFORGE_HUB_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/loraforge/venv-hub}"
    if ! "$venv/bin/python" -c "import huggingface_hub" >/dev/null 2>&1; then
        rm -rf "$venv"
        # Debian ships python3 without venv/ensurepip unless python3-venv is installed.
        if ! python3 -m venv "$venv" >/dev/null 2>&1; then
            local sudo=""
            if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
            $sudo apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3 python3-venv
            rm -rf "$venv"
            python3 -m venv "$venv"
        fi
        "$venv/bin/pip" install -q -r tests/python/requirements-hub.txt
    fi
    export LORAFORGE_TEST_HUB_PYTHON="$venv/bin/python"
}

case "${1:-}" in
    demo)
        install_system_packages
        shift
        cargo run --release --locked -p loraforge-cli --bin loraforge -- demo "$@"
        ;;
    test)
        install_system_packages test
        install_rust_components
        setup_hub_python
        cargo fmt --all -- --check
        cargo clippy --workspace --all-targets --locked -- -D warnings
        cargo test --workspace --locked
        # No broken intra-doc links (each crate's front door is its documentation).
        RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
        ;;
    *)
        echo "usage: ./dev.sh demo|test" >&2
        exit 2
        ;;
esac
