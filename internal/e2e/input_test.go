package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outpost-run/outpost/internal/testcluster"
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
	resp, err := http.DefaultClient.Do(req)
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
