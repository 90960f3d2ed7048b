package project

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/outpost-run/outpost/internal/validate"
)

// evalContext returns the scope every expression is evaluated in. Values
// that depend on the submission are passed in, so that Parse can pass
// unknown values and Resolve real ones.
func (p *Project) evalContext(vars map[string]cty.Value, workspace, job cty.Value) *hcl.EvalContext {
	varObj := cty.EmptyObjectVal
	if len(vars) > 0 {
		varObj = cty.ObjectVal(vars)
	}
	return &hcl.EvalContext{Variables: map[string]cty.Value{
		"var":       varObj,
		"workspace": workspace,
		"project":   cty.StringVal(p.Name),
		"job":       job,
	}, Functions: functions}
}

// trialEvaluate evaluates every expression with unknown variable values and
// workspace. Unknown values flow through templates and conversions, so what
// is left are errors that no choice of values could fix: a string where a
// list is required, a function call, an attribute of a string, and checks
// on the parts of a value that are already known (an empty command list).
func (ps *parser) trialEvaluate() {
	p := ps.p
	vars := make(map[string]cty.Value, len(p.Variables))
	for _, v := range p.Variables {
		vars[v.Name] = cty.UnknownVal(cty.String)
	}
	ws := cty.UnknownVal(cty.String)
	if p.runner != nil {
		// The project-level runner serves every job, so check it once with
		// the job name unknown too.
		ev := &evaluator{ctx: p.evalContext(vars, ws, cty.UnknownVal(cty.String)), ds: ps.ds}
		ev.profile(p.runner)
	}
	for _, j := range p.Jobs {
		ev := &evaluator{ctx: p.evalContext(vars, ws, cty.StringVal(j.Name)), ds: ps.ds}
		ev.job(j, nil, nil)
	}
}

// evaluator evaluates a job's expressions in one context and records the
// problems it finds. Checks on values are skipped for unknown values, which
// only occur during Parse's trial evaluation.
type evaluator struct {
	ctx *hcl.EvalContext
	ds  *diagnostics
}

// job evaluates everything of j that may contain expressions. fallback is
// the project-level runner, used when the job has none. exported (the
// variables as OUTPOST_VAR_<NAME>) is set over the job's env and under
// each step's.
func (ev *evaluator) job(j *Job, fallback *runnerSpec, exported map[string]string) (profile string, env map[string]string, steps []Step) {
	switch {
	case j.runner != nil:
		profile = ev.profile(j.runner)
	case fallback != nil:
		profile = ev.profile(fallback)
	}
	env = map[string]string{}
	if j.env != nil {
		env = ev.env(j.env)
	}
	for k, v := range exported {
		env[k] = v
	}
	steps = make([]Step, 0, len(j.steps))
	for _, s := range j.steps {
		st := Step{Name: s.name, Timeout: s.timeout, Env: make(map[string]string, len(env))}
		for k, v := range env {
			st.Env[k] = v
		}
		if s.env != nil {
			for k, v := range ev.env(s.env) {
				st.Env[k] = v
			}
		}
		switch {
		case s.command != nil:
			st.Command = ev.command(s.command)
		case s.script != nil:
			if script, known := ev.str(s.script, "script"); known && strings.TrimSpace(script) == "" {
				ev.ds.add(s.script.Range(), "Empty script", "The script must not be empty.")
			} else {
				st.Script = script
			}
		}
		steps = append(steps, st)
	}
	return profile, env, steps
}

func (ev *evaluator) profile(r *runnerSpec) string {
	if r == nil || r.profile == nil {
		return ""
	}
	s, known := ev.str(r.profile, "profile")
	if known && s == "" {
		ev.ds.add(r.profile.Range(), "Empty runner profile",
			"The profile must not be empty; remove the runner block to use the default profile.")
	}
	return s
}

// value evaluates expr. ok is false when evaluation failed; the problem
// has then been recorded. In a trial run the value may be unknown.
func (ev *evaluator) value(expr hcl.Expression) (v cty.Value, ok bool) {
	v, hd := expr.Value(ev.ctx)
	if ev.ds.appendHCL(hd) {
		return cty.NilVal, false
	}
	v, _ = v.UnmarkDeep()
	return v, true
}

// str evaluates expr to a string. known is false after an error or when the
// value is unknown.
func (ev *evaluator) str(expr hcl.Expression, name string) (s string, known bool) {
	v, ok := ev.value(expr)
	if !ok {
		return "", false
	}
	return ev.toString(v, expr.Range(), describe(name, nil))
}

// toString converts one evaluated value. desc names what is being
// converted in hcl's style, e.g. `"command": element 1` (see describe).
func (ev *evaluator) toString(v cty.Value, r hcl.Range, desc string) (string, bool) {
	if v.IsNull() {
		ev.ds.addf(r, "Invalid value", "Inappropriate value for attribute %s: must not be null.", desc)
		return "", false
	}
	sv, err := convert.Convert(v, cty.String)
	if err != nil {
		ev.ds.addf(r, "Incorrect attribute value type", "Inappropriate value for attribute %s: string required.", desc)
		return "", false
	}
	if !sv.IsKnown() {
		return "", false
	}
	s := sv.AsString()
	// A NUL byte cannot be passed to a process in an argument or in the
	// environment; catching it here beats an opaque exec error on a runner.
	if strings.ContainsRune(s, 0) {
		ev.ds.addf(r, "Invalid value", "Inappropriate value for attribute %s: must not contain a NUL character.", desc)
		return "", false
	}
	return s, true
}

