package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-run/outpost/internal/testcluster"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Mistakes in a project file are reported with the place to fix them, by
// `job run` (the server evaluates the file) and `project validate` alike.
func TestBadProjectFile(t *testing.T) {
	e2e(t)
	s := startDev(t, testcluster.ServerOptions{})

	for _, tc := range []struct {
		name, src string
	}{
		{"syntax", `project = "bad"

job "oops" {
  step "s" {
    command = ["echo", "hi"
  }
}
`},
		{"semantics", `project = "bad"

job "oops" {
  timeout = "soon"
  step "s" {
    command = ["echo", "hi"]
  }
}
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, "bad.hcl", tc.src)
			posRE := regexp.MustCompile(`bad\.hcl:(\d+:\d+)`)

			run := cli(t, s, "job", "run", "-file", file, "oops")
			m := posRE.FindStringSubmatch(run.stderr)
			if run.code != 1 || m == nil {
				t.Fatalf("want exit 1 and bad.hcl:line:col on stderr; got %v", run)
			}
			validate := cli(t, s, "project", "validate", "-file", file)
			v := posRE.FindStringSubmatch(validate.stderr)
			if validate.code != 1 || v == nil {
				t.Fatalf("want exit 1 and bad.hcl:line:col on stderr; got %v", validate)
			}
			if m[1] != v[1] {
				t.Errorf("job run reports %s, project validate %s: the same mistake must have one position", m[0], v[0])
			}
		})
	}

	good := cli(t, s, "project", "validate", "-file", helloFile(t))
	if good.code != 0 || !strings.Contains(good.stdout, "valid") {
		t.Errorf("project validate of the example: %v", good)
	}
}

// The API answers plain JSON over HTTP/1.1, errors included, as curl sees it.
func TestJSONErrors(t *testing.T) {
	e2e(t)
	s := startDev(t, testcluster.ServerOptions{})

	for _, tc := range []struct {
		body, code string
	}{
		{`{"id":""}`, "invalid_argument"},
		{`{"id":"j-0000000000000000"}`, "not_found"},
	} {
		status, body := postJSON(t, s.Addr()+"/outpost.v1.JobService/GetJob", tc.body)
		var e struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("GetJob %s: HTTP %d, body is not JSON (%v): %s", tc.body, status, err, body)
			continue
		}
		if status < 400 || status > 499 || e.Code != tc.code || e.Message == "" {
			t.Errorf("GetJob %s: HTTP %d %s; want a 4xx with code %q and a message", tc.body, status, body, tc.code)
		}
	}
}

// postJSON posts body the way `curl -H 'Content-Type: application/json'`
// does: HTTP/1.1, no connect-specific headers.
func postJSON(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := testcluster.HTTPClient(t).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading the body: %v", url, err)
	}
	return resp.StatusCode, b
}

// Errors keep their reason, in the CLI and in the API's JSON alike (issue
// 13): an unknown id says "not found", an ambiguous prefix how many jobs
// it matches and which.
func TestErrorMessagesKeepReason(t *testing.T) {
	e2e(t)
	s := startDev(t, testcluster.ServerOptions{})

	for _, args := range [][]string{
		{"job", "status", "j-nope"},
		{"job", "logs", "j-nope"},
		{"job", "logs", "-f", "j-nope"},
		{"job", "cancel", "j-nope"},
		{"job", "retry", "j-nope"},
	} {
		r := cli(t, s, args...)
		if r.code != 1 || strings.TrimSpace(r.stderr) != `Error: job "j-nope": not found` {
			t.Errorf("want exit 1 and exactly `Error: job \"j-nope\": not found`; got %v", r)
		}
	}
	if r := cli(t, s, "runner", "inspect", "nope"); r.code != 1 || strings.TrimSpace(r.stderr) != `Error: runner "nope": not found` {
		t.Errorf("want `Error: runner \"nope\": not found`; got %v", r)
	}

	var ids []string
	for range 7 {
		ids = append(ids, runDetached(t, s, "-file", helloFile(t), "hello"))
	}
	slices.Sort(ids)
	want := `prefix "j-" matches 7 jobs: ` + strings.Join(ids[:5], ", ") + ", …"
	r := cli(t, s, "job", "status", "j-")
	if r.code != 1 || strings.TrimSpace(r.stderr) != "Error: "+want {
		t.Errorf("want exit 1 and `Error: %s`; got %v", want, r)
	}
	for _, tc := range []struct {
		body, code, message string
		status              int
	}{
		{`{"id":"j-nope"}`, "not_found", `job "j-nope": not found`, http.StatusNotFound},
		{`{"id":"j-"}`, "invalid_argument", want, http.StatusBadRequest},
	} {
		status, body := postJSON(t, s.Addr()+"/outpost.v1.JobService/GetJob", tc.body)
		e := jsonError(t, body)
		if status != tc.status || e.Code != tc.code || e.Message != tc.message {
			t.Errorf("GetJob %s: HTTP %d %s; want HTTP %d, code %q, message %q", tc.body, status, body, tc.status, tc.code, tc.message)
		}
	}
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func jsonError(t *testing.T, body []byte) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Errorf("error body is not JSON (%v): %.200s", err, body)
	}
	return e
}

