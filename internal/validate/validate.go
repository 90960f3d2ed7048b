// Package validate is the one table of what a valid name, label and size
// is in outpost. Every place a value enters checks it here: the CLI when it
// parses a flag (exit 2 with the reason), the project and profile parsers,
// the RPC handlers (a typed invalid_argument error) and the FSM when it
// applies an entry that carries the value. One rule, written once, so a
// value the CLI accepts is never refused later by a server in a retry loop,
// and a value a curl request sends cannot slip past rules the CLI keeps.
//
// Each function checks one field and returns nil or an error that says what
// is wrong and what would be right, in the form
//
//	"a b" is not a valid runner name; it must start with a letter or digit, ...
//
// The rules exist because the values end up in tables (`runner list`),
// in the k=v,k=v renderings of labels and in pending reasons such as
// {env=prod}, in file names on runners and in state keys: whitespace,
// control characters, "=" and "," break every one of them.
//
// A rule may be loosened in a later version, never tightened without care:
// the FSM applies these checks, and every server replays the same log.
//
// The package imports only the standard library, so the runner, the CLI
// and the FSM can all use it without linking server code.
package validate

import (
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// Limits. Exported so that help texts and messages quote the same numbers.
const (
	// MaxNameLength bounds project, job, step, workspace and profile names:
	// they end up in state keys, log prefixes and file names on runners.
	MaxNameLength = 63
	// MaxNodeNameLength bounds server and runner names (-name), which are
	// host names by default. The runner inside a server agent is
	// identified as NAME-runner, which must fit MaxRunnerIDLength.
	MaxNodeNameLength = 120
	// MaxRunnerIDLength bounds a runner's id.
	MaxRunnerIDLength = 128
	// MaxLabels is how many labels a runner or a profile target may have.
	MaxLabels = 64
	// MaxLabelLength bounds a label's key and its value.
	MaxLabelLength = 63
	// MinCapacity and MaxCapacity bound how many jobs a runner runs at once.
	MaxCapacity = 4096
	MinCapacity = 1
)

// The rules in words, as the messages give them.
const (
	nameRule = "a name must start with a lowercase letter or digit, " +
		"contain only lowercase letters, digits, \"_\" and \"-\", and be at most 63 characters long"
	workspaceRule = "it must match [a-zA-Z0-9][a-zA-Z0-9_.-]* and be at most 63 characters long"
	profileRule   = "it must start with a letter or digit, contain only letters, digits, \"_\", \".\" and \"-\", " +
		"and be at most 63 characters long"
	nodeNameRule = "it must start with a letter or digit, contain only letters, digits, \"_\", \".\" and \"-\", " +
		"and be at most 120 characters long"
	runnerIDRule = "it must start with a letter or digit, contain only letters, digits, \"_\", \".\" and \"-\", " +
		"and be at most 128 characters long"
	labelKeyRule = "it must start with a letter or digit, contain only letters, digits, \"_\", \".\", \"/\" and \"-\", " +
		"and be at most 63 characters long"
	labelValueRule = "it may be empty, or contain only letters, digits and \"_\", \".\", \":\", \"/\", \"@\", \"+\", \"-\", " +
		"and be at most 63 characters long"
	envNameRule = "use letters, digits and \"_\", not starting with a digit"
)

// ProjectName checks a project's name (project = "NAME").
func ProjectName(s string) error {
	return check(s, "project name", nameRule, MaxNameLength, lowerStart, lowerRest)
}

// JobName checks a job's name (job "NAME" { }).
func JobName(s string) error {
	return check(s, "job name", nameRule, MaxNameLength, lowerStart, lowerRest)
}

// StepName checks a step's name (step "NAME" { }).
func StepName(s string) error {
	return check(s, "step name", nameRule, MaxNameLength, lowerStart, lowerRest)
}

// Workspace checks a workspace name (-workspace). Looser than job names:
// workspaces often mirror branch names or environments such as "EU-prod.2".
func Workspace(s string) error {
	return check(s, "workspace name", workspaceRule, MaxNameLength, alnum, nameChar)
}

// ProfileName checks a runner profile's name.
func ProfileName(s string) error {
	return check(s, "profile name", profileRule, MaxNameLength, alnum, nameChar)
}

// RunnerName checks a runner's display name (-name; the host name by
// default).
func RunnerName(s string) error {
	return check(s, "runner name", nodeNameRule, MaxNodeNameLength, alnum, nameChar)
}

// ServerName checks a server's node name (-name): its Raft id and its name
// in the gossip pool.
func ServerName(s string) error {
	return check(s, "server name", nodeNameRule, MaxNodeNameLength, alnum, nameChar)
}

// RunnerID checks a runner's id ("r-" and hex when the runner makes it).
func RunnerID(s string) error {
	return check(s, "runner id", runnerIDRule, MaxRunnerIDLength, alnum, nameChar)
}

// LabelKey checks the key of a runner label or of a profile's target label.
func LabelKey(s string) error {
	return check(s, "label key", labelKeyRule, MaxLabelLength, alnum, labelKeyChar)
}

// LabelValue checks the value of the label key.
func LabelValue(key, v string) error {
	if v == "" {
		return nil
	}
	return check(v, "value for label "+quote(key), labelValueRule, MaxLabelLength, labelValueChar, labelValueChar)
}

// Labels checks a set of labels: how many, then each key and value, in key
// order so the same map always gives the same error.
func Labels(m map[string]string) error {
	if len(m) > MaxLabels {
		return fmt.Errorf("%d labels is too many; at most %d are allowed", len(m), MaxLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if err := Label(k, m[k]); err != nil {
			return err
		}
	}
	return nil
}

// Label checks one label.
func Label(key, value string) error {
	if err := LabelKey(key); err != nil {
		return err
	}
	return LabelValue(key, value)
}

// Capacity checks how many jobs a runner runs at once.
func Capacity(n int64) error {
	if n < MinCapacity || n > MaxCapacity {
		return fmt.Errorf("capacity %d is out of range; a runner runs %d to %d jobs at once", n, MinCapacity, MaxCapacity)
	}
	return nil
}

// EnvName checks an environment variable's name. Anything else is silently
// dropped or mangled by some shells.
func EnvName(s string) error {
	if s == "" || !envStart(s[0]) || !all(s[1:], envChar) {
		return fmt.Errorf("%s is not a valid environment variable name; %s", quote(s), envNameRule)
	}
	return nil
}

// JobID checks a full job id: "j-" and 16 lower-case hex digits.
func JobID(s string) error {
	if len(s) != 18 || s[:2] != "j-" || !all(s[2:], lowerHex) {
		return fmt.Errorf("%s is not a job id (\"j-\" and 16 lower-case hex digits)", quote(s))
	}
	return nil
}

// check applies a rule: a first byte, the bytes after it, and a length.
func check(s, what, rule string, max int, first, rest func(byte) bool) error {
	if s == "" || len(s) > max || !first(s[0]) || !all(s[1:], rest) {
		return fmt.Errorf("%s is not a valid %s; %s", quote(s), what, rule)
	}
	return nil
}

func all(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func lowerStart(c byte) bool   { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
func lowerRest(c byte) bool    { return lowerStart(c) || c == '_' || c == '-' }
func alnum(c byte) bool        { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
func nameChar(c byte) bool     { return alnum(c) || c == '_' || c == '.' || c == '-' }
func labelKeyChar(c byte) bool { return nameChar(c) || c == '/' }
func labelValueChar(c byte) bool {
	return nameChar(c) || c == ':' || c == '/' || c == '@' || c == '+'
}
func envStart(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }
func envChar(c byte) bool  { return envStart(c) || c >= '0' && c <= '9' }
func lowerHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

// quote quotes a value for a message, shortening a long one so that one bad
// value cannot flood a terminal or a log. %q also makes a newline or a
// control character visible instead of breaking the line.
func quote(s string) string {
	const max = 64
	if r := []rune(s); len(r) > max {
		return strconv.Quote(string(r[:max])) + "…"
	}
	return strconv.Quote(s)
}

// ACLName checks an ACL policy's or user's name.
func ACLName(what, s string) error {
	return check(s, what, profileRule, MaxNameLength, alnum, nameChar)
}

// GossipKey checks a gossip encryption key: base64 (standard, padded) of
// 16, 24 or 32 bytes (AES-128, -192, -256), as `outpost operator keygen`
// prints.
func GossipKey(s string) error {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("gossip key is not base64; make one with `outpost operator keygen`")
	}
	if n := len(b); n != 16 && n != 24 && n != 32 {
		return fmt.Errorf("gossip key is %d bytes; it must be 16, 24 or 32 (make one with `outpost operator keygen`)", n)
	}
	return nil
}
