package acl

import (
	"crypto/sha256"
	"fmt"
)

// Authorizer answers what one caller may do: the union of its policies,
// or everything for a management token.
type Authorizer struct {
	management bool
	projects   []ProjectRule
	runner     Level
	operator   Level
	acl        Level
}

// Management is the authorizer of a management token, and of every
// caller when ACLs are off.
func Management() *Authorizer { return &Authorizer{management: true} }

// Deny is an authorizer that allows nothing.
func Deny() *Authorizer { return &Authorizer{} }

// NewAuthorizer merges policies: a project pattern given by several gets
// the highest level any gives it; the other areas the highest level.
func NewAuthorizer(policies ...*Policy) *Authorizer {
	a := &Authorizer{}
	byPattern := map[string]int{}
	for _, p := range policies {
		if p == nil {
			continue
		}
		for _, r := range p.Projects {
			if i, ok := byPattern[r.Pattern]; ok {
				a.projects[i].Level = max(a.projects[i].Level, r.Level)
				continue
			}
			byPattern[r.Pattern] = len(a.projects)
			a.projects = append(a.projects, r)
		}
		a.runner = max(a.runner, p.Runner)
		a.operator = max(a.operator, p.Operator)
		a.acl = max(a.acl, p.ACL)
	}
	return a
}

// IsManagement reports whether a allows everything.
func (a *Authorizer) IsManagement() bool { return a.management }

// Project is the level a has on project name: that of the most specific
// matching rule, which may lower what a broader glob gives.
func (a *Authorizer) Project(name string) Level {
	if a.management {
		return Admin
	}
	r, ok := projectRule(a.projects, name)
	if !ok {
		return None
	}
	return r.Level
}

// AnyProject reports whether a has at least l on some project, which is
// what a call about a project not yet known (a list, a job by id) needs
// before the handler checks the project itself.
func (a *Authorizer) AnyProject(l Level) bool {
	if a.management {
		return true
	}
	for _, r := range a.projects {
		if r.Level >= l {
			return true
		}
	}
	return false
}

// Level is a's level in a global area (runner, operator, acl).
func (a *Authorizer) Level(area Area) Level {
	if a.management {
		return Admin
	}
	switch area {
	case AreaRunner:
		return a.runner
	case AreaOperator:
		return a.operator
	case AreaACL:
		return a.acl
	}
	return None
}

// Allows reports whether a has level l in area; for AreaProject, on
// project (or, with project "", on some project).
func (a *Authorizer) Allows(area Area, l Level, project string) bool {
	if area == AreaProject {
		if project == "" {
			return a.AnyProject(l)
		}
		return a.Project(project) >= l
	}
	return a.Level(area) >= l
}

// Need names a capability for a PermissionDenied message.
func Need(area Area, l Level, project string) string {
	switch {
	case area == AreaProject && project != "":
		return fmt.Sprintf("project %q %s", project, LevelName(area, l))
	case area == AreaProject:
		return fmt.Sprintf("project %s", LevelName(area, l))
	case area == AreaACL:
		return "acl " + LevelName(area, l)
	}
	return fmt.Sprintf("%s %s", area, LevelName(area, l))
}

// HashSecret is how a token's secret is kept and looked up: its SHA-256.
// Secrets are 256 random bits, so a fast hash is enough.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// AnonymousPolicy is the policy, when an operator creates it, of callers
// that send no token.
const AnonymousPolicy = "anonymous"