// A request body over the server's limit is answered 413 Content Too
// Large, with Content-Length known or not, and the server goes on.
func TestOversizedBodyIs413(t *testing.T) {
	e2e(t)
	s := startDev(t, testcluster.ServerOptions{})
	url := s.Addr() + "/outpost.v1.JobService/GetJob"
	big := `{"id":"` + strings.Repeat("a", 5<<20) + `"}`

	status, body := postJSON(t, url, big)
	if e := jsonError(t, body); status != http.StatusRequestEntityTooLarge || e.Code != "resource_exhausted" || !strings.Contains(e.Message, "limit is 4194304 bytes") {
		t.Errorf("5 MiB body: HTTP %d %.300s; want 413, resource_exhausted and the limit", status, body)
	}

	// Chunked, so the server learns the size only by reading.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, io.MultiReader(strings.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = -1
	resp, err := testcluster.HTTPClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if e := jsonError(t, b); resp.StatusCode != http.StatusRequestEntityTooLarge || e.Code != "resource_exhausted" {
		t.Errorf("5 MiB chunked body: HTTP %d %.300s; want 413 resource_exhausted", resp.StatusCode, b)
	}

	if status, body := postJSON(t, url, `{"id":"j-0000000000000000"}`); status != http.StatusNotFound {
		t.Errorf("after the big bodies, GetJob: HTTP %d %s; want 404", status, body)
	}
}

// JSON from people is parsed strictly: a misspelt field is refused and
// named, not dropped. Binary protobuf, what runners and CLIs of other
// versions send, still takes fields it does not know.
func TestUnknownJSONFieldRefused(t *testing.T) {
	e2e(t)
	s := startDev(t, testcluster.ServerOptions{})

	for _, tc := range []struct{ path, body, want string }{
		{"/outpost.v1.JobService/GetJob", `{"idd":"j-0000000000000000"}`, `unknown field "idd" in GetJobRequest`},
		{"/outpost.v1.JobService/SubmitJob", `{"project":"hello","job":"hello","worksapce":"prod"}`, `unknown field "worksapce" in SubmitJobRequest`},
		{"/outpost.v1.ProjectService/SetProfile", `{"profile":{"name":"p","targetLabel":{"a":"b"}}}`, `unknown field "profile.targetLabel" in SetProfileRequest; RunnerProfile has the fields name, targetRunnerId, targetLabels`},
	} {
		status, body := postJSON(t, s.Addr()+tc.path, tc.body)
		if e := jsonError(t, body); status != http.StatusBadRequest || e.Code != "invalid_argument" || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s %s: HTTP %d %s; want 400 invalid_argument saying %q", tc.path, tc.body, status, body, tc.want)
		}
	}
	// The proto's own field names are JSON too.
	if status, body := postJSON(t, s.Addr()+"/outpost.v1.JobService/ListJobs", `{"count_only":true}`); status != http.StatusOK {
		t.Errorf("ListJobs with a snake_case field: HTTP %d %s; want 200", status, body)
	}

	// GetJobRequest{id} plus field 99, which no version has.
	msg, err := proto.Marshal(&pb.GetJobRequest{Id: "j-0000000000000000"})
	if err != nil {
		t.Fatal(err)
	}
	msg = protowire.AppendVarint(protowire.AppendTag(msg, 99, protowire.VarintType), 1)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.Addr()+"/outpost.v1.JobService/GetJob", bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/proto")
	resp, err := testcluster.HTTPClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("binary GetJob with an unknown field: HTTP %d %s; want 404 (decoded, the job is unknown)", resp.StatusCode, b)
	}
}

