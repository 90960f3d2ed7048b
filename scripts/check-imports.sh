#!/usr/bin/env bash
# Fails when a package depends against the direction in ARCHITECTURE
# section 8: command -> agent -> {rpc/server, fsm, runner} -> rpc. The rules
# are on transitive dependencies (go list -deps, tests left out): a runner
# or a CLI that links rpc must not link the state machine, Raft or
# go-memdb through anything. The test harnesses under internal/ (bench,
# chaos, e2e, testcluster) drive the whole system and may import anything.
#
# A pattern ending in /... is that package and every package below it
# (as with go list); one without is that package alone. Patterns without a
# dot in their first element are inside this module.
set -euo pipefail
mod=$(awk '/^module /{print $2; exit}' go.mod)

# source patterns | patterns they must not reach
rules='
runner/...                 | fsm/... agent/... command/... rpc/server/... github.com/hashicorp/raft/... github.com/hashicorp/go-memdb/... github.com/hashicorp/raft-boltdb/...
runner/mask/...            | fsm/... agent/... command/... rpc rpc/... runner jobspec/... acl/... audit/... internal/... github.com/... golang.org/... google.golang.org/... connectrpc.com/... go.etcd.io/...
rpc rpc/outpostv1/...      | fsm/... agent/... command/... runner/... rpc/server/... github.com/hashicorp/raft/... github.com/hashicorp/go-memdb/... github.com/hashicorp/raft-boltdb/...
rpc/server/...             | agent/... command/... runner/...
jobspec/...                | agent/... command/... fsm/... rpc rpc/server/... runner/...
acl/...                    | agent/... command/... fsm/... rpc rpc/server/... runner/... github.com/hashicorp/raft/... github.com/hashicorp/go-memdb/...
fsm/...                    | agent/... command/... runner/... rpc/server/...
agent/...                  | command/...
audit/...                  | agent/... command/... fsm/... runner/... rpc/server/... github.com/hashicorp/raft/... github.com/hashicorp/go-memdb/...
internal/...               | agent/... command/...
internal/tlsutil/...       | agent/... command/... fsm/... rpc/server/... runner/... rpc rpc/outpostv1/...
'
harness='internal/bench/... internal/chaos/... internal/e2e/... internal/testcluster/...'

# Every package of the build, this module's and its dependencies', with
# its imports; the rules walk this graph.
graph=$(go list -deps -f '{{.ImportPath}} {{join .Imports " "}}' ./...)

bad=$(awk -v m="$mod" -v rules="$rules" -v harness="$harness" '
  function full(p,   e) { return (split(p, e, "/") && index(e[1], ".") == 0) ? m "/" p : p }
  # matches reports whether package p is what pattern pat names.
  function matches(p, pat,   base) {
    if (pat ~ /\/\.\.\.$/) { base = full(substr(pat, 1, length(pat) - 4)); return p == base || index(p, base "/") == 1 }
    return p == full(pat)
  }
  function anyOf(p, pats,   n, a, i) { n = split(pats, a, " "); for (i = 1; i <= n; i++) if (matches(p, a[i])) return a[i]; return "" }
  function short(p) { return index(p, m "/") == 1 ? substr(p, length(m) + 2) : (p == m ? "." : p) }
  function path(v,   s) { s = short(v); while (v in par) { v = par[v]; s = short(v) " -> " s }; return s }
  { pkg[NR] = $1; imp[$1] = ""; for (i = 2; i <= NF; i++) imp[$1] = imp[$1] " " $i }
  END {
    nr = split(rules, lines, "\n")
    for (k = 1; k <= NR; k++) {
      src = pkg[k]
      if (index(src, m "/") != 1 && src != m) continue
      if (anyOf(src, harness) != "") continue
      for (r = 1; r <= nr; r++) {
        if (split(lines[r], side, "|") != 2) continue
        if (anyOf(src, side[1]) == "") continue
        # Breadth first, so the path printed is a shortest one; a
        # forbidden package is not walked past, so what it pulls in is
        # not reported again.
        delete seen; delete par; delete q
        q[0] = src; head = 0; tail = 1; seen[src] = 1
        while (head < tail) {
          u = q[head++]; n = split(imp[u], a, " ")
          for (i = 1; i <= n; i++) {
            v = a[i]
            if (v in seen) continue
            seen[v] = 1; par[v] = u
            if ((f = anyOf(v, side[2])) != "") {
              sub(/ +$/, "", side[1]); sub(/^ +/, "", side[1])
              printf "%s reaches %s (rule: %s must not reach %s)\n    %s\n", short(src), short(v), side[1], f, path(v)
              continue
            }
            if (v in imp) q[tail++] = v
          }
        }
      }
    }
  }' <<<"$graph")

# command reaches the server only through agent: no file of it imports
# fsm or rpc/server itself (the `outpost agent` commands call agent).
direct=$(for f in command/*.go; do
  awk -v f="$f" -v m="$mod" '
    /^import \(/ { block = 1; next }
    block && /^\)/ { block = 0; next }
    /^(func|type|var|const) / { exit }
    (block || /^import /) && match($0, /"[^"]+"/) {
      p = substr($0, RSTART + 1, RLENGTH - 2)
      if (p == m "/fsm" || index(p, m "/fsm/") == 1 || p == m "/rpc/server" || index(p, m "/rpc/server/") == 1)
        printf "%s imports %s (rule: command reaches fsm and rpc/server only through agent)\n", f, p
    }' "$f"
done)

if [ -n "$bad$direct" ]; then
  echo "import direction violations (see scripts/check-imports.sh and each package's doc.go):"
  [ -z "$bad" ] || echo "$bad"
  [ -z "$direct" ] || echo "$direct"
  exit 1
fi
