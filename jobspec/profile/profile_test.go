package profile

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

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
	out, err := Parse("r.hcl", []byte(Render(in)))
	if err != nil {
		t.Fatalf("%v\n%s", err, Render(in))
	}
	out[0].Source, out[0].Filename = nil, ""
	if !proto.Equal(out[0], in) {
		t.Fatalf("round trip:\n got %v\nwant %v", out[0], in)
	}
}
