#!/usr/bin/env bash
# Fails when a package imports against the direction in ARCHITECTURE
# section 8: command -> agent -> {rpc, fsm, runner}.
set -euo pipefail
mod=$(awk '/^module /{print $2; exit}' go.mod)
bad=$(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./... | awk -v m="$mod" '
  function top(p) { sub("^" m "/?", "", p); split(p, a, "/"); return a[1] }
  { from = top($1)
    for (i = 2; i <= NF; i++) { if (index($i, m "/") != 1) continue; to = top($i)
      if ((from == "fsm" && (to == "agent" || to == "command" || to == "runner")) ||
          (from == "runner" && (to == "fsm" || to == "agent" || to == "command")) ||
          (from == "rpc" && (to == "command" || to == "agent")) ||
          (from == "agent" && to == "command") ||
          (from == "internal" && (to == "agent" || to == "command")))
        print $1 " imports " $i } }')
if [ -n "$bad" ]; then
  echo "import direction violations:"; echo "$bad"; exit 1
fi
