package project

import (
	"bytes"
	"fmt"
	"math"
	"math/big"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/outpost-run/outpost/internal/validate"
)

// Schemas of every block. Decoding with body.Content makes hcl report any
// argument or block not listed here as an error at its position, which is
// what turns a typo such as "timout" into a useful message.
var (
	fileSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "project", Required: true}},
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "variable", LabelNames: []string{"name"}},
			{Type: "runner"},
			{Type: "job", LabelNames: []string{"name"}},
		},
	}
	variableSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "default"}, {Name: "description"}},
	}
	runnerSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "profile", Required: true}},
	}
	jobSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "timeout"}, {Name: "abort_timeout"}, {Name: "priority"}, {Name: "env"},
		},
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "runner"},
			{Type: "retry"},
			{Type: "step", LabelNames: []string{"name"}},
		},
	}
	retrySchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "attempts"}, {Name: "delay"}, {Name: "backoff"}},
	}
	stepSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "command"}, {Name: "script"}, {Name: "env"}, {Name: "timeout"},
		},
	}
)

// Parse parses and validates a project file. src is the file's content and
// filename is used only in error positions. It checks everything that does
// not depend on variable values or the workspace; see the package
// documentation. The returned error, if any, is an *Error.
func Parse(filename string, src []byte) (*Project, error) {
	var ds diagnostics
	fileStart := hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos}
	if len(src) > MaxSourceSize {
		ds.addf(fileStart, "Project file too large",
			"The file is %d bytes; a project file may be at most %d bytes.", len(src), MaxSourceSize)
		return nil, ds.err()
	}
	// Keep a private copy: the caller may reuse its buffer, and Source must
	// stay exactly what was parsed.
	src = bytes.Clone(src)
	if src == nil {
		src = []byte{}
	}

	if !checkShape(filename, src, &ds) {
		return nil, ds.err()
	}
	file, hd := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if ds.appendHCL(hd) {
		// After a syntax error the tree is partial; checking it would only
		// add confusing follow-on errors.
		return nil, ds.err()
	}
	if !checkNumbers(file.Body, &ds) {
		// Evaluating the rest could format one of those numbers.
		return nil, ds.err()
	}

	p := &Project{Filename: filename, Source: src, varIndex: map[string]int{}}
	ps := &parser{p: p, ds: &ds, fileStart: fileStart}
	ps.file(file.Body)
	ps.trialEvaluate()
	if err := ds.err(); err != nil {
		return nil, err
	}
	return p, nil
}

// parser holds the state of one Parse call.
type parser struct {
	p         *Project
	ds        *diagnostics
	fileStart hcl.Range
	jobPos    map[string]hcl.Range
	// exported maps OUTPOST_VAR_ names to the variables exported as them.
	exported map[string]string
}

func (ps *parser) file(body hcl.Body) {
	content, hd := body.Content(fileSchema)
	ps.ds.appendHCL(hd)
	if content == nil {
		return
	}
	if attr, ok := content.Attributes["project"]; ok {
		ps.projectName(attr)
	}
	// Variables first: expressions anywhere in the file may reference a
	// variable declared further down.
	for _, b := range content.Blocks {
		if b.Type == "variable" {
			ps.variable(b)
		}
	}
	ps.jobPos = map[string]hcl.Range{}
	var runnerAt *hcl.Range
	for _, b := range content.Blocks {
		switch b.Type {
		case "runner":
			if runnerAt != nil {
				ps.duplicateBlock(b, *runnerAt)
				continue
			}
			runnerAt = &b.DefRange
			ps.p.runner = ps.runner(b)
		case "job":
			ps.job(b)
		}
	}
	if len(ps.jobPos) == 0 {
		ps.ds.add(ps.fileStart, "Missing job", "A project file must declare at least one job block.")
	}
}