// A runner's settings are checked at start by the rules the servers
// apply: a bad one ends `runner agent` at once with exit 2 and the reason,
// where it used to start and then be refused at every reconnect.
func TestRunnerSettingsCheckedAtStart(t *testing.T) {
	e2e(t)
	s := startDev(t, testcluster.ServerOptions{})
	for _, tc := range []struct {
		flag, want string
	}{
		{"-capacity=100000000", "runner capacity 100000000 is out of range; a runner runs 1 to 4096 jobs at once"},
		{"-capacity=0", "runner capacity 0 is out of range"},
		{"-label=my env=prod", `invalid value "my env=prod" for flag -label: "my env" is not a valid label key`},
		{"-label=env=a,b", `"a,b" is not a valid value for label "env"`},
		{"-name=edge\n1", `"edge\n1" is not a valid runner name`},
	} {
		r := cli(t, s, "runner", "agent", "-server="+s.Addr(), "-gossip-port=-1", "-data-dir="+t.TempDir(), tc.flag)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stdout, "started") {
			t.Errorf("runner agent %q: want exit 2 with %q and no start; got %v", tc.flag, tc.want, r)
		}
	}
	// A config file goes through the same checks.
	cfg := writeFile(t, "runner.hcl", "runner {\n  labels = { \"has space\" = \"x\" }\n}\n")
	r := cli(t, s, "runner", "agent", "-server="+s.Addr(), "-gossip-port=-1", "-config="+cfg)
	if r.code != 2 || !strings.Contains(r.stderr, `"has space" is not a valid label key`) {
		t.Errorf("runner agent with a bad label in its config: want exit 2 and the reason; got %v", r)
	}
	// So does a profile's target label, before anything is sent.
	if r := cli(t, s, "runner", "profile", "set", "-name=p", "-target-label=os=lin ux"); r.code != 2 || !strings.Contains(r.stderr, `"lin ux" is not a valid value for label "os"`) {
		t.Errorf("profile set with a bad target label: want exit 2 and the reason; got %v", r)
	}
}

// A -var is data, not shell code, when the script takes it the two safe
// ways: as $OUTPOST_VAR_<NAME>, or pasted through shellquote(). A hostile
// value is printed as given and runs nothing, on a runner and with -local.
func TestVariablesReachScriptsSafely(t *testing.T) {
	e2e(t)
	s := startDev(t, testcluster.ServerOptions{})
	dir := recordDir(t)
	marker := filepath.Join(dir, "pwned")
	hostile := `$(touch ` + marker + `); it's ` + "`touch " + marker + "`" + ` "q" \ $HOME ${HOME} *`
	project := writeFile(t, "outpost.hcl", `project = "vars"

variable "msg" {}

variable "image-tag" {
  default = "v1"
}

job "say" {
  step "env" {
    script = "printf '[%s]\\n' \"$OUTPOST_VAR_MSG\" \"$OUTPOST_VAR_IMAGE_TAG\""
  }
  step "quoted" {
    script = "printf '[%s]\\n' ${shellquote(var.msg)}"
  }
}
`)
	want := "[" + hostile + "]\n[v1]\n[" + hostile + "]\n"
	for _, local := range []bool{false, true} {
		args := []string{"job", "run", "-file", project, "-var", "msg=" + hostile, "say"}
		if local {
			args = append(args[:2], append([]string{"-local"}, args[2:]...)...)
		}
		r := cliOK(t, s, args...)
		if r.stdout != want {
			t.Errorf("%v: stdout\n%q\nwant\n%q", args, r.stdout, want)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("%v: the value was run as shell code: %s exists", args, marker)
		}
	}
}

// A profile's strings are data: set from flags, shown by `inspect`, and
// that output given back to `set -file`, a value HCL would read as a
// template ("${HOME}", "%{x}") or with bytes Go and HCL quote differently
// comes back as given (issue 14: Go's %q rendering made the first `set`
// fail with "Variables not allowed").
func TestProfileStringsRoundTrip(t *testing.T) {
	e2e(t)
	s := startDev(t, testcluster.ServerOptions{})
	env := map[string]string{
		"HOME_DIR": "${HOME}",
		"PCT":      "100%{x}",
		"ODD":      "a\x01b\tc\nd \"q\" \\ é",
		"EMPTY":    "",
	}
	args := []string{"runner", "profile", "set", "-name=strings", "-target-label=os=linux"}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		args = append(args, "-env="+k+"="+env[k])
	}
	cliOK(t, s, args...)
	shown := cliOK(t, s, "runner", "profile", "inspect", "strings").stdout
	if !strings.Contains(shown, `HOME_DIR = "$${HOME}"`) {
		t.Errorf("inspect does not escape the interpolation:\n%s", shown)
	}

	cliOK(t, s, "runner", "profile", "set", "-file", writeFile(t, "strings.hcl", shown))
	if again := cliOK(t, s, "runner", "profile", "inspect", "strings").stdout; again != shown {
		t.Errorf("inspect after set -file of its own output:\n%s\nwant:\n%s", again, shown)
	}
	var got pb.RunnerProfile
	if err := protojson.Unmarshal([]byte(cliOK(t, s, "runner", "profile", "inspect", "-json", "strings").stdout), &got); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got.Env, env) || !maps.Equal(got.TargetLabels, map[string]string{"os": "linux"}) {
		t.Errorf("stored env %q, labels %q; want env %q", got.Env, got.TargetLabels, env)
	}

	// A value that is not UTF-8 has no HCL (or protobuf) form: a usage
	// error that names it, before anything is sent.
	r := cli(t, s, "runner", "profile", "set", "-name=bad", "-env=A=caf\xe9")
	if r.code != 2 || !strings.Contains(r.stderr, `env "A": "caf\xe9" is not valid UTF-8`) {
		t.Errorf("profile set with an env value that is not UTF-8: want exit 2 and the reason; got %v", r)
	}
}
