package project

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// defaults returns the resolved form of a job that sets nothing optional,
// so that each case only spells out what it changes.
func defaults(job string, steps ...Step) *ResolvedJob {
	return &ResolvedJob{
		Project:      "web",
		Job:          job,
		Workspace:    "default",
		Variables:    map[string]string{},
		Timeout:      time.Hour,
		AbortTimeout: 30 * time.Second,
		Priority:     50,
		Retry:        RetryPolicy{Backoff: 1},
		Env:          map[string]string{},
		Steps:        steps,
	}
}

func cmd(name string, args ...string) Step {
	return Step{Name: name, Command: args, Env: map[string]string{}}
}

func TestResolveGood(t *testing.T) {
	example, err := os.ReadFile("testdata/example.hcl")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		src       string
		job       string
		vars      map[string]string
		workspace string
		want      func() *ResolvedJob
	}{
		{
			name: "minimal job gets every default",
			src: `project = "web"
job "build" {
  step "make" { command = ["make"] }
}`,
			job:  "build",
			want: func() *ResolvedJob { return defaults("build", cmd("make", "make")) },
		},
		{
			name: "example deploy: job runner overrides project runner, workspace interpolated",
			src:  string(example),
			job:  "deploy",
			vars: map[string]string{"image_tag": "v1.2.3"},
			// The project runner would give "dev-linux"; the job's own
			// runner wins.
			workspace: "prod",
			want: func() *ResolvedJob {
				env := map[string]string{
					"ENVIRONMENT": "dev",
					"IMAGE":       "registry.example.com/web:v1.2.3",
				}
				return &ResolvedJob{
					Project:   "web",
					Job:       "deploy",
					Workspace: "prod",
					Variables: map[string]string{
						"env": "dev", "image_tag": "v1.2.3", "replicas": "2", "dry_run": "false",
					},
					Profile:      "prod-deploy",
					Timeout:      10 * time.Minute,
					AbortTimeout: time.Minute,
					Priority:     80,
					Retry:        RetryPolicy{Attempts: 2, Delay: 5 * time.Second, Backoff: 2},
					Env:          env,
					Steps: []Step{
						{
							Name:    "migrate",
							Command: []string{"./bin/migrate", "--env", "dev", "--dry-run=false"},
							Env:     env,
						},
						{
							Name: "ship",
							Script: "set -eu\n" +
								"kubectl --context \"dev\" set image deploy/web web=\"$IMAGE\"\n" +
								"kubectl --context \"dev\" scale deploy/web --replicas=2\n",
							Env: map[string]string{
								"ENVIRONMENT": "dev",
								"IMAGE":       "registry.example.com/web:v1.2.3",
								"REGION":      "eu-west-1",
								"JOB_ID":      "web/deploy",
							},
							Timeout: 5 * time.Minute,
						},
					},
				}
			},
		},
		{
			name: "example build: project runner with -var override, default workspace",
			src:  string(example),
			job:  "build",
			vars: map[string]string{"image_tag": "x", "env": "prod", "replicas": "5"},
			want: func() *ResolvedJob {
				env := map[string]string{"CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
				r := defaults("build",
					Step{Name: "test", Command: []string{"go", "test", "./..."}, Env: env, Timeout: 10 * time.Minute},
					Step{Name: "build", Command: []string{"go", "build", "-o", "bin/web", "./cmd/web"}, Env: env},
				)
				r.Variables = map[string]string{"env": "prod", "image_tag": "x", "replicas": "5", "dry_run": "false"}
				r.Profile = "prod-linux"
				r.Timeout = 20 * time.Minute
				r.Priority = 60
				r.Env = env
				return r
			},
		},
		{
			name: "number and bool defaults are stringified",
			src: `project = "web"
variable "count" { default = 3 }
variable "ratio" { default = 1.5 }
variable "big"   { default = 1e6 }
variable "debug" { default = true }
variable "off"   { default = false }
job "build" {
  step "s" { command = ["run", var.count, var.ratio, var.big, var.debug, "${var.off}"] }
}`,
			job: "build",
			want: func() *ResolvedJob {
				r := defaults("build", cmd("s", "run", "3", "1.5", "1000000", "true", "false"))
				r.Variables = map[string]string{"count": "3", "ratio": "1.5", "big": "1000000", "debug": "true", "off": "false"}
				return r
			},
		},
		{
			name: "project, job and workspace references; var index syntax; empty -var value",
			src: `project = "web"
variable "suffix" { default = "x" }
runner { profile = "${project}-${job}-${workspace}" }
job "build" {
  env = { TAG = "${project}/${job}${var["suffix"]}" }
  step "s" { script = "echo ${workspace}" }
}`,
			job:       "build",
			vars:      map[string]string{"suffix": ""},
			workspace: "feature.x-1",
			want: func() *ResolvedJob {
				r := defaults("build", Step{Name: "s", Script: "echo feature.x-1", Env: map[string]string{"TAG": "web/build"}})
				r.Workspace = "feature.x-1"
				r.Variables = map[string]string{"suffix": ""}
				r.Profile = "web-build-feature.x-1"
				r.Env = map[string]string{"TAG": "web/build"}
				return r
			},
		},
		{
			name: "step env is merged over job env",
			src: `project = "web"
job "build" {
  env = { A = "job", B = "job" }
  step "one" {
    command = ["true"]
    env     = { B = "step", C = 1 }
  }
  step "two" { command = ["true"] }
}`,
			job: "build",
			want: func() *ResolvedJob {
				r := defaults("build",
					Step{Name: "one", Command: []string{"true"}, Env: map[string]string{"A": "job", "B": "step", "C": "1"}},
					Step{Name: "two", Command: []string{"true"}, Env: map[string]string{"A": "job", "B": "job"}},
				)
				r.Env = map[string]string{"A": "job", "B": "job"}
				return r
			},
		},
		{
			name: "conditionals and for expressions",
			src: `project = "web"
variable "env" { default = "dev" }
runner { profile = var.env == "prod" ? "big" : "small" }
job "build" {
  env = { for k in ["X", "Y"] : k => "${k}-${var.env}" }
  step "s" { command = [for a in ["a", var.env] : "--${a}"] }
  step "t" {
    script = <<-EOT
      %{ if var.env == "prod" }deploy%{ else }plan%{ endif }
    EOT
  }
}`,
			job:  "build",
			vars: map[string]string{"env": "prod"},
			want: func() *ResolvedJob {
				env := map[string]string{"X": "X-prod", "Y": "Y-prod"}
				r := defaults("build",
					Step{Name: "s", Command: []string{"--a", "--prod"}, Env: env},
					Step{Name: "t", Script: "deploy\n", Env: env},
				)
				r.Variables = map[string]string{"env": "prod"}
				r.Profile = "big"
				r.Env = env
				return r
			},
		},
		{
			name: "bounds and nulls: null constants mean default, zero abort_timeout allowed",
			src: `project = "a-0_b"
job "j_1-x" {
  timeout       = null
  abort_timeout = "0s"
  priority      = 100
  retry {
    attempts = 10
    delay    = "1m30s"
    backoff  = 1.5
  }
  step "s" {
    command = ["x"]
    timeout = "90s"
  }
}`,
			job: "j_1-x",
			want: func() *ResolvedJob {
				r := defaults("j_1-x", Step{Name: "s", Command: []string{"x"}, Env: map[string]string{}, Timeout: 90 * time.Second})
				r.Project = "a-0_b"
				r.AbortTimeout = 0
				r.Priority = 100
				r.Retry = RetryPolicy{Attempts: 10, Delay: 90 * time.Second, Backoff: 1.5}
				return r
			},
		},
		{
			name: "priority zero, empty retry block",
			src: `project = "web"
job "low" {
  priority = 0
  retry {}
  step "s" { script = "true" }
}`,
			job: "low",
			want: func() *ResolvedJob {
				r := defaults("low", Step{Name: "s", Script: "true", Env: map[string]string{}})
				r.Priority = 0
				return r
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("outpost.hcl", []byte(tt.src))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, err := p.Resolve(tt.job, tt.vars, tt.workspace)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			// The profile's position is checked in TestProfilePos.
			got.ProfilePos = Pos{}
			want := tt.want()
			// Every variable is exported too (TestExportedVariables pins
			// how); the cases here leave them out of their want.
			for name, val := range want.Variables {
				env := "OUTPOST_VAR_" + strings.ToUpper(name)
				want.Env[env] = val
				for _, st := range want.Steps {
					st.Env[env] = val
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Resolve mismatch\n got: %#v\nwant: %#v", got, want)
			}
		})
	}
}

// TestErrors pins the exact message of every kind of problem, positions
// included, because the CLI prints them verbatim and editors parse them.
func TestErrors(t *testing.T) {
	const step = "  step \"s\" { command = [\"x\"] }\n"
	job := func(body string) string {
		return "project = \"web\"\njob \"a\" {\n" + body + "}\n"
	}
	tests := []struct {
		name      string
		src       string
		job       string // if set, Parse must succeed and Resolve fail
		vars      map[string]string
		workspace string
		want      string
	}{
		{
			name: "unknown attribute",
			src:  job("  step \"s\" {\n    command = [\"x\"]\n    foo = 1\n  }\n"),
			want: `outpost.hcl:5:5: Unsupported argument: An argument named "foo" is not expected here.`,
		},
		{
			name: "unknown block",
			src:  "project = \"web\"\nlocals {}\n" + job(step)[len("project = \"web\"\n"):],
			want: `outpost.hcl:2:1: Unsupported block type: Blocks of type "locals" are not expected here.`,
		},
		{
			name: "several problems are sorted by position",
			src:  job("  timout = \"1m\"\n  priorty = 1\n" + step),
			want: "outpost.hcl:3:3: Unsupported argument: An argument named \"timout\" is not expected here. Did you mean \"timeout\"?\n" +
				"outpost.hcl:4:3: Unsupported argument: An argument named \"priorty\" is not expected here. Did you mean \"priority\"?",
		},
		{
			name: "missing project",
			src:  "job \"a\" {\n" + step + "}\n",
			want: `outpost.hcl:1:1: Missing required argument: The argument "project" is required, but no definition was found.`,
		},
		{
			name: "bad project name",
			src:  "project = \"Web\"\njob \"a\" {\n" + step + "}\n",
			want: `outpost.hcl:1:11: Invalid project name: "Web" is not a valid project name; a name must start with a lowercase letter or digit, contain only lowercase letters, digits, "_" and "-", and be at most 63 characters long.`,
		},
		{
			name: "project name from a variable",
			src:  "project = var.x\nvariable \"x\" {}\njob \"a\" {\n" + step + "}\n",
			want: `outpost.hcl:1:11: Variables not allowed: The "project" argument must be a constant; var, workspace, project and job may only be used in runner profile, step command, script and env values.`,
		},
		{
			name: "empty file",
			src:  "",
			want: "outpost.hcl:1:1: Missing required argument: The argument \"project\" is required, but no definition was found.\n" +
				"outpost.hcl:1:1: Missing job: A project file must declare at least one job block.",
		},
		{
			name: "duplicate job",
			src:  job(step) + "job \"a\" {\n" + step + "}\n",
			want: `outpost.hcl:5:5: Duplicate job: A job named "a" was already declared at outpost.hcl:2:1.`,
		},
		{
			name: "bad job name",
			src:  "project = \"web\"\njob \"Deploy\" {\n" + step + "}\n",
			want: `outpost.hcl:2:5: Invalid job name: "Deploy" is not a valid job name; a name must start with a lowercase letter or digit, contain only lowercase letters, digits, "_" and "-", and be at most 63 characters long.`,
		},
		{
			name: "job without steps",
			src:  job("  priority = 1\n"),
			want: `outpost.hcl:2:1: Missing step: Job "a" must have at least one step block.`,
		},
		{
			name: "duplicate step",
			src:  job(step + "  step \"s\" { script = \"y\" }\n"),
			want: `outpost.hcl:4:8: Duplicate step: A step named "s" was already declared in this job at outpost.hcl:3:3.`,
		},
		{
			name: "step with both command and script",
			src:  job("  step \"s\" {\n    command = [\"x\"]\n    script  = \"y\"\n  }\n"),
			want: `outpost.hcl:5:5: Conflicting arguments: Step "s" sets both command and script; a step must set exactly one of them.`,
		},
		{
			name: "step with neither command nor script",
			src:  job("  step \"s\" {\n    timeout = \"1m\"\n  }\n"),
			want: `outpost.hcl:3:3: Missing command or script: Step "s" must set exactly one of command (a list of program and arguments) or script (a shell script).`,
		},
		{
			name: "empty command list",
			src:  job("  step \"s\" { command = [] }\n"),
			want: `outpost.hcl:3:24: Empty command: The command must name at least the program to run.`,
		},
		{
			name: "empty program name",
			src:  job("  step \"s\" { command = [\"\", \"x\"] }\n"),
			want: `outpost.hcl:3:25: Empty command: The program to run (the first element of command) must not be empty.`,
		},
		{
			name: "empty script",
			src:  job("  step \"s\" { script = \"  \" }\n"),
			want: `outpost.hcl:3:23: Empty script: The script must not be empty.`,
		},
		{
			name: "command is a string",
			src:  job("  step \"s\" { command = \"make build\" }\n"),
			want: `outpost.hcl:3:24: Incorrect attribute value type: Inappropriate value for attribute "command": list of string required.`,
		},
		{
			name: "command element is a list",
			src:  job("  step \"s\" { command = [\"x\", [\"y\"]] }\n"),
			want: `outpost.hcl:3:30: Incorrect attribute value type: Inappropriate value for attribute "command": element 1: string required.`,
		},
		{
			name: "null script",
			src:  job("  step \"s\" { script = null }\n"),
			want: `outpost.hcl:3:23: Invalid value: Inappropriate value for attribute "script": must not be null.`,
		},
		{
			name: "bad duration",
			src:  job("  timeout = \"10x\"\n" + step),
			want: `outpost.hcl:3:13: Invalid duration: "10x" is not a valid duration for timeout; use a Go duration string such as "90s", "10m" or "1h30m".`,
		},
		{
			name: "duration without unit",
			src:  job("  step \"s\" {\n    command = [\"x\"]\n    timeout = 10\n  }\n"),
			want: `outpost.hcl:5:15: Invalid duration: "10" is not a valid duration for timeout; use a Go duration string such as "90s", "10m" or "1h30m".`,
		},
		{
			name: "zero timeout",
			src:  job("  timeout = \"0s\"\n" + step),
			want: `outpost.hcl:3:13: Invalid duration: timeout must be greater than zero, got "0s".`,
		},
		{
			name: "duration of the wrong type",
			src:  job("  abort_timeout = [\"1s\"]\n" + step),
			want: `outpost.hcl:3:19: Incorrect attribute value type: Inappropriate value for attribute "abort_timeout": string required.`,
		},
		{
			name: "negative priority",
			src:  job("  priority = -1\n" + step),
			want: `outpost.hcl:3:14: Invalid priority: priority must be a whole number from 0 to 100, got -1.`,
		},
		{
			name: "oversized priority",
			src:  job("  priority = 101\n" + step),
			want: `outpost.hcl:3:14: Invalid priority: priority must be a whole number from 0 to 100, got 101.`,
		},
		{
			name: "fractional priority",
			src:  job("  priority = 5.5\n" + step),
			want: `outpost.hcl:3:14: Invalid priority: priority must be a whole number from 0 to 100, got 5.5.`,
		},
		{
			name: "priority is not a number",
			src:  job("  priority = \"high\"\n" + step),
			want: `outpost.hcl:3:14: Incorrect attribute value type: Inappropriate value for attribute "priority": number required.`,
		},
		{
			name: "bad retry",
			src:  job("  retry {\n    attempts = 11\n    delay    = \"-1s\"\n    backoff  = 0.5\n  }\n" + step),
			want: "outpost.hcl:4:16: Invalid retry attempts: retry attempts must be a whole number from 0 to 10, got 11.\n" +
				"outpost.hcl:5:16: Invalid duration: delay must be zero or more, got \"-1s\".\n" +
				"outpost.hcl:6:16: Invalid retry backoff: backoff must be a multiplier of at least 1, got 0.5.",
		},
		{
			name: "duplicate retry block",
			src:  job("  retry {}\n  retry {}\n" + step),
			want: `outpost.hcl:4:3: Duplicate retry block: Only one retry block is allowed here; the first one is at outpost.hcl:3:3.`,
		},
		{
			name: "duplicate project runner block",
			src:  "project = \"web\"\nrunner { profile = \"a\" }\nrunner { profile = \"b\" }\njob \"a\" {\n" + step + "}\n",
			want: `outpost.hcl:3:1: Duplicate runner block: Only one runner block is allowed here; the first one is at outpost.hcl:2:1.`,
		},
		{
			name: "runner without profile",
			src:  job("  runner {}\n" + step),
			want: `outpost.hcl:3:10: Missing required argument: The argument "profile" is required, but no definition was found.`,
		},
		{
			name: "undeclared variable",
			src:  job("  step \"s\" { script = \"echo ${var.nope}\" }\n"),
			want: `outpost.hcl:3:31: Reference to undeclared variable: There is no variable named "nope"; declare it with a variable "nope" block.`,
		},
		{
			name: "unknown root",
			src:  job("  step \"s\" { script = \"echo ${foo}\" }\n"),
			want: `outpost.hcl:3:31: Unknown reference: There is no value named "foo"; expressions may only reference var.<name>, workspace, project and job.`,
		},
		{
			name: "bare var",
			src:  job("  step \"s\" { script = \"${var}\" }\n"),
			want: `outpost.hcl:3:26: Invalid reference: A reference to var must name a variable, such as var.env.`,
		},
		{
			name: "attribute of a string",
			src:  job("  step \"s\" { script = \"${workspace.x}\" }\n"),
			want: `outpost.hcl:3:35: Unsupported attribute: Can't access attributes on a primitive-typed value (string).`,
		},
		{
			name: "function call",
			src:  job("  step \"s\" { command = [upper(\"x\")] }\n"),
			want: `outpost.hcl:3:25: Call to unknown function: There is no function named "upper". The only function is shellquote(s).`,
		},
		{
			name: "variable in a constant",
			src:  "project = \"web\"\nvariable \"t\" { default = \"1m\" }\njob \"a\" {\n  timeout = \"${var.t}\"\n" + step + "}\n",
			want: `outpost.hcl:4:16: Variables not allowed: The "timeout" argument must be a constant; var, workspace, project and job may only be used in runner profile, step command, script and env values.`,
		},
		{
			name: "syntax error: unclosed brace",
			src:  job(step)[:len(job(step))-2],
			want: `outpost.hcl:2:9: Unclosed configuration block: There is no closing brace for this block before the end of the file. This may be caused by incorrect brace nesting elsewhere in this file.`,
		},
		{
			name: "syntax error: semicolon",
			src:  job("  step \"s\" { script = \"x\"; env = {} }\n"),
			want: "outpost.hcl:3:26: Invalid character: The \";\" character is not valid. Use newlines to separate arguments and blocks, and commas to separate items in collection values.\n" +
				"outpost.hcl:3:26: Invalid single-argument block definition: A single-line block definition must end with a closing brace immediately after its single argument definition.",
		},
		{
			name: "env: bad name, bad value, duplicate",
			src:  job("  env = {\n    \"A B\" = \"1\"\n    C     = {}\n    D     = \"1\"\n    D     = \"2\"\n  }\n" + step),
			want: "outpost.hcl:4:5: Invalid environment variable name: \"A B\" is not a valid environment variable name; use letters, digits and \"_\", not starting with a digit.\n" +
				"outpost.hcl:5:13: Incorrect attribute value type: Inappropriate value for attribute \"env\": element \"C\": string required.\n" +
				"outpost.hcl:7:5: Duplicate environment variable: \"D\" is already set at outpost.hcl:6:5.",
		},
		{
			name: "env is a string",
			src:  job("  env = \"A=1\"\n" + step),
			want: `outpost.hcl:3:9: Incorrect attribute value type: Inappropriate value for attribute "env": map of string required.`,
		},
		{
			name: "variable: bad and duplicate names, bad default",
			src:  "project = \"web\"\nvariable \"1x\" {}\nvariable \"y\" {}\nvariable \"y\" { default = [1] }\njob \"a\" {\n" + step + "}\n",
			want: "outpost.hcl:2:10: Invalid variable name: \"1x\" is not a valid variable name; it must be an identifier such as \"env\" or \"image_tag\" so that it can be referenced as var.<name>.\n" +
				"outpost.hcl:4:10: Duplicate variable: A variable named \"y\" was already declared at outpost.hcl:3:1.",
		},
		{
			name: "variable default of the wrong type",
			src:  "project = \"web\"\nvariable \"y\" { default = { a = 1 } }\njob \"a\" {\n" + step + "}\n",
			want: `outpost.hcl:2:26: Invalid default value: The default of variable "y" must be a string, number or bool, not object.`,
		},
		{
			name: "variable default refers to another variable",
			src:  "project = \"web\"\nvariable \"x\" {}\nvariable \"y\" { default = var.x }\njob \"a\" {\n" + step + "}\n",
			want: `outpost.hcl:3:26: Variables not allowed: The "default" argument must be a constant; var, workspace, project and job may only be used in runner profile, step command, script and env values.`,
		},
		{
			name: "huge number",
			src:  job("  step \"s\" { script = \"${1e999999}\" }\n"),
			want: `outpost.hcl:3:26: Number out of range: Numbers in a project file must fit in a 64-bit floating point value.`,
		},
		{
			name: "arithmetic leaving the float64 range",
			src:  job("  step \"s\" { script = \"${[for a in [1e300] : a * a][0]}\" }\n"),
			want: `outpost.hcl:3:46: Operation failed: Error during operation: the result does not fit in a 64-bit floating point number.`,
		},
		{
			name: "arithmetic on a huge -var value",
			src:  "project = \"web\"\nvariable \"n\" { default = 1 }\njob \"a\" {\n  step \"s\" { script = \"${var.n + 1}\" }\n}\n",
			job:  "a",
			vars: map[string]string{"n": "1e999999999"},
			want: `outpost.hcl:4:26: Operation failed: Error during operation: the result does not fit in a 64-bit floating point number.`,
		},
		{
			// The job and step braces count too, so the 99th "[" is one too many.
			name: "nesting too deep",
			src:  job("  step \"s\" { command = " + strings.Repeat("[", 101) + " }\n"),
			want: `outpost.hcl:3:122: Nesting too deep: Brackets, strings and operators may nest at most 100 levels deep.`,
		},
		{
			name: "required variable missing",
			src:  "project = \"web\"\nvariable \"env\" {}\njob \"a\" {\n  step \"s\" { script = \"echo ${var.env}\" }\n}\n",
			job:  "a",
			want: `outpost.hcl:2:1: variable "env" is required: set it with -var env=VALUE`,
		},
		{
			name: "unknown -var",
			src:  "project = \"web\"\nvariable \"env\" { default = \"\" }\nvariable \"region\" { default = \"\" }\njob \"a\" {\n" + step + "}\n",
			job:  "a",
			vars: map[string]string{"zone": "1", "env": "x", "colour": "red"},
			want: "Undeclared variable: -var \"colour\" is not declared in outpost.hcl; declared variables: env, region.\n" +
				"Undeclared variable: -var \"zone\" is not declared in outpost.hcl; declared variables: env, region.",
		},
		{
			name: "unknown -var, no variables declared",
			src:  job(step),
			job:  "a",
			vars: map[string]string{"env": "x"},
			want: `Undeclared variable: -var "env" is not declared in outpost.hcl; the project declares no variables.`,
		},
		{
			name: "unknown job",
			src:  job(step) + "job \"b\" {\n" + step + "}\n",
			job:  "deploy",
			want: `Unknown job: Project "web" has no job named "deploy"; available jobs: a, b.`,
		},
		{
			name:      "bad workspace",
			src:       job(step),
			job:       "a",
			workspace: "-prod",
			want:      `Invalid workspace: "-prod" is not a valid workspace name; it must match [a-zA-Z0-9][a-zA-Z0-9_.-]* and be at most 63 characters long.`,
		},
		{
			name:      "all input problems at once",
			src:       "project = \"web\"\nvariable \"env\" {}\njob \"a\" {\n" + step + "}\n",
			job:       "nope",
			vars:      map[string]string{"x": "1"},
			workspace: "a b",
			want: "Unknown job: Project \"web\" has no job named \"nope\"; available jobs: a.\n" +
				"Invalid workspace: \"a b\" is not a valid workspace name; it must match [a-zA-Z0-9][a-zA-Z0-9_.-]* and be at most 63 characters long.\n" +
				"Undeclared variable: -var \"x\" is not declared in outpost.hcl; declared variables: env.\n" +
				"outpost.hcl:2:1: variable \"env\" is required: set it with -var env=VALUE",
		},
		{
			name: "evaluation error at resolve time",
			src:  "project = \"web\"\nvariable \"n\" { default = \"1\" }\njob \"a\" {\n  step \"s\" { script = \"${var.n + 1}\" }\n}\n",
			job:  "a",
			vars: map[string]string{"n": "many"},
			want: `outpost.hcl:4:26: Invalid operand: Unsuitable value for left operand: a number is required.`,
		},
		{
			name: "profile evaluates to empty",
			src:  "project = \"web\"\nvariable \"p\" { default = \"x\" }\nrunner { profile = var.p }\njob \"a\" {\n" + step + "}\n",
			job:  "a",
			vars: map[string]string{"p": ""},
			want: `outpost.hcl:3:20: Empty runner profile: The profile must not be empty; remove the runner block to use the default profile.`,
		},
		{
			name: "env name from a variable",
			src:  "project = \"web\"\nvariable \"k\" { default = \"OK\" }\njob \"a\" {\n  env = { (var.k) = \"1\" }\n" + step + "}\n",
			job:  "a",
			vars: map[string]string{"k": "NOT OK"},
			want: `outpost.hcl:4:11: Invalid environment variable name: "NOT OK" is not a valid environment variable name; use letters, digits and "_", not starting with a digit.`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("outpost.hcl", []byte(tt.src))
			if tt.job != "" {
				if err != nil {
					t.Fatalf("Parse: unexpected error: %v", err)
				}
				_, err = p.Resolve(tt.job, tt.vars, tt.workspace)
			} else if p != nil {
				t.Errorf("Parse returned a project along with an error")
			}
			if err == nil {
				t.Fatalf("no error; want:\n%s", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error mismatch\n got: %s\nwant: %s", got, tt.want)
			}
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("error is %T, want *Error", err)
			}
			if got, want := len(perr.Positions()), strings.Count(tt.want, "\n")+1; got != want {
				t.Errorf("Positions() has %d entries, want %d", got, want)
			}
		})
	}
}

