package server

import (
	"fmt"
	"sort"
	"strings"

	"github.com/outpost-run/outpost/acl"
	c "github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
)

// Access is how a method is authorized.
type Access int

// Kinds of access. Every method of every service has one in methodRules.
const (
	// AccessOpen: no token needed (health checks).
	AccessOpen Access = iota + 1
	// AccessCertificate: authenticated by the caller's certificate (a
	// server, or a runner proving its id), which the TLS layer checks in
	// front of this interceptor; no token is asked for.
	AccessCertificate
	// AccessLogin: no token; throttled per user and source address.
	AccessLogin
	// AccessBootstrap: no token; succeeds once (see ACLService.Bootstrap).
	AccessBootstrap
	// AccessToken: any valid token, about itself (logout, token self).
	AccessToken
	// AccessGlobal: the level in a global area (runner, operator, acl).
	AccessGlobal
	// AccessProject: the level on the project the request is about. The
	// interceptor checks the token has it on some project; the handler,
	// once it knows the project, checks that one.
	AccessProject
	// AccessFiltered: a list that shows only what the token may read on
	// projects; a token with read on no project is refused.
	AccessFiltered
	// AccessAnyProject: the level on at least one project, for what is
	// shared by projects (runner profiles).
	AccessAnyProject
)

// Rule is one row of the method table.
type Rule struct {
	Access Access
	Area   acl.Area
	Level  acl.Level
}

func openRule() Rule { return Rule{Access: AccessOpen} }
func cert() Rule     { return Rule{Access: AccessCertificate} }
func anyToken() Rule { return Rule{Access: AccessToken} }
func global(a acl.Area, l acl.Level) Rule {
	return Rule{Access: AccessGlobal, Area: a, Level: l}
}
func onProject(l acl.Level) Rule { return Rule{Access: AccessProject, Area: acl.AreaProject, Level: l} }
func filtered() Rule             { return Rule{Access: AccessFiltered, Area: acl.AreaProject, Level: acl.Read} }
func anyProject(l acl.Level) Rule {
	return Rule{Access: AccessAnyProject, Area: acl.AreaProject, Level: l}
}

// methodRules is the declared table procedure → required capability that
// the ACL interceptor enforces (website/acl.md prints it; a test fails
// when a method of the schema is missing).
var methodRules = map[string]Rule{
	c.JobServiceSubmitJobProcedure:      onProject(acl.Submit),
	c.JobServiceRetryJobProcedure:       onProject(acl.Submit),
	c.JobServiceGetJobProcedure:         onProject(acl.Read),
	c.JobServiceListJobsProcedure:       filtered(),
	c.JobServiceCancelJobProcedure:      onProject(acl.Submit),
	c.JobServiceReadLogsProcedure:       onProject(acl.Read),
	c.JobServiceDeleteJobProcedure:      onProject(acl.Admin),
	c.JobServicePinJobProcedure:         onProject(acl.Submit),
	c.JobServiceGarbageCollectProcedure: global(acl.AreaOperator, acl.Write),

	c.RunnerServiceConnectProcedure:           cert(),
	c.RunnerServiceListRunnersProcedure:       global(acl.AreaRunner, acl.Register),
	c.RunnerServiceGetRunnerProcedure:         global(acl.AreaRunner, acl.Register),
	c.RunnerServiceRunnerActionProcedure:      global(acl.AreaRunner, acl.Admin),
	c.RunnerServiceCreateRunnerTokenProcedure: global(acl.AreaRunner, acl.Register),
	c.RunnerServiceListRunnerTokensProcedure:  global(acl.AreaRunner, acl.Register),
	c.RunnerServiceRevokeRunnerTokenProcedure: global(acl.AreaRunner, acl.Admin),

	// The gossip keyring: listing and changing it are one method, and a
	// key is a secret, so all of it takes operator write.
	c.KeyringServiceGossipKeyringProcedure: global(acl.AreaOperator, acl.Write),

	c.AgentServiceStatusProcedure: openRule(),

	c.OperatorServiceMembersProcedure:    global(acl.AreaOperator, acl.Read),
	c.OperatorServiceRaftPeersProcedure:  global(acl.AreaOperator, acl.Read),
	c.OperatorServiceRemovePeerProcedure: global(acl.AreaOperator, acl.Write),

	c.ClusterServiceApplyProcedure:            cert(),
	c.ClusterServiceReadIndexProcedure:        cert(),
	c.ClusterServiceRunnerHeartbeatsProcedure: cert(),

	// Runner profiles say where jobs run: any project reader may read
	// them (a job's targeting names them), only operators change them.
	c.ProjectServiceSetProfileProcedure:    global(acl.AreaOperator, acl.Write),
	c.ProjectServiceListProfilesProcedure:  anyProject(acl.Read),
	c.ProjectServiceGetProfileProcedure:    anyProject(acl.Read),
	c.ProjectServiceDeleteProfileProcedure: global(acl.AreaOperator, acl.Write),
	c.ProjectServiceApplyProjectProcedure:  onProject(acl.Admin),
	c.ProjectServiceListProjectsProcedure:  filtered(),
	c.ProjectServiceGetProjectProcedure:    onProject(acl.Read),
	c.ProjectServiceDeleteProjectProcedure: onProject(acl.Admin),

	c.ACLServiceBootstrapProcedure:    {Access: AccessBootstrap},
	c.ACLServiceUpsertPolicyProcedure: global(acl.AreaACL, acl.Write),
	c.ACLServiceListPoliciesProcedure: global(acl.AreaACL, acl.Read),
	c.ACLServiceGetPolicyProcedure:    global(acl.AreaACL, acl.Read),
	c.ACLServiceDeletePolicyProcedure: global(acl.AreaACL, acl.Write),
	c.ACLServiceCreateTokenProcedure:  global(acl.AreaACL, acl.Write),
	c.ACLServiceListTokensProcedure:   global(acl.AreaACL, acl.Read),
	// Any token may read itself (`acl token info -self`); another token
	// takes acl read, which the handler checks.
	c.ACLServiceGetTokenProcedure:    anyToken(),
	c.ACLServiceRevokeTokenProcedure: global(acl.AreaACL, acl.Write),
	c.ACLServiceCreateUserProcedure:  global(acl.AreaACL, acl.Write),
	c.ACLServiceListUsersProcedure:   global(acl.AreaACL, acl.Read),
	c.ACLServiceDeleteUserProcedure:  global(acl.AreaACL, acl.Write),
	c.ACLServiceSetPasswordProcedure: global(acl.AreaACL, acl.Write),
	c.ACLServiceLoginProcedure:       {Access: AccessLogin},
	c.ACLServiceLogoutProcedure:      anyToken(),
}

