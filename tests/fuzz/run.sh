#!/usr/bin/env bash
# Runs every aoefs fuzz target for SECONDS seconds each (default 60).
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain
# (`rustup toolchain list`); without nightly it falls back to
# RUSTC_BOOTSTRAP=1 on the default toolchain.
# Working corpus: tests/fuzz/corpus/TARGET (seeded from tests/fuzz/seeds/TARGET).
# A crash input is copied to tests/fuzz/regressions/TARGET/ and the script
# exits 1; tests/fuzz_regressions.rs parses every file there.
set -u
secs=${1:-60}
shift || true
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(repr_parse identify_parse parse_dev_name split_iflist)
fi
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz not installed: cargo install cargo-fuzz" >&2; exit 2; }
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    tc=(+nightly)
else
    tc=()
    export RUSTC_BOOTSTRAP=1
fi
cd "$root"
status=0
for t in "${targets[@]}"; do
    mkdir -p "$here/corpus/$t" "$here/artifacts/$t" "$here/regressions/$t"
    cp -n "$here/seeds/$t/"* "$here/corpus/$t/" 2>/dev/null || true
    echo "=== $t: ${secs}s"
    cargo "${tc[@]}" fuzz run --fuzz-dir "$here" -O "$t" "$here/corpus/$t" -- \
        -max_total_time="$secs" -max_len=9100 -timeout=10 \
        -artifact_prefix="$here/artifacts/$t/" -print_final_stats=1 2>&1 | tail -n 25
    rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
        echo "!!! $t failed (exit $rc); crash inputs:" >&2
        for a in "$here/artifacts/$t/"*; do
            [ -f "$a" ] || continue
            cp -v "$a" "$here/regressions/$t/" >&2
        done
        status=1
    fi
done
exit $status