func TestErrorPositions(t *testing.T) {
	_, err := Parse("dir/outpost.hcl", []byte("project = \"web\"\njob \"a\" {\n  bogus = 1\n  step \"s\" { command = [\"x\"] }\n}\n"))
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("got %v, want *Error", err)
	}
	want := []Pos{{Filename: "dir/outpost.hcl", Line: 3, Column: 3}}
	if got := perr.Positions(); !reflect.DeepEqual(got, want) {
		t.Errorf("Positions() = %v, want %v", got, want)
	}
	if got := want[0].String(); got != "dir/outpost.hcl:3:3" {
		t.Errorf("Pos.String() = %q", got)
	}
	if got := (Pos{Filename: "f"}).String(); got != "f" {
		t.Errorf("Pos without line: String() = %q, want %q", got, "f")
	}
}

func TestProjectAccessors(t *testing.T) {
	src, err := os.ReadFile("testdata/example.hcl")
	if err != nil {
		t.Fatal(err)
	}
	buf := append([]byte(nil), src...)
	p, err := Parse("example.hcl", buf)
	if err != nil {
		t.Fatal(err)
	}
	buf[0] = 'X' // Source must be a private copy
	if string(p.Source) != string(src) {
		t.Error("Source does not hold a private copy of the input")
	}
	if p.Name != "web" || p.Filename != "example.hcl" {
		t.Errorf("Name, Filename = %q, %q", p.Name, p.Filename)
	}
	if got, want := p.JobNames(), []string{"build", "deploy"}; !reflect.DeepEqual(got, want) {
		t.Errorf("JobNames() = %v, want %v", got, want)
	}
	j, ok := p.Job("deploy")
	if !ok || j.Name != "deploy" || j.Pos != (Pos{"example.hcl", 45, 1}) {
		t.Errorf("Job(deploy) = %+v, %v", j, ok)
	}
	if got, want := j.StepNames(), []string{"migrate", "ship"}; !reflect.DeepEqual(got, want) {
		t.Errorf("StepNames() = %v, want %v", got, want)
	}
	if _, ok := p.Job("nope"); ok {
		t.Error("Job(nope) found a job")
	}
	wantVars := []Variable{
		{Name: "env", Default: "dev", Description: "target environment (dev, staging, prod)", HasDefault: true, Pos: Pos{"example.hcl", 4, 1}},
		{Name: "image_tag", Description: "container image tag to deploy; required", Pos: Pos{"example.hcl", 9, 1}},
		{Name: "replicas", Default: "2", HasDefault: true, Pos: Pos{"example.hcl", 13, 1}},
		{Name: "dry_run", Default: "false", HasDefault: true, Pos: Pos{"example.hcl", 17, 1}},
	}
	if !reflect.DeepEqual(p.Variables, wantVars) {
		t.Errorf("Variables =\n%+v\nwant\n%+v", p.Variables, wantVars)
	}
}

