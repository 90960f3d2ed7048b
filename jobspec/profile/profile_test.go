package profile

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/zclconf/go-cty/cty"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-run/outpost/internal/validate"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

func TestParseGood(t *testing.T) {
	src := `
runner_profile "prod-linux" {
  target_labels = { env = "prod", os = "linux" }
  mode          = "on_demand"
  driver        = "exec"
  env           = { LOG_LEVEL = "info" }
  default       = true
  user          = "nobody"
  limits {
    memory     = "512MiB"
    processes  = 64
    open_files = 256
    cpu        = "10m"
    cpus       = 1.5
    file_size  = "1GB"
  }
}

runner_profile "edge-7" {
  target_runner_id = "r-7"
}
`
	got, err := Parse("profiles.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []*pb.RunnerProfile{
		{Name: "prod-linux", TargetLabels: map[string]string{"env": "prod", "os": "linux"}, Mode: "on_demand", Driver: "exec",
			Env: map[string]string{"LOG_LEVEL": "info"}, Default: true, User: "nobody",
			Limits: &pb.Limits{MemoryBytes: 512 << 20, Processes: 64, OpenFiles: 256, CpuSeconds: 600, Cpus: 1.5, FileSizeBytes: 1e9}},
		{Name: "edge-7", TargetRunnerId: "r-7", Mode: "static"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d profiles, want %d", len(got), len(want))
	}
	for i := range want {
		got[i].Source, got[i].Filename = nil, ""
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("profile %d:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
}

func TestParseBad(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"unknown attribute", "runner_profile \"a\" {\n  colour = \"red\"\n}\n",
			`p.hcl:2:3: Unsupported argument: An argument named "colour" is not expected here.`},
		{"both targets", "runner_profile \"a\" {\n  target_runner_id = \"r-1\"\n  target_labels = { a = \"b\" }\n}\n",
			`p.hcl:1:1: Conflicting targets: Set target_runner_id or target_labels, not both.`},
		{"bad mode", "runner_profile \"a\" {\n  mode = \"vm\"\n}\n",
			`p.hcl:1:1: Invalid mode: mode "vm": use "static" or "on_demand".`},
		{"bad size", "runner_profile \"a\" {\n  mode = \"on_demand\"\n  limits {\n    memory = \"lots\"\n  }\n}\n",
			`p.hcl:3:3: Invalid limits: memory: "lots" is not a size (e.g. 512MiB, 2GB)`},
		{"size that wraps", "runner_profile \"a\" {\n  mode = \"on_demand\"\n  limits {\n    memory = \"17592186044416m\"\n  }\n}\n",
			`p.hcl:3:3: Invalid limits: memory: "17592186044416m" is too large a size (at most 16 EiB)`},
		{"cpus zero", "runner_profile \"a\" {\n  mode = \"on_demand\"\n  limits {\n    cpus = 0\n  }\n}\n",
			`p.hcl:3:3: Invalid limits: cpus: 0 is not a number of cores from 0.01 to 4096 (e.g. 0.5, 2)`},
		{"cpus huge", "runner_profile \"a\" {\n  mode = \"on_demand\"\n  limits {\n    cpus = 5e9\n  }\n}\n",
			`p.hcl:3:3: Invalid limits: cpus: 5e+09 is not a number of cores from 0.01 to 4096 (e.g. 0.5, 2)`},
		{"cpus not a number", "runner_profile \"a\" {\n  mode = \"on_demand\"\n  limits {\n    cpus = \"two\"\n  }\n}\n",
			`p.hcl:4:13: Unsuitable value type: Unsuitable value: a number is required`},
		{"limits on static", "runner_profile \"a\" {\n  limits {\n    processes = 5\n  }\n}\n",
			`p.hcl:1:1: Limits need on_demand: limits and user apply to on_demand executors; set mode = "on_demand".`},
		{"name too long", "runner_profile \"" + strings.Repeat("n", 64) + "\" {}\n",
			`p.hcl:1:1: Invalid profile name: "` + strings.Repeat("n", 64) + `" is not a valid profile name; it must start with a letter or digit, contain only letters, digits, "_", "." and "-", and be at most 63 characters long.`},
		{"name starts with a dot", "runner_profile \".a\" {}\n",
			`p.hcl:1:1: Invalid profile name: ".a" is not a valid profile name; it must start with a letter or digit, contain only letters, digits, "_", "." and "-", and be at most 63 characters long.`},
		{"label with a space", "runner_profile \"a\" {\n  target_labels = { \"my env\" = \"prod\" }\n}\n",
			`p.hcl:1:1: Invalid target label: "my env" is not a valid label key; it must start with a letter or digit, contain only letters, digits, "_", ".", "/" and "-", and be at most 63 characters long.`},
		{"label value with a newline", "runner_profile \"a\" {\n  target_labels = { env = \"prod\\n\" }\n}\n",
			`p.hcl:1:1: Invalid target label: "prod\n" is not a valid value for label "env"; it may be empty, or contain only letters, digits and "_", ".", ":", "/", "@", "+", "-", and be at most 63 characters long.`},
		{"bad target runner", "runner_profile \"a\" {\n  target_runner_id = \"r 1\"\n}\n",
			`p.hcl:1:1: Invalid target runner: "r 1" is not a valid runner id; it must start with a letter or digit, contain only letters, digits, "_", "." and "-", and be at most 128 characters long.`},
		{"duplicate", "runner_profile \"a\" {}\nrunner_profile \"a\" {}\n",
			`p.hcl:2:1: Duplicate profile: runner_profile "a" is defined more than once.`},
		{"syntax", "runner_profile \"a\" {\n", `p.hcl:1:20: Unclosed configuration block: There is no closing brace for this block before the end of the file. This may be caused by incorrect brace nesting elsewhere in this file.`},
		{"empty", "", `p.hcl: no runner_profile blocks; a profile file holds one or more ` + "`" + `runner_profile "NAME" { ... }` + "`"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.hcl", []byte(tc.src))
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tc.want {
				t.Fatalf("error:\n got %s\nwant %s", err, tc.want)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	labels := map[string]string{"env": "prod", "os": "linux"}
	cases := []struct {
		id     string
		target map[string]string
		want   bool
	}{
		{"", nil, true},
		{"", map[string]string{"env": "prod"}, true},
		{"", map[string]string{"env": "prod", "os": "linux"}, true},
		{"", map[string]string{"env": "dev"}, false},
		{"", map[string]string{"gpu": "true"}, false},
		{"r-1", nil, true},
		{"r-2", nil, false},
	}
	for _, tc := range cases {
		if got := Matches(tc.id, tc.target, "r-1", labels); got != tc.want {
			t.Errorf("Matches(%q, %v) = %t, want %t", tc.id, tc.target, got, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("runner_profile \"a\" {\n  target_labels = { env = \"prod\" }\n  mode = \"on_demand\"\n  limits { memory = \"1GiB\" }\n}\n"))
	f.Add([]byte("runner_profile \"b\" { target_runner_id = \"r-1\" }"))
	f.Add([]byte("runner_profile \"c\" {\n  mode = \"on_demand\"\n  limits {\n    memory = \"64MiB\"\n    cpus = 0.25\n  }\n}\n"))
	f.Add([]byte("runner_profile \"d\" {\n  mode = \"on_demand\"\n  limits { cpus = -1 }\n}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		_, _ = Parse("fuzz.hcl", src)
	})
}

// TestRenderRoundTrip: Render's output parses back to the same profile,
// which is how `profile inspect` output can be fed to `profile set`.
func TestRenderRoundTrip(t *testing.T) {
	in := &pb.RunnerProfile{Name: "p", TargetLabels: map[string]string{"os": "linux"}, Mode: "on_demand", Driver: "exec",
		Limits: &pb.Limits{MemoryBytes: 64 << 20, Processes: 8, OpenFiles: 64, CpuSeconds: 30, Cpus: 0.25, FileSizeBytes: 1 << 20}}
	if out, src := renderParse(t, in); !proto.Equal(out, in) {
		t.Fatalf("round trip:\n got %v\nwant %v\n%s", out, in, src)
	}
}

// renderParse renders p and parses the text back, as `profile inspect`
// piped into `profile set` does, returning the profile read and the text.
func renderParse(t *testing.T, p *pb.RunnerProfile) (*pb.RunnerProfile, []byte) {
	t.Helper()
	src, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Parse("r.hcl", src)
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	out[0].Source, out[0].Filename = nil, ""
	return out[0], src
}

// TestRenderStrings: strings HCL reads specially, which Go quoting left
// as they were, come back as themselves (issue 14: `profile set -env
// HOME_DIR='${HOME}'` failed with "Variables not allowed").
func TestRenderStrings(t *testing.T) {
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			in := &pb.RunnerProfile{Name: "p", Mode: ModeOnDemand, Env: map[string]string{"V": tc.value, "EMPTY": ""}, User: tc.value}
			if out, src := renderParse(t, in); !proto.Equal(out, in) {
				t.Fatalf("round trip of %q:\n got %v\nwant %v\n%s", tc.value, out, in, src)
			}
		})
	}
}

var renderCases = []struct{ name, value string }{
	{"interpolation", "${HOME}"},
	{"escaped interpolation", "$${HOME}"},
	{"template directive", "100%{x}"},
	{"escaped directive", "%%{x}"},
	{"dollars before a brace", "$$$${x}"},
	{"trailing dollar", "cost: 5$"},
	{"control byte", "a\x01b"},
	{"nul", "a\x00b"},
	{"delete", "\x7f"},
	{"tab", "a\tb"},
	{"newline", "line 1\nline 2\n"},
	{"carriage return", "a\r\n"},
	{"unicode", "héllo, 世界 🚀"},
	{"not printable unicode", "soft\u00adhyphen\u2028line\ufeff"},
	{"quotes", `say "hi"`},
	{"backslashes", `C:\dir\n \\ \"`},
	{"heredoc marker", "<<EOF\nx\nEOF"},
	{"comment markers", "# not /* a */ comment // x"},
	{"empty", ""},
}

// TestRenderKeys: map keys that are HCL keywords come back as keys (a bare
// `for` opened a for expression).
func TestRenderKeys(t *testing.T) {
	keys := map[string]string{"for": "a", "if": "b", "in": "c", "null": "d", "true": "e", "false": "f", "endfor": "g", "FOR": "h"}
	in := &pb.RunnerProfile{Name: "p", Mode: ModeStatic, Env: keys, TargetLabels: keys}
	if out, src := renderParse(t, in); !proto.Equal(out, in) {
		t.Fatalf("round trip:\n got %v\nwant %v\n%s", out, in, src)
	}
}

// TestRenderLayout pins the text: attributes in a fixed order, map keys
// sorted, one per line, "=" aligned as hclwrite formats it.
func TestRenderLayout(t *testing.T) {
	in := &pb.RunnerProfile{Name: "prod", TargetLabels: map[string]string{"os": "linux", "env": "prod", "k8s.io/zone": "a"},
		Mode: "on_demand", Driver: "exec", Env: map[string]string{"HOME_DIR": "${HOME}", "A": "1"}, Default: true, User: "nobody",
		Limits: &pb.Limits{MemoryBytes: 512 << 20, Processes: 64, OpenFiles: 256, CpuSeconds: 600, Cpus: 1.5, FileSizeBytes: 1e9}}
	want := `runner_profile "prod" {
  target_labels = {
    env           = "prod"
    "k8s.io/zone" = "a"
    os            = "linux"
  }
  mode   = "on_demand"
  driver = "exec"
  env = {
    A        = "1"
    HOME_DIR = "$${HOME}"
  }
  default = true
  user    = "nobody"
  limits {
    memory     = "536870912"
    processes  = 64
    open_files = 256
    cpu        = "600s"
    cpus       = 1.5
    file_size  = "1000000000"
  }
}
`
	got, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if again, _ := Render(in); string(again) != want {
		t.Fatalf("second render differs:\n%s", again)
	}
}

// TestRenderInvalidUTF8: a string that is not UTF-8 has no HCL form, so
// Render says which one rather than writing U+FFFD in its place.
func TestRenderInvalidUTF8(t *testing.T) {
	cases := []struct {
		name string
		p    *pb.RunnerProfile
		want string
	}{
		{"env value", &pb.RunnerProfile{Name: "p", Env: map[string]string{"A": "ok", "B": "caf\xe9"}},
			`runner profile "p": env "B": "caf\xe9" is not valid UTF-8; profiles are HCL, which must be UTF-8 text`},
		{"env key", &pb.RunnerProfile{Name: "p", Env: map[string]string{"\xff": "x"}},
			`runner profile "p": env key: "\xff" is not valid UTF-8; profiles are HCL, which must be UTF-8 text`},
		{"label value", &pb.RunnerProfile{Name: "p", TargetLabels: map[string]string{"os": "\xc0"}},
			`runner profile "p": target_labels "os": "\xc0" is not valid UTF-8; profiles are HCL, which must be UTF-8 text`},
		{"user", &pb.RunnerProfile{Name: "p", User: "\xed\xa0\x80"},
			`runner profile "p": user: "\xed\xa0\x80" is not valid UTF-8; profiles are HCL, which must be UTF-8 text`},
		{"name", &pb.RunnerProfile{Name: "p\x80"},
			`runner profile "p\x80": name: "p\x80" is not valid UTF-8; profiles are HCL, which must be UTF-8 text`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, err := Render(tc.p)
			if err == nil {
				t.Fatalf("no error; rendered:\n%s", src)
			}
			if err.Error() != tc.want {
				t.Fatalf("error:\n got %s\nwant %s", err, tc.want)
			}
		})
	}
	// A file is checked by the parser, which names the place.
	_, err := Parse("p.hcl", []byte("runner_profile \"p\" {\n  env = { A = \"caf\xe9\" }\n}\n"))
	if err == nil || !strings.Contains(err.Error(), "p.hcl:2:19: Invalid character encoding") {
		t.Fatalf("Parse of a file that is not UTF-8: got %v", err)
	}
}

// FuzzRenderRoundTrip: whatever parses renders to text that parses back to
// the same profile, and renders the same again. The committed corpus is in
// testdata/fuzz/FuzzRenderRoundTrip.
func FuzzRenderRoundTrip(f *testing.F) {
	f.Add([]byte("runner_profile \"a\" {\n  env = { A = \"$${HOME}\", B = \"100%%{x}\" }\n}\n"))
	f.Add([]byte("runner_profile \"b\" {\n  mode = \"on_demand\"\n  user = \"\\u0001\\t\\n\\\"\\\\\"\n  limits {\n    memory = \"1GiB\"\n    cpus = 0.1\n  }\n}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		first, err := Parse("fuzz.hcl", src)
		if err != nil {
			return
		}
		for _, p := range first {
			p.Source, p.Filename = nil, ""
		}
		var text []byte
		for _, p := range first {
			r, err := Render(p)
			if err != nil {
				t.Fatalf("Render of a parsed profile: %v", err)
			}
			text = append(text, r...)
		}
		second, err := Parse("rendered.hcl", text)
		if err != nil {
			t.Fatalf("rendered text does not parse: %v\n%s", err, text)
		}
		if len(second) != len(first) {
			t.Fatalf("%d profiles became %d\n%s", len(first), len(second), text)
		}
		var again []byte
		for i, p := range second {
			p.Source, p.Filename = nil, ""
			if !proto.Equal(p, first[i]) {
				t.Fatalf("round trip:\n got %v\nwant %v\n%s", p, first[i], text)
			}
			r, err := Render(p)
			if err != nil {
				t.Fatal(err)
			}
			again = append(again, r...)
		}
		if string(again) != string(text) {
			t.Fatalf("render is not stable:\n%s\nthen:\n%s", text, again)
		}
	})
}

// FuzzRenderValues: a profile built from flags, with any name, key and
// strings, renders to HCL that parses back to it when its names pass the
// checks; a string that is not UTF-8 is refused by Render. Parsing leaves
// strings in Unicode normal form C, as HCL does for every string.
func FuzzRenderValues(f *testing.F) {
	for _, tc := range renderCases {
		f.Add("p", "V", tc.value, tc.value, "prod")
	}
	f.Add("p", "for", "x", "", "")
	f.Add("p", "V", "caf\xe9", "", "")
	f.Fuzz(func(t *testing.T, name, key, value, user, label string) {
		in := &pb.RunnerProfile{Name: name, Mode: ModeOnDemand, Env: map[string]string{key: value}, User: user,
			TargetLabels: map[string]string{"os": label}}
		src, err := Render(in)
		// Each on its own: two halves of a character are valid together.
		if !allUTF8(name, key, value, user, label) {
			if err == nil {
				t.Fatalf("Render took a string that is not UTF-8:\n%s", src)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if validate.ProfileName(name) != nil || validate.EnvName(key) != nil || validate.Labels(in.TargetLabels) != nil {
			// The parser refuses these; it must be for what they are,
			// not because the text is not HCL.
			if _, err := Parse("flags", src); err == nil || !strings.Contains(err.Error(), ": Invalid ") {
				t.Fatalf("want a validation error, got %v\n%s", err, src)
			}
			return
		}
		out, err := Parse("flags", src)
		if err != nil {
			t.Fatalf("%v\n%s", err, src)
		}
		want := &pb.RunnerProfile{Name: name, Mode: ModeOnDemand, Env: map[string]string{key: nfc(value)}, User: nfc(user),
			TargetLabels: map[string]string{"os": label}}
		out[0].Source, out[0].Filename = nil, ""
		if !proto.Equal(out[0], want) {
			t.Fatalf("round trip:\n got %v\nwant %v\n%s", out[0], want, src)
		}
	})
}

func allUTF8(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

// nfc is s as HCL reads it back: every HCL string value is a cty string,
// which is kept in normal form C.
func nfc(s string) string { return cty.StringVal(s).AsString() }
