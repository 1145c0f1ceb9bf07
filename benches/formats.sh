#!/usr/bin/env bash
# End-to-end replay speed per format, against `wc -l` on the same file in the same run.
#
#   bash benches/formats.sh            # 3 hours of log at 40 req/s per format (~430k lines)
#
# Writes bench-data/fmt-FORMAT.log once, then for each format runs hyperfine on
# `wc -l` and `skewtail replay --format FORMAT`, pinned to one core, and prints
# lines/s and the ratio replay/wc. Needs hyperfine and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin skewtail --example gen_log
mkdir -p bench-data
formats=(upstream ingress_nginx nginx_json haproxy aws_alb aws_elb envoy envoy_json traefik traefik_json caddy gcp_lb)
printf '| format | mean line (B) | lines | wc -l (ms) | replay (ms) | lines/s | ratio replay/wc |\n|---|---|---|---|---|---|---|\n'
for format in "${formats[@]}"; do
  log="bench-data/fmt-$format.log"
  [ -s "$log" ] || ./target/release/examples/gen_log --hours 3 --rate 40 --format "$format" "$log" 2>/dev/null
  hyperfine --warmup 1 --runs 5 -N --export-json /tmp/skewtail-fmt.json \
    "taskset -c 0 wc -l $log" \
    "taskset -c 0 ./target/release/skewtail replay --format $format $log" >/dev/null 2>&1
  python3 - "$log" "$format" <<'PY'
import json, os, sys
log, fmt = sys.argv[1], sys.argv[2]
wc, replay = (r["mean"] for r in json.load(open("/tmp/skewtail-fmt.json"))["results"])
lines = sum(1 for _ in open(log, "rb"))
size = os.path.getsize(log)
print(f"| {fmt} | {size // lines} | {lines} | {wc*1e3:.1f} | {replay*1e3:.0f} | {lines/replay/1e6:.2f} M | {replay/wc:.1f} |")
PY
done
