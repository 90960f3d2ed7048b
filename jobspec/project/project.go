package project

import (
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/outpost-run/outpost/internal/validate"
)

// Defaults applied to a job that does not set the corresponding argument.
const (
	DefaultWorkspace    = "default"
	DefaultTimeout      = time.Hour
	DefaultAbortTimeout = 30 * time.Second
	DefaultPriority     = 50
)

// Limits on constant arguments. They are exported so that other layers (the
// CLI's flag help, the server's own checks) quote the same numbers.
const (
	MinPriority      = 0
	MaxPriority      = 100
	MaxRetryAttempts = 10
	// MaxNameLength bounds project, job, step and workspace names (the
	// rules are internal/validate's).
	MaxNameLength = validate.MaxNameLength
	// MaxSourceSize bounds a project file. Project files are small; the bound
	// keeps a hostile submission from making the server parse megabytes.
	MaxSourceSize = 1 << 20
)

// Project is a parsed, validated project file. It is immutable after Parse.
type Project struct {
	Name     string
	Filename string
	// Source is a private copy of the file exactly as given to Parse, so the
	// server can store it verbatim and re-parse it later.
	Source    []byte
	Variables []Variable // in file order
	Jobs      []*Job     // in file order

	// runner is the project-level runner block, the default for every job;
	// nil when the file has none.
	runner *runnerSpec
	// varIndex maps a variable name to its index in Variables.
	varIndex map[string]int
}

// Variable is a declared input variable. Default is the default converted
// to a string; it is meaningful only when HasDefault is true, and a variable
// without a default is required.
type Variable struct {
	Name        string
	Default     string
	Description string
	HasDefault  bool
	Pos         Pos
}

// Job is one job block. Its expressions are kept unevaluated until Resolve;
// its constant arguments are already decoded.
type Job struct {
	Name string
	Pos  Pos

	runner       *runnerSpec // nil: use the project's
	env          hcl.Expression
	timeout      time.Duration
	abortTimeout time.Duration
	priority     int
	retry        RetryPolicy
	steps        []*stepSpec
}

// StepNames returns the names of the job's steps in the order they run.
func (j *Job) StepNames() []string {
	names := make([]string, len(j.steps))
	for i, s := range j.steps {
		names[i] = s.name
	}
	return names
}

// runnerSpec is a runner block. profile is nil only in a file that failed
// to parse.
type runnerSpec struct {
	profile hcl.Expression
}

// stepSpec is a step block with its constants decoded.
type stepSpec struct {
	name    string
	command hcl.Expression // exactly one of command and script is non-nil
	script  hcl.Expression
	env     hcl.Expression // nil when unset
	timeout time.Duration  // 0: bounded only by the job timeout
}

// JobNames returns the names of all jobs in file order.
func (p *Project) JobNames() []string {
	names := make([]string, len(p.Jobs))
	for i, j := range p.Jobs {
		names[i] = j.Name
	}
	return names
}

// Job returns the job with the given name.
func (p *Project) Job(name string) (*Job, bool) {
	for _, j := range p.Jobs {
		if j.Name == name {
			return j, true
		}
	}
	return nil, false
}

// RetryPolicy says how often and how fast a failed or lost job is tried
// again. Attempts counts extra attempts after the first; the wait before
// retry n (1-based) is Delay * Backoff^(n-1).
type RetryPolicy struct {
	Attempts int
	Delay    time.Duration
	Backoff  float64
}

// ResolvedJob is one job evaluated for a submission: no expressions remain.
type ResolvedJob struct {
	Project   string
	Job       string
	Workspace string
	// Variables holds every declared variable's final value: the -var value
	// when given, else the default.
	Variables map[string]string
	// Profile is the job's runner profile if the job has a runner block,
	// else the project's, else "" (the server's default profile).
	Profile string
	// ProfilePos is where Profile was set; invalid when it was not.
	ProfilePos   Pos
	Timeout      time.Duration
	AbortTimeout time.Duration
	Priority     int
	Retry        RetryPolicy
	// Env is the job-level environment. Each step's Env already includes it.
	Env   map[string]string
	Steps []Step
}

// Step is one resolved step. Exactly one of Command and Script is set.
type Step struct {
	Name    string
	Command []string
	Script  string
	// Env is the job env overlaid with the step's own env, so an executor
	// needs only this map.
	Env map[string]string
	// Timeout is the step's own limit; 0 means only the job timeout applies.
	Timeout time.Duration
}
