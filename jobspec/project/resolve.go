package project

import (
	"sort"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/outpost-run/outpost/internal/validate"
)

// Resolve evaluates the job named job for one submission. vars holds the
// -var values (always strings); workspace "" means DefaultWorkspace.
//
// Problems with the inputs (an unknown job, a -var the file does not
// declare, a required variable without a value, a bad workspace) are all
// reported together, before any evaluation, so a user fixes a command line
// in one go. The returned error, if any, is an *Error.
//
// Resolve does not modify p and may be called concurrently.
func (p *Project) Resolve(job string, vars map[string]string, workspace string) (*ResolvedJob, error) {
	var ds diagnostics

	j, ok := p.Job(job)
	if !ok {
		ds.noPosf("Unknown job", "Project %s has no job named %s; available jobs: %s.",
			quote(p.Name), quote(job), strings.Join(p.JobNames(), ", "))
	}

	if workspace == "" {
		workspace = DefaultWorkspace
	}
	if err := validate.Workspace(workspace); err != nil {
		ds.noPosf("Invalid workspace", "%v.", err)
	}

	// Sorted so that several unknown -var flags are reported in a stable
	// order regardless of map iteration.
	given := make([]string, 0, len(vars))
	for name := range vars {
		given = append(given, name)
	}
	sort.Strings(given)
	for _, name := range given {
		if _, declared := p.varIndex[name]; !declared {
			ds.noPosf("Undeclared variable", "-var %s is not declared in %s; %s.",
				quote(name), p.Filename, p.declaredVariables())
		}
	}

	values := make(map[string]string, len(p.Variables))
	for _, v := range p.Variables {
		switch val, set := vars[v.Name]; {
		case set:
			values[v.Name] = val
		case v.HasDefault:
			values[v.Name] = v.Default
		default:
			ds = append(ds, Diagnostic{
				Pos:     v.Pos,
				Summary: "variable " + quote(v.Name) + " is required",
				Detail:  "set it with -var " + v.Name + "=VALUE",
			})
		}
	}
	for _, v := range p.Variables {
		// The value goes into the environment, where a NUL cannot.
		if strings.ContainsRune(values[v.Name], 0) {
			ds.noPosf("Invalid variable value", "-var %s must not contain a NUL character.", quote(v.Name))
		}
	}
	if err := ds.err(); err != nil {
		return nil, err
	}

	ctyVars := make(map[string]cty.Value, len(values))
	exported := make(map[string]string, len(values))
	for name, val := range values {
		ctyVars[name] = cty.StringVal(val)
		exported[ExportedName(name)] = val
	}
	ev := &evaluator{
		ctx: p.evalContext(ctyVars, cty.StringVal(workspace), cty.StringVal(j.Name)),
		ds:  &ds,
	}
	profile, env, steps := ev.job(j, p.runner, exported)
	if err := ds.err(); err != nil {
		return nil, err
	}
	// Where the profile name came from, so the server can point at it when
	// no such profile exists.
	var profilePos Pos
	switch {
	case j.runner != nil && j.runner.profile != nil:
		profilePos = posOf(j.runner.profile.Range())
	case p.runner != nil && p.runner.profile != nil:
		profilePos = posOf(p.runner.profile.Range())
	}
	return &ResolvedJob{
		ProfilePos:   profilePos,
		Project:      p.Name,
		Job:          j.Name,
		Workspace:    workspace,
		Variables:    values,
		Profile:      profile,
		Timeout:      j.timeout,
		AbortTimeout: j.abortTimeout,
		Priority:     j.priority,
		Retry:        j.retry,
		Env:          env,
		Steps:        steps,
	}, nil
}

// ExportPrefix starts the name of the environment variable every step gets
// for each variable of its project.
const ExportPrefix = "OUTPOST_VAR_"

// ExportedName is the environment variable a project variable is exported
// as: OUTPOST_VAR_ and the name in upper case with "-" as "_", so that
// variable "image-tag" is $OUTPOST_VAR_IMAGE_TAG. Parse refuses two
// variables that would share a name, and names that make no valid
// environment variable name (letters outside ASCII).
func ExportedName(variable string) string {
	return ExportPrefix + strings.ToUpper(strings.ReplaceAll(variable, "-", "_"))
}

func (p *Project) declaredVariables() string {
	if len(p.Variables) == 0 {
		return "the project declares no variables"
	}
	names := make([]string, len(p.Variables))
	for i, v := range p.Variables {
		names[i] = v.Name
	}
	return "declared variables: " + strings.Join(names, ", ")
}
