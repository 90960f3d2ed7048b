package project

import (
	"errors"
	"strings"
	"testing"

	"github.com/outpost-run/outpost/internal/validate"
)

// FuzzParse feeds arbitrary bytes to Parse and resolves every job of what
// parses. Nothing may panic; every failure must be an *Error; and a job that
// resolves must satisfy the invariants executors rely on. The committed
// corpus lives in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`project = "web"
job "build" {
  step "make" { command = ["make", "build"] }
}`))
	f.Add([]byte(`project = "web"
variable "env" { default = "dev" }
runner { profile = "${var.env}-linux" }
job "deploy" {
  runner { profile = "${workspace}-deploy" }
  env = { A = var.env }
  step "ship" { script = "./ship.sh ${var.env} ${job} ${project}" }
}`))
	f.Add([]byte(`project = "web"
job "a" {
  step "s" {
    command = ["x"]
    script  = "y"
  }
}`))
	f.Add([]byte(`project = "web"
variable "n" {}
job "a" {
  retry {
    attempts = 2
    delay    = "1s"
    backoff  = 1.5
  }
  step "s" { command = [for x in [var.n, 1, true] : "${x}"] }
}`))

	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := Parse("fuzz.hcl", src)
		if err != nil {
			checkError(t, err)
			return
		}
		if len(p.Jobs) == 0 {
			t.Fatal("Parse succeeded without jobs")
		}
		// Resolve each job twice: with no inputs (required variables make
		// that fail) and with every variable set, which reaches evaluation.
		all := map[string]string{}
		for _, v := range p.Variables {
			all[v.Name] = "x"
		}
		for _, name := range p.JobNames() {
			for _, vars := range []map[string]string{nil, all} {
				r, err := p.Resolve(name, vars, "")
				if err != nil {
					checkError(t, err)
					continue
				}
				checkResolved(t, r)
			}
		}
	})
}

func checkError(t *testing.T, err error) {
	t.Helper()
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("error is %T, not *Error: %v", err, err)
	}
	if len(perr.Diagnostics) == 0 {
		t.Fatal("*Error without diagnostics")
	}
	if got, want := strings.Count(err.Error(), "\n")+1, len(perr.Diagnostics); got != want {
		t.Fatalf("Error() has %d lines for %d diagnostics:\n%s", got, want, err)
	}
}

func checkResolved(t *testing.T, r *ResolvedJob) {
	t.Helper()
	if r.Timeout <= 0 || r.AbortTimeout < 0 || r.Priority < MinPriority || r.Priority > MaxPriority {
		t.Fatalf("constants out of range: %+v", r)
	}
	if r.Retry.Attempts < 0 || r.Retry.Attempts > MaxRetryAttempts || r.Retry.Delay < 0 || !(r.Retry.Backoff >= 1) {
		t.Fatalf("retry out of range: %+v", r.Retry)
	}
	if len(r.Steps) == 0 {
		t.Fatal("resolved job without steps")
	}
	for _, s := range r.Steps {
		hasCommand, hasScript := len(s.Command) > 0, strings.TrimSpace(s.Script) != ""
		if hasCommand == hasScript {
			t.Fatalf("step %q must have exactly one of command and script: %+v", s.Name, s)
		}
		if hasCommand && s.Command[0] == "" {
			t.Fatalf("step %q has an empty program name", s.Name)
		}
		if s.Timeout < 0 || s.Env == nil {
			t.Fatalf("step %q: bad timeout or nil env: %+v", s.Name, s)
		}
		for k := range s.Env {
			if validate.EnvName(k) != nil {
				t.Fatalf("step %q: invalid env name %q", s.Name, k)
			}
		}
	}
}