// TestResolveConcurrent checks that a parsed Project can serve concurrent
// submissions (run with -race).
func TestResolveConcurrent(t *testing.T) {
	src, err := os.ReadFile("testdata/example.hcl")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse("example.hcl", src)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws := []string{"prod", "staging"}[i%2]
			r, err := p.Resolve("deploy", map[string]string{"image_tag": ws}, ws)
			if err != nil {
				t.Error(err)
				return
			}
			if r.Profile != ws+"-deploy" || r.Env["IMAGE"] != "registry.example.com/web:"+ws {
				t.Errorf("workspace %s: got profile %q, env %v", ws, r.Profile, r.Env)
			}
		}()
	}
	wg.Wait()
}

// TestHostileInput makes sure inputs built to exhaust the stack or burn CPU
// are rejected quickly instead of crashing the process: hclsyntax recurses
// over nesting and operator chains, and a stack overflow is fatal.
func TestHostileInput(t *testing.T) {
	const n = 200000
	exprs := map[string]string{
		"brackets":      strings.Repeat("[", n),
		"parens":        strings.Repeat("(", n),
		"templates":     strings.Repeat(`"${`, n),
		"unary":         strings.Repeat("!", n) + "true",
		"binary chain":  "1" + strings.Repeat("+1", n),
		"conditionals":  strings.Repeat("true?1:", n) + "1",
		"index chain":   "[1]" + strings.Repeat("[workspace]", n),
		"directives":    `"` + strings.Repeat("%{if true}", n) + `"`,
		"logical chain": "true" + strings.Repeat("&&true", n),
	}
	for name, expr := range exprs {
		t.Run(name, func(t *testing.T) {
			src := "project = \"web\"\njob \"a\" {\n  step \"s\" { script = " + expr + " }\n}\n"
			if len(src) > MaxSourceSize {
				src = src[:MaxSourceSize]
			}
			// A hang (rather than a slow parse) is what this guards
			// against; the test binary's timeout catches it, and the time
			// is logged for the curious, not asserted.
			start := time.Now()
			if _, err := Parse("outpost.hcl", []byte(src)); err == nil {
				t.Error("Parse accepted the input")
			}
			t.Logf("Parse took %v", time.Since(start))
		})
	}
	t.Run("problems are capped", func(t *testing.T) {
		// 60 invalid characters, plus the missing definition they leave behind.
		_, err := Parse("outpost.hcl", []byte(strings.Repeat("\x7f", 60)))
		var perr *Error
		if !errors.As(err, &perr) {
			t.Fatalf("got %v, want *Error", err)
		}
		if len(perr.Diagnostics) != maxReported+1 {
			t.Fatalf("got %d diagnostics, want %d", len(perr.Diagnostics), maxReported+1)
		}
		lines := strings.Split(err.Error(), "\n")
		if got, want := lines[len(lines)-1], "Too many problems: 11 more problems were not listed; fix the ones above first."; got != want {
			t.Errorf("last line = %q, want %q", got, want)
		}
	})
	t.Run("too large", func(t *testing.T) {
		_, err := Parse("outpost.hcl", make([]byte, MaxSourceSize+1))
		want := "outpost.hcl:1:1: Project file too large: The file is 1048577 bytes; a project file may be at most 1048576 bytes."
		if err == nil || err.Error() != want {
			t.Errorf("got %v, want %s", err, want)
		}
	})
}

