package acl

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/outpost-run/outpost/jobspec/hcldiag"
)

// Level is a capability level within one area (projects, runners,
// operator, ACL). Levels are ordered: a higher one includes every lower
// one, so a check is one comparison.
type Level int

// Levels. Each area uses the ones its policies name; the order holds
// across areas so that, e.g., ProjectAdmin ⊇ ProjectSubmit ⊇ Read.
const (
	None Level = iota
	// Read is `read` in every area.
	Read
	// Submit is a project's `submit`; Register a runner's `register`;
	// Write operator's and acl's `write`. They share a rank: each is the
	// area's second level.
	Submit
	// Admin is a project's or the runners' `admin`.
	Admin
)

// Second-rank aliases, so the table reads in each area's own words.
const (
	Register = Submit
	Write    = Submit
)

// Area is what a capability is about.
type Area string

// Areas of a policy.
const (
	AreaProject  Area = "project"
	AreaRunner   Area = "runner"
	AreaOperator Area = "operator"
	AreaACL      Area = "acl"
)

// levels are the words each area's policies may use.
var levels = map[Area]map[string]Level{
	AreaProject:  {"read": Read, "submit": Submit, "admin": Admin},
	AreaRunner:   {"register": Register, "admin": Admin},
	AreaOperator: {"read": Read, "write": Write},
	AreaACL:      {"read": Read, "write": Write},
}

// LevelName is the word for l in area a ("submit", "write"…).
func LevelName(a Area, l Level) string {
	for w, v := range levels[a] {
		if v == l {
			return w
		}
	}
	if l == None {
		return "none"
	}
	return fmt.Sprintf("level(%d)", int(l))
}

// ProjectRule grants Level on the projects whose names match Pattern
// (path.Match syntax: `*` matches any run of characters).
type ProjectRule struct {
	Pattern string
	Level   Level
}

// Policy is one parsed policy document.
type Policy struct {
	Projects []ProjectRule
	Runner   Level
	Operator Level
	ACL      Level
}

type policyFile struct {
	Projects []*projectBlock `hcl:"project,block"`
	Runner   *levelBlock     `hcl:"runner,block"`
	Operator *levelBlock     `hcl:"operator,block"`
	ACL      hcl.Expression  `hcl:"acl,optional"`
}

type projectBlock struct {
	Name     string         `hcl:"name,label"`
	Policy   hcl.Expression `hcl:"policy"`
	DefRange hcl.Range      `hcl:",def_range"`
}

type levelBlock struct {
	Policy hcl.Expression `hcl:"policy"`
}

// MaxPolicyBytes bounds a policy document.
const MaxPolicyBytes = 64 << 10

// ParsePolicy parses a policy document; errors name file:line:col.
func ParsePolicy(filename string, src []byte) (*Policy, error) {
	if len(src) > MaxPolicyBytes {
		return nil, fmt.Errorf("%s: policy is %d bytes, over the %d byte limit", filename, len(src), MaxPolicyBytes)
	}
	f, diags := hclparse.NewParser().ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, hcldiag.Error(diags)
	}
	var pf policyFile
	if diags := gohcl.DecodeBody(f.Body, nil, &pf); diags.HasErrors() {
		return nil, hcldiag.Error(diags)
	}
	p := &Policy{}
	var all hcl.Diagnostics
	seen := map[string]bool{}
	for _, b := range pf.Projects {
		l, d := levelOf(AreaProject, b.Policy, true)
		all = append(all, d...)
		if err := checkPattern(b.Name); err != nil {
			all = append(all, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid project pattern", Detail: err.Error(), Subject: b.DefRange.Ptr()})
			continue
		}
		if seen[b.Name] {
			all = append(all, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate project rule", Detail: fmt.Sprintf("project %q is given twice", b.Name), Subject: b.DefRange.Ptr()})
			continue
		}
		seen[b.Name] = true
		p.Projects = append(p.Projects, ProjectRule{Pattern: b.Name, Level: l})
	}
	if pf.Runner != nil {
		var d hcl.Diagnostics
		p.Runner, d = levelOf(AreaRunner, pf.Runner.Policy, true)
		all = append(all, d...)
	}
	if pf.Operator != nil {
		var d hcl.Diagnostics
		p.Operator, d = levelOf(AreaOperator, pf.Operator.Policy, true)
		all = append(all, d...)
	}
	if pf.ACL != nil {
		var d hcl.Diagnostics
		p.ACL, d = levelOf(AreaACL, pf.ACL, false)
		all = append(all, d...)
	}
	if all.HasErrors() {
		return nil, hcldiag.Error(all)
	}
	return p, nil
}

// levelOf evaluates a policy expression to a level of area a. A missing
// optional attribute (acl) is None.
func levelOf(a Area, expr hcl.Expression, required bool) (Level, hcl.Diagnostics) {
	var word string
	if v, _ := expr.Value(nil); v.IsNull() {
		if !required {
			return None, nil
		}
		return None, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Missing required argument",
			Detail: fmt.Sprintf("%s: policy = one of %s is required", a, wordsOf(a)), Subject: expr.Range().Ptr()}}
	}
	if d := gohcl.DecodeExpression(expr, nil, &word); d.HasErrors() {
		return None, d
	}
	l, ok := levels[a][word]
	if !ok {
		return None, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid policy",
			Detail: fmt.Sprintf("%s policy %q: want one of %s", a, word, wordsOf(a)), Subject: expr.Range().Ptr()}}
	}
	return l, nil
}

func wordsOf(a Area) string {
	var words []string
	for w := range levels[a] {
		words = append(words, fmt.Sprintf("%q", w))
	}
	slices.Sort(words)
	return strings.Join(words, ", ")
}

// checkPattern accepts project names and globs of them.
func checkPattern(p string) error {
	if p == "" {
		return fmt.Errorf("an empty pattern matches nothing; use \"*\" for every project")
	}
	if len(p) > 128 {
		return fmt.Errorf("pattern %q is over 128 characters", p)
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.*", r)) {
			return fmt.Errorf("pattern %q: %q is not allowed (letters, digits, - _ . and * globs)", p, r)
		}
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("pattern %q: %w", p, err)
	}
	return nil
}

// projectRule returns the most specific rule of rules matching project:
// an exact name over any glob, a longer glob over a shorter one (ties by
// fewer stars, then by the higher level, so the result does not depend
// on the order policies are attached).
func projectRule(rules []ProjectRule, project string) (ProjectRule, bool) {
	var best ProjectRule
	found := false
	for _, r := range rules {
		if ok, _ := path.Match(r.Pattern, project); !ok {
			continue
		}
		if !found || moreSpecific(r, best) {
			best, found = r, true
		}
	}
	return best, found
}

func moreSpecific(a, b ProjectRule) bool {
	ga, gb := strings.Contains(a.Pattern, "*"), strings.Contains(b.Pattern, "*")
	switch {
	case ga != gb:
		return !ga
	case len(a.Pattern) != len(b.Pattern):
		return len(a.Pattern) > len(b.Pattern)
	case strings.Count(a.Pattern, "*") != strings.Count(b.Pattern, "*"):
		return strings.Count(a.Pattern, "*") < strings.Count(b.Pattern, "*")
	}
	return a.Level > b.Level
}
