# Sourced by the producer scripts: the weir binary that runs `weir produce`.
# WEIR_BIN if set, else `weir` on PATH, else the release build the README's
# first command makes, else a debug build (under CARGO_TARGET_DIR, or the
# checkout's target/, wherever the script is run from).
weir_binary() {
    if [ -n "${WEIR_BIN:-}" ]; then
        echo "$WEIR_BIN"
        return
    fi
    if command -v weir >/dev/null 2>&1; then
        command -v weir
        return
    fi
    local root target build
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    target="${CARGO_TARGET_DIR:-$root/target}"
    for build in release debug; do
        if [ -x "$target/$build/weir" ]; then
            echo "$target/$build/weir"
            return
        fi
    done
    echo "no weir binary found: build one with 'cargo build --release' (or set WEIR_BIN)" >&2
    return 1
}