// TestProfilePos checks that the resolved profile points at the runner
// stanza that set it: the job's own, else the project's.
func TestProfilePos(t *testing.T) {
	src := "project = \"web\"\nrunner { profile = \"a\" }\njob \"x\" {\n  step \"s\" { script = \"true\" }\n}\njob \"y\" {\n  runner { profile = \"b\" }\n  step \"s\" { script = \"true\" }\n}\n"
	p, err := Parse("outpost.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for job, want := range map[string]string{"x": "outpost.hcl:2:20", "y": "outpost.hcl:7:22"} {
		r, err := p.Resolve(job, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := r.ProfilePos.String(); got != want {
			t.Errorf("job %s: profile position %s, want %s", job, got, want)
		}
	}
}

// Every variable reaches every step as OUTPOST_VAR_<NAME> too: upper case,
// "-" as "_", set over the job's env and under the step's.
func TestExportedVariables(t *testing.T) {
	p, err := Parse("outpost.hcl", []byte(`project = "web"
variable "env" { default = "dev" }
variable "image-tag" {}
job "deploy" {
  env = { OUTPOST_VAR_ENV = "from job env", A = "a" }
  step "one" { script = "echo \"$OUTPOST_VAR_IMAGE_TAG\"" }
  step "two" {
    command = ["true"]
    env     = { OUTPOST_VAR_ENV = "from step env" }
  }
}`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Resolve("deploy", map[string]string{"image-tag": "$(id) 'x'"}, "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "a", "OUTPOST_VAR_ENV": "dev", "OUTPOST_VAR_IMAGE_TAG": "$(id) 'x'"}
	if !reflect.DeepEqual(r.Env, want) || !reflect.DeepEqual(r.Steps[0].Env, want) {
		t.Errorf("job env %v, step one env %v; want %v", r.Env, r.Steps[0].Env, want)
	}
	if got := r.Steps[1].Env["OUTPOST_VAR_ENV"]; got != "from step env" {
		t.Errorf("step two's own env lost to the variable: %q", got)
	}
	if ExportedName("image-tag") != "OUTPOST_VAR_IMAGE_TAG" || ExportedName("Env_2") != "OUTPOST_VAR_ENV_2" {
		t.Errorf("ExportedName: %s, %s", ExportedName("image-tag"), ExportedName("Env_2"))
	}

	for _, tc := range []struct{ src, want string }{
		{`variable "a-b" {}
variable "a_b" {}`, `outpost.hcl:2:10: Conflicting variable names: Variables "a-b" and "a_b" would both be exported to steps as OUTPOST_VAR_A_B; rename one.`},
		{`variable "env" {}
variable "ENV" {}`, `outpost.hcl:2:10: Conflicting variable names: Variables "env" and "ENV" would both be exported to steps as OUTPOST_VAR_ENV; rename one.`},
		{`variable "café" {}`, `outpost.hcl:1:10: Invalid variable name: Variable "café" would be exported to steps as "OUTPOST_VAR_CAFÉ", which is not a valid environment variable name; use ASCII letters, digits, "_" and "-" in variable names.`},
	} {
		_, err := Parse("outpost.hcl", []byte(tc.src+"\nproject = \"web\"\njob \"j\" {\n  step \"s\" { command = [\"true\"] }\n}\n"))
		if err == nil || err.Error() != tc.want {
			t.Errorf("got  %v\nwant %s", err, tc.want)
		}
	}

	if _, err := p.Resolve("deploy", map[string]string{"image-tag": "a\x00b"}, ""); err == nil || !strings.Contains(err.Error(), "must not contain a NUL character") {
		t.Errorf("a NUL in a -var: %v", err)
	}
}
