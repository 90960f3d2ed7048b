#!/usr/bin/env bash
# Fails when a package imports against the direction in ARCHITECTURE
# section 8: command -> agent -> {rpc, fsm, runner}. The test harnesses
# under internal/ (bench, e2e, testcluster) drive the whole system and may
# import anything; the other internal packages are shared helpers and may
# not reach up into agent or command.
set -euo pipefail
mod=$(awk '/^module /{print $2; exit}' go.mod)
bad=$(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./... | awk -v m="$mod" '
  function top(p) { sub("^" m "/?", "", p); split(p, a, "/"); return a[1] }
  function sub2(p) { sub("^" m "/?", "", p); split(p, a, "/"); return a[2] }
  { from = top($1); harness = (from == "internal" && (sub2($1) == "bench" || sub2($1) == "e2e" || sub2($1) == "testcluster"))
    for (i = 2; i <= NF; i++) { if (index($i, m "/") != 1) continue; to = top($i)
      if ((from == "fsm" && (to == "agent" || to == "command" || to == "runner")) ||
          (from == "runner" && (to == "fsm" || to == "agent" || to == "command")) ||
          (from == "rpc" && (to == "command" || to == "agent")) ||
          (from == "agent" && to == "command") ||
          (from == "internal" && !harness && (to == "agent" || to == "command")))
        print $1 " imports " $i } }')
if [ -n "$bad" ]; then
  echo "import direction violations:"; echo "$bad"; exit 1
fi