// httpRules are the API's endpoints that are not connect methods, by
// path prefix, checked by HTTPGuard with the same resolution.
var httpRules = map[string]Rule{
	// A snapshot holds the whole state (token hashes, job environments)
	// and a restore replaces it: both ways take operator write.
	"/v1/operator/snapshot": global(acl.AreaOperator, acl.Write),
	"/debug/pprof/":         global(acl.AreaOperator, acl.Write),
}

// MethodRules returns a copy of the method table, for docs and tests.
func MethodRules() map[string]Rule {
	out := make(map[string]Rule, len(methodRules))
	for k, v := range methodRules {
		out[k] = v
	}
	return out
}

// HTTPRules returns a copy of the table of non-connect endpoints.
func HTTPRules() map[string]Rule {
	out := make(map[string]Rule, len(httpRules))
	for k, v := range httpRules {
		out[k] = v
	}
	return out
}

// String is how website/acl.md names the rule.
func (r Rule) String() string {
	switch r.Access {
	case AccessOpen:
		return "none (open)"
	case AccessCertificate:
		return "certificate (server or runner)"
	case AccessLogin:
		return "none (throttled login)"
	case AccessBootstrap:
		return "none (once)"
	case AccessToken:
		return "any token (about itself)"
	case AccessGlobal:
		return acl.Need(r.Area, r.Level, "")
	case AccessProject:
		return acl.Need(r.Area, r.Level, "") + " on the request's project"
	case AccessFiltered:
		return "project read (filtered)"
	case AccessAnyProject:
		return acl.Need(r.Area, r.Level, "") + " on any project"
	}
	return "?"
}

// MethodTable renders the method table as the Markdown rows website/acl.md
// holds (a test keeps the page in sync): procedure, then what it needs.
func MethodTable() string {
	var rows []string
	for p, r := range methodRules {
		rows = append(rows, fmt.Sprintf("| `%s` | %s |", strings.TrimPrefix(p, "/outpost.v1."), r))
	}
	for p, r := range httpRules {
		rows = append(rows, fmt.Sprintf("| `%s` (HTTP) | %s |", p, r))
	}
	sort.Strings(rows)
	return "| method | needs |\n|---|---|\n" + strings.Join(rows, "\n") + "\n"
}