func (ps *parser) projectName(attr *hcl.Attribute) {
	v, ok := ps.constValue(attr)
	if !ok {
		return
	}
	if v.IsNull() {
		ps.ds.add(attr.Expr.Range(), "Invalid project name", "The project name must not be null.")
		return
	}
	name, set := ps.constString(attr)
	if !set {
		return // constString has reported why
	}
	if err := validate.ProjectName(name); err != nil {
		ps.ds.addf(attr.Expr.Range(), "Invalid project name", "%v.", err)
		return
	}
	ps.p.Name = name
}

func (ps *parser) duplicateBlock(b *hcl.Block, first hcl.Range) {
	ps.ds.addf(b.DefRange, "Duplicate "+b.Type+" block",
		"Only one %s block is allowed here; the first one is at %s.", b.Type, posOf(first))
}

func (ps *parser) variable(b *hcl.Block) {
	if len(b.Labels) != 1 {
		return // hcl has already reported it
	}
	name, labelRange := b.Labels[0], b.LabelRanges[0]
	content, hd := b.Body.Content(variableSchema)
	ps.ds.appendHCL(hd)

	if !hclsyntax.ValidIdentifier(name) {
		ps.ds.addf(labelRange, "Invalid variable name",
			"%s is not a valid variable name; it must be an identifier such as \"env\" or \"image_tag\" so that it can be referenced as var.<name>.",
			quote(name))
	}
	if i, dup := ps.p.varIndex[name]; dup {
		ps.ds.addf(labelRange, "Duplicate variable", "A variable named %s was already declared at %s.",
			quote(name), ps.p.Variables[i].Pos)
		return
	}
	if hclsyntax.ValidIdentifier(name) {
		ps.exportable(name, labelRange)
	}
	v := Variable{Name: name, Pos: posOf(b.DefRange)}
	if content != nil {
		if attr, ok := content.Attributes["default"]; ok {
			v.Default, v.HasDefault = ps.variableDefault(name, attr)
		}
		if attr, ok := content.Attributes["description"]; ok {
			v.Description, _ = ps.constString(attr)
		}
	}
	// Index even an invalid name, so that references to it do not also
	// produce "undeclared variable" errors.
	ps.p.varIndex[name] = len(ps.p.Variables)
	ps.p.Variables = append(ps.p.Variables, v)
}

// exportable checks that variable name has an environment variable of its
// own (see ExportedName).
func (ps *parser) exportable(name string, r hcl.Range) {
	env := ExportedName(name)
	if validate.EnvName(env) != nil {
		ps.ds.addf(r, "Invalid variable name",
			"Variable %s would be exported to steps as %s, which is not a valid environment variable name; use ASCII letters, digits, \"_\" and \"-\" in variable names.",
			quote(name), quote(env))
		return
	}
	if ps.exported == nil {
		ps.exported = map[string]string{}
	}
	if other, taken := ps.exported[env]; taken {
		ps.ds.addf(r, "Conflicting variable names",
			"Variables %s and %s would both be exported to steps as %s; rename one.", quote(other), quote(name), env)
		return
	}
	ps.exported[env] = name
}

// variableDefault converts a default to the string a -var flag would have
// given, because variables are strings once inside an expression.
func (ps *parser) variableDefault(name string, attr *hcl.Attribute) (string, bool) {
	v, ok := ps.constValue(attr)
	if !ok || v.IsNull() {
		return "", false
	}
	switch v.Type() {
	case cty.String:
		return v.AsString(), true
	case cty.Bool:
		if v.True() {
			return "true", true
		}
		return "false", true
	case cty.Number:
		// Arithmetic on in-range literals can still leave the float64 range,
		// and formatting such a number could take gigabytes.
		if !numberInRange(v.AsBigFloat()) {
			ps.ds.addf(attr.Expr.Range(), "Invalid default value",
				"The default of variable %s is out of range.", quote(name))
			return "", false
		}
		s, err := convert.Convert(v, cty.String)
		if err != nil {
			break
		}
		return s.AsString(), true
	}
	ps.ds.addf(attr.Expr.Range(), "Invalid default value",
		"The default of variable %s must be a string, number or bool, not %s.", quote(name), v.Type().FriendlyName())
	return "", false
}

