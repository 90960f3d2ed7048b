#!/usr/bin/env bash
# Starts `outpost agent -dev`, runs the example job on it, and leaves the
# agent running in the foreground until Ctrl-C.
set -euo pipefail
bin=${1:-bin/outpost}
example=examples/hello/outpost.hcl

"$bin" agent -dev &
agent=$!
trap 'kill -INT $agent 2>/dev/null; wait $agent 2>/dev/null' EXIT INT TERM

for _ in $(seq 1 100); do
  "$bin" job list >/dev/null 2>&1 && break
  sleep 0.1
done

echo
echo "==> outpost job run -file $example hello"
"$bin" job run -file "$example" hello
echo
echo "==> The dev agent keeps running at http://127.0.0.1:7700. In another shell try:"
echo "      $bin job list"
echo "      $bin job run -file $example -var greeting=Hi -workspace staging hello"
echo "    Ctrl-C stops it."
wait $agent
