#!/usr/bin/env bash
# /metrics with 1,000 backends (BENCHMARKS.md §6): a sidecar reads a log over 1,000 backends,
# then one curl process fetches /healthz (the baseline: the same HTTP round trip, nothing to
# encode) and /metrics 200 times each over keep-alive, in turns.
set -euo pipefail
bin=${SKEWTAIL:-target/release/skewtail}
dir=$(mktemp -d)
port=${PORT:-19188}
trap 'kill $(cat "$dir/pid") 2>/dev/null; rm -rf "$dir"' EXIT
"$bin" simulate --format upstream --backends 1000 --duration 10m --rate 2000 --out "$dir/access.log"
printf '[[input]]\npath = "access.log"\nformat = "upstream"\npool = "api"\nstart_at = "beginning"\n' > "$dir/c.toml"
"$bin" run --config "$dir/c.toml" --state-dir "$dir/state" --listen "127.0.0.1:$port" 2>"$dir/err" &
echo $! > "$dir/pid"
sleep 8
echo "series: $(curl -s "127.0.0.1:$port/metrics" | grep -c '^skewtail_backend_requests_total{') backends, $(curl -s "127.0.0.1:$port/metrics" | wc -c) bytes"
for turn in 1 2 3; do
  for endpoint in healthz metrics; do
    urls=()
    for _ in $(seq 200); do urls+=(-o /dev/null "http://127.0.0.1:$port/$endpoint"); done
    curl -s "${urls[@]}" -w '%{time_total}\n' | python3 -c "
import statistics, sys
v = sorted(float(x) * 1000 for x in sys.stdin)
print(f'turn $turn $endpoint: mean {statistics.mean(v):.2f} ms, p50 {v[len(v)//2]:.2f}, p99 {v[int(len(v)*.99)]:.2f}, max {v[-1]:.2f}')"
  done
done