// describe names an argument, or an element of it (an int index or a string
// key), the way hcl and cty do in their messages.
func describe(attr string, elem any) string {
	switch e := elem.(type) {
	case int:
		return fmt.Sprintf("%q: element %d", attr, e)
	case string:
		return fmt.Sprintf("%q: element %s", attr, quote(e))
	}
	return fmt.Sprintf("%q", attr)
}

// command evaluates a step command. A literal list is evaluated element by
// element so that an error points at the element at fault; anything else
// (a for expression, a conditional) is evaluated as a whole.
func (ev *evaluator) command(expr hcl.Expression) []string {
	if elems, hd := hcl.ExprList(expr); !hd.HasErrors() {
		if len(elems) == 0 {
			ev.ds.add(expr.Range(), "Empty command", "The command must name at least the program to run.")
			return nil
		}
		out := make([]string, 0, len(elems))
		for i, e := range elems {
			v, ok := ev.value(e)
			if !ok {
				continue
			}
			s, known := ev.toString(v, e.Range(), describe("command", i))
			if known && i == 0 && s == "" {
				ev.ds.add(e.Range(), "Empty command", "The program to run (the first element of command) must not be empty.")
			}
			out = append(out, s)
		}
		return out
	}

	v, ok := ev.value(expr)
	if !ok {
		return nil
	}
	if v.IsNull() {
		ev.ds.add(expr.Range(), "Invalid value", "The value of command must not be null.")
		return nil
	}
	lv, err := convert.Convert(v, cty.List(cty.String))
	if err != nil {
		ev.ds.add(expr.Range(), "Incorrect attribute value type", `Inappropriate value for attribute "command": list of string required.`)
		return nil
	}
	if !lv.IsKnown() {
		return nil
	}
	if lv.LengthInt() == 0 {
		ev.ds.add(expr.Range(), "Empty command", "The command must name at least the program to run.")
		return nil
	}
	out := make([]string, 0, lv.LengthInt())
	for i, it := 0, lv.ElementIterator(); it.Next(); i++ {
		_, e := it.Element()
		if !e.IsKnown() {
			continue
		}
		s, known := ev.toString(e, expr.Range(), describe("command", i))
		if known && i == 0 && s == "" {
			ev.ds.add(expr.Range(), "Empty command", "The program to run (the first element of command) must not be empty.")
		}
		out = append(out, s)
	}
	return out
}

// env evaluates an env map. Like command, a literal map is taken item by
// item, which also lets us report a key given twice; hcl itself would
// silently keep the last one.
func (ev *evaluator) env(expr hcl.Expression) map[string]string {
	out := map[string]string{}
	if pairs, hd := hcl.ExprMap(expr); !hd.HasErrors() {
		seen := map[string]hcl.Range{}
		for _, kv := range pairs {
			kval, ok := ev.value(kv.Key)
			if !ok {
				continue
			}
			key, known := ev.envKey(kval, kv.Key.Range())
			desc := describe("env", nil)
			if known {
				desc = describe("env", key)
			}
			var val string
			valKnown := false
			if v, ok := ev.value(kv.Value); ok {
				val, valKnown = ev.toString(v, kv.Value.Range(), desc)
			}
			if !known {
				continue
			}
			if first, dup := seen[key]; dup {
				ev.ds.addf(kv.Key.Range(), "Duplicate environment variable",
					"%s is already set at %s.", quote(key), posOf(first))
				continue
			}
			seen[key] = kv.Key.Range()
			if valKnown {
				out[key] = val
			}
		}
		return out
	}

	v, ok := ev.value(expr)
	if !ok {
		return out
	}
	if v.IsNull() {
		ev.ds.add(expr.Range(), "Invalid value", "The value of env must not be null.")
		return out
	}
	mv, err := convert.Convert(v, cty.Map(cty.String))
	if err != nil {
		ev.ds.add(expr.Range(), "Incorrect attribute value type", `Inappropriate value for attribute "env": map of string required.`)
		return out
	}
	if !mv.IsKnown() {
		return out
	}
	m := mv.AsValueMap()
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic error order
	for _, k := range keys {
		key, known := ev.envKey(cty.StringVal(k), expr.Range())
		if !known {
			continue
		}
		if s, known := ev.toString(m[k], expr.Range(), describe("env", key)); known {
			out[key] = s
		}
	}
	return out
}

func (ev *evaluator) envKey(k cty.Value, r hcl.Range) (string, bool) {
	if k.IsNull() {
		ev.ds.add(r, "Invalid environment variable name", "The name must not be null.")
		return "", false
	}
	kv, err := convert.Convert(k, cty.String)
	if err != nil {
		ev.ds.add(r, "Invalid environment variable name", "The name must be a string.")
		return "", false
	}
	if !kv.IsKnown() {
		return "", false
	}
	key := kv.AsString()
	if err := validate.EnvName(key); err != nil {
		ev.ds.addf(r, "Invalid environment variable name", "%v.", err)
		return "", false
	}
	return key, true
}
