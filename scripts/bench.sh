#!/usr/bin/env bash
# Runs the benchmarks in an optimized build (cargo's bench profile) and prints their tables.
#   scripts/bench.sh                 all: benches/pipeline.rs (five), benches/storm.rs,
#                                    benches/memory.rs, then benches/scale.rs
#   scripts/bench.sh routing 4       some pipeline ones, by name (routing, dedup, memory, pacing,
#                                    e2e) or number
#   scripts/bench.sh rss             only benches/memory.rs: RSS of the real `alertcall run`
#                                    process (built by cargo for the bench) around two
#                                    5,000-alert webhook bodies, about 45 s
#   scripts/bench.sh storm           only benches/storm.rs: pages timed during an Event storm
#                                    of >= 500 Events/s, and quiet, as multiples of one Event
#                                    create round trip of the same run, about 1 min
#   scripts/bench.sh scale           only benches/scale.rs: RSS of the real `alertcall run`
#                                    process cluster-wide over 1,000 CallPolicies, 1,000
#                                    AlertRoutes, 10,000 Events and 5,000 Pods, at idle, during
#                                    and after an Event storm of >= 500 Events/s, and around
#                                    the hostile webhook bodies, about 3 min
# The end-to-end (5), storm, rss and scale benchmarks start or reuse the loopback control plane
# through the test harness (scripts/control-plane.sh); when they cannot, they print why they were
# skipped.
# Benchmarks print numbers; they assert only correctness (one page per storm, no burst).
set -euo pipefail
cd "$(dirname "$0")/.."
pipeline=()
rss=0
storm=0
scale=0
for arg in "$@"; do
  case "$arg" in
    rss) rss=1 ;;
    storm) storm=1 ;;
    scale) scale=1 ;;
    *) pipeline+=("$arg") ;;
  esac
done
if [ "$#" -eq 0 ] || [ "${#pipeline[@]}" -gt 0 ]; then
  cargo bench --bench pipeline -- "${pipeline[@]}"
fi
if [ "$#" -eq 0 ] || [ "$storm" = 1 ]; then
  cargo bench --bench storm
fi
if [ "$#" -eq 0 ] || [ "$rss" = 1 ]; then
  cargo bench --bench memory
fi
if [ "$#" -eq 0 ] || [ "$scale" = 1 ]; then
  cargo bench --bench scale
fi