func (ps *parser) runner(b *hcl.Block) *runnerSpec {
	content, hd := b.Body.Content(runnerSchema)
	ps.ds.appendHCL(hd)
	if content == nil {
		return nil
	}
	attr, ok := content.Attributes["profile"]
	if !ok {
		return nil
	}
	return &runnerSpec{profile: ps.checkRefs(attr.Expr)}
}

func (ps *parser) job(b *hcl.Block) {
	if len(b.Labels) != 1 {
		return
	}
	name, labelRange := b.Labels[0], b.LabelRanges[0]
	if err := validate.JobName(name); err != nil {
		ps.ds.addf(labelRange, "Invalid job name", "%v.", err)
	}
	if first, dup := ps.jobPos[name]; dup {
		ps.ds.addf(labelRange, "Duplicate job", "A job named %s was already declared at %s.",
			quote(name), posOf(first))
		return
	}
	ps.jobPos[name] = b.DefRange

	j := &Job{
		Name:         name,
		Pos:          posOf(b.DefRange),
		timeout:      DefaultTimeout,
		abortTimeout: DefaultAbortTimeout,
		priority:     DefaultPriority,
		retry:        RetryPolicy{Backoff: 1},
	}
	ps.p.Jobs = append(ps.p.Jobs, j)

	content, hd := b.Body.Content(jobSchema)
	ps.ds.appendHCL(hd)
	if content == nil {
		return
	}
	if attr, ok := content.Attributes["timeout"]; ok {
		if d, set := ps.constDuration(attr, false); set {
			j.timeout = d
		}
	}
	if attr, ok := content.Attributes["abort_timeout"]; ok {
		// Zero is allowed: it means "kill at once", which is a legitimate
		// choice for jobs that hold nothing worth cleaning up.
		if d, set := ps.constDuration(attr, true); set {
			j.abortTimeout = d
		}
	}
	if attr, ok := content.Attributes["priority"]; ok {
		if n, set := ps.constInt(attr, "priority", MinPriority, MaxPriority); set {
			j.priority = n
		}
	}
	if attr, ok := content.Attributes["env"]; ok {
		j.env = ps.checkRefs(attr.Expr)
	}

	var runnerAt, retryAt *hcl.Range
	stepPos := map[string]hcl.Range{}
	for _, sb := range content.Blocks {
		switch sb.Type {
		case "runner":
			if runnerAt != nil {
				ps.duplicateBlock(sb, *runnerAt)
				continue
			}
			runnerAt = &sb.DefRange
			j.runner = ps.runner(sb)
		case "retry":
			if retryAt != nil {
				ps.duplicateBlock(sb, *retryAt)
				continue
			}
			retryAt = &sb.DefRange
			ps.retry(sb, &j.retry)
		case "step":
			if s := ps.step(sb, stepPos); s != nil {
				j.steps = append(j.steps, s)
			}
		}
	}
	if len(stepPos) == 0 {
		ps.ds.addf(b.DefRange, "Missing step", "Job %s must have at least one step block.", quote(name))
	}
}

func (ps *parser) retry(b *hcl.Block, r *RetryPolicy) {
	content, hd := b.Body.Content(retrySchema)
	ps.ds.appendHCL(hd)
	if content == nil {
		return
	}
	if attr, ok := content.Attributes["attempts"]; ok {
		if n, set := ps.constInt(attr, "retry attempts", 0, MaxRetryAttempts); set {
			r.Attempts = n
		}
	}
	if attr, ok := content.Attributes["delay"]; ok {
		if d, set := ps.constDuration(attr, true); set {
			r.Delay = d
		}
	}
	if attr, ok := content.Attributes["backoff"]; ok {
		if f, set := ps.constBackoff(attr); set {
			r.Backoff = f
		}
	}
}

