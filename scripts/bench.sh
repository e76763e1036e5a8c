#!/usr/bin/env bash
# Runs the pipeline benchmarks (benches/pipeline.rs) in an optimized build and prints their table.
#   scripts/bench.sh                 all five
#   scripts/bench.sh routing 4       some, by name (routing, dedup, memory, pacing, e2e) or number
# The end-to-end benchmark (5) starts or reuses the loopback control plane through the test
# harness (scripts/control-plane.sh); when it cannot, it prints why it was skipped.
# Benchmarks print numbers; they assert only correctness (one page per storm, no burst).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench pipeline -- "$@"
