package validate

import (
	"fmt"
	"strings"
	"testing"
)

func TestRules(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("a", n) }
	type fn = func(string) error
	value := func(s string) error { return LabelValue("k", s) }
	tests := []struct {
		rule  string
		check fn
		ok    []string
		bad   []string
	}{
		{"project name", ProjectName,
			[]string{"web", "a", "0day", "my_proj-2", long(63)},
			[]string{"", "Web", "-web", "_web", "we b", "web\n", "wéb", "a.b", long(64)}},
		{"job name", JobName,
			[]string{"deploy", "build-2"},
			[]string{"", "Deploy", "de ploy", "x\ty"}},
		{"step name", StepName,
			[]string{"s", "step_1"},
			[]string{"", "S", "s/1"}},
		{"workspace", Workspace,
			[]string{"default", "EU-prod.2", "a", long(63)},
			[]string{"", "-prod", ".x", "a b", "a/b", long(64)}},
		{"profile name", ProfileName,
			[]string{"prod-linux", "Dev.1", "x_y"},
			[]string{"", ".a", "a b", "a\nb", long(64)}},
		{"runner name", RunnerName,
			[]string{"edge-1", "host.example.com", "EDGE_2", long(120)},
			[]string{"", "edge 1", "edge\n1", "edge\t", "-edge", "é", "a,b", "a=b", long(121)}},
		{"server name", ServerName,
			[]string{"s1", "server-a.lan"},
			[]string{"", "s 1", "s\r"}},
		{"runner id", RunnerID,
			[]string{"r-0123abcd", "dev-runner", long(128)},
			[]string{"", "r 1", "r\x00", long(129)}},
		{"label key", LabelKey,
			[]string{"env", "os", "example.com/zone", "a_b-c.d", long(63)},
			[]string{"", "a b", "a=b", "a,b", "{a}", "/a", ".a", "a\n", long(64)}},
		{"label value", value,
			[]string{"", "prod", "eu-west-1", "1.2.3", "ubuntu:22.04", "a/b", "x@y", "c++", long(63)},
			[]string{"a b", "a,b", "a=b", "{x}", "a\nb", `"q"`, long(64)}},
		{"env name", EnvName,
			[]string{"A", "_x", "PATH", "OUTPOST_VAR_ENV", "a1"},
			[]string{"", "1A", "A-B", "A B", "A=B"}},
		{"job id", JobID,
			[]string{"j-0123456789abcdef"},
			[]string{"", "j-", "j-0123456789ABCDEF", "j-0123456789abcde", "x-0123456789abcdef", "j-0123456789abcdefa"}},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			t.Parallel()
			for _, s := range tt.ok {
				if err := tt.check(s); err != nil {
					t.Errorf("%q: %v; want valid", s, err)
				}
			}
			for _, s := range tt.bad {
				err := tt.check(s)
				if err == nil {
					t.Errorf("%q: valid; want an error", s)
					continue
				}
				// The message quotes the value, so a newline in it shows
				// as \n and cannot break the line it is printed on.
				if msg := err.Error(); strings.ContainsAny(msg, "\n\r\t\x00") {
					t.Errorf("%q: message %q has a control character", s, msg)
				}
			}
		})
	}
}

// The messages say what was given and what the rule is, in the words the
// project file reference and the CLI show.
func TestMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want string
	}{
		{ProjectName("Web"), `"Web" is not a valid project name; a name must start with a lowercase letter or digit, contain only lowercase letters, digits, "_" and "-", and be at most 63 characters long`},
		{Workspace("bad ws"), `"bad ws" is not a valid workspace name; it must match [a-zA-Z0-9][a-zA-Z0-9_.-]* and be at most 63 characters long`},
		{RunnerName("edge\n1"), `"edge\n1" is not a valid runner name; it must start with a letter or digit, contain only letters, digits, "_", "." and "-", and be at most 120 characters long`},
		{Label("has space", "x"), `"has space" is not a valid label key; it must start with a letter or digit, contain only letters, digits, "_", ".", "/" and "-", and be at most 63 characters long`},
		{Label("env", "pro d"), `"pro d" is not a valid value for label "env"; it may be empty, or contain only letters, digits and "_", ".", ":", "/", "@", "+", "-", and be at most 63 characters long`},
		{Capacity(100000000), `capacity 100000000 is out of range; a runner runs 1 to 4096 jobs at once`},
		{Capacity(0), `capacity 0 is out of range; a runner runs 1 to 4096 jobs at once`},
		{EnvName("1BAD"), `"1BAD" is not a valid environment variable name; use letters, digits and "_", not starting with a digit`},
		{RunnerName(strings.Repeat("x", 200)), `"` + strings.Repeat("x", 64) + `"… is not a valid runner name; it must start with a letter or digit, contain only letters, digits, "_", "." and "-", and be at most 120 characters long`},
	}
	for _, tt := range tests {
		if tt.err == nil || tt.err.Error() != tt.want {
			t.Errorf("got  %v\nwant %s", tt.err, tt.want)
		}
	}
}

func TestLabels(t *testing.T) {
	t.Parallel()
	if err := Labels(nil); err != nil {
		t.Errorf("no labels: %v", err)
	}
	if err := Labels(map[string]string{"env": "prod", "os": "linux"}); err != nil {
		t.Errorf("good labels: %v", err)
	}
	// The first bad label in key order is reported, whatever the map order.
	bad := map[string]string{"z z": "1", "a": "b c", "m": "ok"}
	for range 20 {
		if err := Labels(bad); err == nil || !strings.Contains(err.Error(), `"b c"`) {
			t.Fatalf("got %v, want the error about label a", err)
		}
	}
	many := map[string]string{}
	for i := range MaxLabels + 1 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	if err := Labels(many); err == nil || !strings.Contains(err.Error(), "at most 64") {
		t.Errorf("%d labels: %v, want too many", len(many), err)
	}
}

// Whatever a rule accepts prints safely in a table and in a k=v,k=v list;
// whatever it refuses gets a one-line message.
func FuzzRules(f *testing.F) {
	for _, s := range []string{"", "edge-1", "a b", "a\nb", "k=v", "x,y", "{env=prod}", "é", "j-0123456789abcdef"} {
		f.Add(s)
	}
	checks := map[string]func(string) error{
		"project": ProjectName, "workspace": Workspace, "profile": ProfileName, "runner": RunnerName,
		"runner id": RunnerID, "label key": LabelKey, "label value": func(s string) error { return LabelValue("k", s) },
		"env": EnvName, "job id": JobID,
	}
	f.Fuzz(func(t *testing.T, s string) {
		for name, check := range checks {
			err := check(s)
			if err == nil {
				// Environment names have no length limit of their own; a
				// runner id holds a node name and "-runner".
				limit := MaxNodeNameLength
				if name == "runner id" {
					limit = MaxRunnerIDLength
				}
				if strings.ContainsAny(s, " \t\r\n\x00=,{}\"'") || (name != "env" && len(s) > limit) {
					t.Errorf("%s rule accepts %q", name, s)
				}
				continue
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("%s rule: message %q spans lines", name, err)
			}
		}
	})
}