func (ps *parser) step(b *hcl.Block, seen map[string]hcl.Range) *stepSpec {
	if len(b.Labels) != 1 {
		return nil
	}
	name, labelRange := b.Labels[0], b.LabelRanges[0]
	if err := validate.StepName(name); err != nil {
		ps.ds.addf(labelRange, "Invalid step name", "%v.", err)
	}
	if first, dup := seen[name]; dup {
		ps.ds.addf(labelRange, "Duplicate step", "A step named %s was already declared in this job at %s.",
			quote(name), posOf(first))
		return nil
	}
	seen[name] = b.DefRange

	s := &stepSpec{name: name}
	content, hd := b.Body.Content(stepSchema)
	ps.ds.appendHCL(hd)
	if content == nil {
		return s
	}
	command, hasCommand := content.Attributes["command"]
	script, hasScript := content.Attributes["script"]
	switch {
	case hasCommand && hasScript:
		// Point at whichever of the two comes second: that is the one the
		// author most likely added by mistake.
		later := script
		if command.NameRange.Start.Byte > script.NameRange.Start.Byte {
			later = command
		}
		ps.ds.addf(later.NameRange, "Conflicting arguments",
			"Step %s sets both command and script; a step must set exactly one of them.", quote(name))
	case !hasCommand && !hasScript:
		ps.ds.addf(b.DefRange, "Missing command or script",
			"Step %s must set exactly one of command (a list of program and arguments) or script (a shell script).",
			quote(name))
	case hasCommand:
		s.command = ps.checkRefs(command.Expr)
	default:
		s.script = ps.checkRefs(script.Expr)
	}
	if attr, ok := content.Attributes["env"]; ok {
		s.env = ps.checkRefs(attr.Expr)
	}
	if attr, ok := content.Attributes["timeout"]; ok {
		s.timeout, _ = ps.constDuration(attr, false)
	}
	return s
}

// checkRefs makes sure that expr references only declared variables and
// the values every expression can see. Doing it here, rather than waiting
// for Resolve, means a typo in a rarely run job is caught by validate.
//
// It returns expr, or nil when a reference is bad: the file is rejected
// anyway, and dropping the expression keeps the trial evaluation from
// reporting the same mistake a second time in hcl's vaguer words.
func (ps *parser) checkRefs(expr hcl.Expression) hcl.Expression {
	bad := false
	for _, tr := range expr.Variables() {
		switch root := tr.RootName(); root {
		case "workspace", "project", "job":
		case "var":
			name, ok := varName(tr)
			if !ok {
				ps.ds.add(tr.SourceRange(), "Invalid reference",
					"A reference to var must name a variable, such as var.env.")
				bad = true
				continue
			}
			if _, declared := ps.p.varIndex[name]; !declared {
				ps.ds.addf(tr.SourceRange(), "Reference to undeclared variable",
					"There is no variable named %s; declare it with a variable %s block.", quote(name), quote(name))
				bad = true
			}
		default:
			ps.ds.addf(tr.SourceRange(), "Unknown reference",
				"There is no value named %s; expressions may only reference var.<name>, workspace, project and job.",
				quote(root))
			bad = true
		}
	}
	if bad {
		return nil
	}
	return expr
}

// varName returns the variable named by a traversal that starts with var,
// accepting both var.env and var["env"].
func varName(tr hcl.Traversal) (string, bool) {
	if len(tr) < 2 {
		return "", false
	}
	switch step := tr[1].(type) {
	case hcl.TraverseAttr:
		return step.Name, true
	case hcl.TraverseIndex:
		if k := step.Key; k.Type() == cty.String && k.IsKnown() && !k.IsNull() {
			return k.AsString(), true
		}
	}
	return "", false
}

// constValue evaluates an argument that must be a constant. ok is false
// after an error has been recorded; a null value means "not set".
func (ps *parser) constValue(attr *hcl.Attribute) (v cty.Value, ok bool) {
	if trs := attr.Expr.Variables(); len(trs) > 0 {
		ps.ds.addf(trs[0].SourceRange(), "Variables not allowed",
			"The %q argument must be a constant; var, workspace, project and job may only be used in runner profile, step command, script and env values.",
			attr.Name)
		return cty.NilVal, false
	}
	v, hd := attr.Expr.Value(nil)
	if ps.ds.appendHCL(hd) {
		return cty.NilVal, false
	}
	v, _ = v.UnmarkDeep()
	if !v.IsWhollyKnown() {
		ps.ds.addf(attr.Expr.Range(), "Invalid value", "The %q argument must be a known constant.", attr.Name)
		return cty.NilVal, false
	}
	return v, true
}

