package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/rpc"
)

func TestJobPageTokens(t *testing.T) {
	f := state.JobFilter{Project: "web", Status: rpc.JobFailed, CreatedAfter: time.Unix(1700000000, 5)}
	c := state.JobCursor{CreateIndex: 1 << 40, ID: "j-0123456789abcdef"}
	got, err := jobCursor(jobToken(c, f), f)
	if err != nil || *got != c {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, c)
	}
	if got, err := jobCursor("", f); got != nil || err != nil {
		t.Fatalf("empty token: %+v, %v; want the first page", got, err)
	}
	other := f
	other.Project = "api"
	for name, tc := range map[string]struct {
		token string
		f     state.JobFilter
		says  string
	}{
		"other filters": {jobToken(c, f), other, "other filters"},
		"garbage":       {"%%%", f, "not a job page token"},
		"runner token":  {keyToken(tokenRunners, "r-1"), f, "not a job page token"},
		"truncated":     {jobToken(c, f)[:4], f, "not a job page token"},
	} {
		if _, err := jobCursor(tc.token, tc.f); connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want invalid_argument saying %q", name, err, tc.says)
		}
	}
}

func TestKeyPages(t *testing.T) {
	var items []string
	for i := range 250 {
		items = append(items, fmt.Sprintf("r-%03d", i))
	}
	id := func(s string) string { return s }
	var walked []string
	token := ""
	for pages := 0; ; pages++ {
		page, next, err := keyPage(items, id, tokenRunners, "runner", token, 0)
		if err != nil {
			t.Fatal(err)
		}
		walked = append(walked, page...)
		if next == "" {
			if pages != 2 {
				t.Fatalf("%d pages of the default size for 250 items, want 3", pages+1)
			}
			break
		}
		token = next
	}
	if fmt.Sprint(walked) != fmt.Sprint(items) {
		t.Fatalf("walked %d items, not the list of %d in order", len(walked), len(items))
	}
	// A page token survives its item going away: the page goes on after
	// where the item was.
	page, next, err := keyPage(append(items[:100:100], items[101:]...), id, tokenRunners, "runner", keyToken(tokenRunners, "r-100"), 2)
	if err != nil || fmt.Sprint(page) != "[r-101 r-102]" || next == "" {
		t.Fatalf("after a removed key: %v next %q, %v", page, next, err)
	}
	if _, _, err := keyPage(items, id, tokenProjects, "project", token, 0); err == nil {
		t.Fatal("a runner token was taken for a project listing")
	}
	if n := pageSize(5000); n != rpc.MaxPageSize {
		t.Fatalf("pageSize(5000) = %d, want the cap %d", n, rpc.MaxPageSize)
	}
}
