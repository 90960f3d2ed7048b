package agent

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDebugHandlers(t *testing.T) {
	mux := http.NewServeMux()
	registerDebugHandlers(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	cases := []struct {
		path     string
		status   int
		contains string // in the body; "" checks only that one came back
	}{
		{"/debug/pprof/", http.StatusOK, "goroutine"},
		{"/debug/pprof/heap?debug=1&gc=1", http.StatusOK, "heap profile:"},
		{"/debug/pprof/goroutine?debug=1", http.StatusOK, "TestDebugHandlers"},
		{"/debug/pprof/allocs", http.StatusOK, ""},
		{"/debug/pprof/profile?seconds=0.2", http.StatusOK, ""},
		{"/debug/pprof/trace?seconds=0.1", http.StatusOK, ""},
		{"/debug/pprof/nothing", http.StatusNotFound, `no profile "nothing"`},
		{"/debug/pprof/profile?seconds=-1", http.StatusBadRequest, "positive number"},
		{"/debug/pprof/profile?seconds=abc", http.StatusBadRequest, "positive number"},
		{"/debug/pprof/trace?seconds=100000", http.StatusBadRequest, "at most"},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if len(body) == 0 {
				t.Fatal("empty body")
			}
			if tc.contains != "" && !strings.Contains(string(body), tc.contains) {
				t.Fatalf("body lacks %q:\n%.400s", tc.contains, body)
			}
		})
	}
}