// constString returns a constant string argument; set is false when it is
// null or invalid.
func (ps *parser) constString(attr *hcl.Attribute) (s string, set bool) {
	v, ok := ps.constValue(attr)
	if !ok || v.IsNull() {
		return "", false
	}
	sv, err := convert.Convert(v, cty.String)
	if err != nil || sv.IsNull() {
		ps.typeError(attr.Name, attr.Expr.Range(), "string")
		return "", false
	}
	return sv.AsString(), true
}

func (ps *parser) typeError(name string, r hcl.Range, want string) {
	ps.ds.addf(r, "Incorrect attribute value type", "Inappropriate value for attribute %q: %s required.", name, want)
}

// constDuration parses a Go duration string. Negative durations are never
// meaningful; zero only where allowZero says it has a meaning.
func (ps *parser) constDuration(attr *hcl.Attribute, allowZero bool) (time.Duration, bool) {
	s, set := ps.constString(attr)
	if !set {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		ps.ds.addf(attr.Expr.Range(), "Invalid duration",
			"%s is not a valid duration for %s; use a Go duration string such as \"90s\", \"10m\" or \"1h30m\".",
			quote(s), attr.Name)
		return 0, false
	case d < 0 || (d == 0 && !allowZero):
		want := "greater than zero"
		if allowZero {
			want = "zero or more"
		}
		ps.ds.addf(attr.Expr.Range(), "Invalid duration", "%s must be %s, got %s.", attr.Name, want, quote(s))
		return 0, false
	}
	return d, true
}

// constNumber returns a constant number argument.
func (ps *parser) constNumber(attr *hcl.Attribute) (*big.Float, bool) {
	v, ok := ps.constValue(attr)
	if !ok || v.IsNull() {
		return nil, false
	}
	nv, err := convert.Convert(v, cty.Number)
	if err != nil || nv.IsNull() {
		ps.typeError(attr.Name, attr.Expr.Range(), "number")
		return nil, false
	}
	return nv.AsBigFloat(), true
}

func (ps *parser) constInt(attr *hcl.Attribute, what string, lo, hi int) (int, bool) {
	f, set := ps.constNumber(attr)
	if !set {
		return 0, false
	}
	if f.IsInt() && f.Cmp(big.NewFloat(float64(lo))) >= 0 && f.Cmp(big.NewFloat(float64(hi))) <= 0 {
		n, _ := f.Int64()
		return int(n), true
	}
	ps.ds.addf(attr.Expr.Range(), "Invalid "+what, "%s must be a whole number from %d to %d, got %s.",
		what, lo, hi, formatNumber(f))
	return 0, false
}

func (ps *parser) constBackoff(attr *hcl.Attribute) (float64, bool) {
	f, set := ps.constNumber(attr)
	if !set {
		return 0, false
	}
	v, _ := f.Float64()
	if f.IsInf() || math.IsInf(v, 0) || v < 1 {
		ps.ds.addf(attr.Expr.Range(), "Invalid retry backoff",
			"backoff must be a multiplier of at least 1, got %s.", formatNumber(f))
		return 0, false
	}
	return v, true
}

// formatNumber prints a number for an error message. It uses %g so that a
// huge number never expands into millions of digits.
func formatNumber(f *big.Float) string {
	return f.Text('g', 10)
}

// quote quotes a user-supplied string for a message, shortening very long
// ones so that one bad value cannot flood a terminal or a log.
func quote(s string) string {
	const max = 64
	r := []rune(s)
	if len(r) > max {
		return fmt.Sprintf("%q…", string(r[:max]))
	}
	return fmt.Sprintf("%q", s)
}
