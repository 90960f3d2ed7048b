package server

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"sort"
	"time"

	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/rpc"
)

// pageSize is the size of the page a request asks for: rpc.DefaultPageSize
// unless it says, at most rpc.MaxPageSize whatever it says.
func pageSize(asked uint32) int {
	switch {
	case asked == 0:
		return rpc.DefaultPageSize
	case asked > rpc.MaxPageSize:
		return rpc.MaxPageSize
	}
	return int(asked)
}

// Page tokens are opaque to clients: base64 (URL alphabet) of a kind byte
// and the position after which the next page starts. A job token names a
// position in the newest-first order (create index and id) and carries a
// hash of the filters it was made with, so it cannot silently continue a
// different listing; runner and project tokens name the last key.
const (
	tokenJobs     byte = 1
	tokenRunners  byte = 2
	tokenProjects byte = 3
)

func badToken(what string) error {
	return invalid("page_token: not a %s page token from this server's previous answer; start again without it", what)
}

// filterHash ties a job page token to the filters of its listing.
func filterHash(f state.JobFilter) uint32 {
	h := fnv.New32a()
	stamp := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixNano()
	}
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%d\x00%d", f.Status, f.Project, f.Name, f.Workspace, stamp(f.CreatedAfter), stamp(f.CreatedBefore))
	return h.Sum32()
}

func jobToken(c state.JobCursor, f state.JobFilter) string {
	b := []byte{tokenJobs}
	b = binary.AppendUvarint(b, c.CreateIndex)
	b = binary.BigEndian.AppendUint32(b, filterHash(f))
	b = append(b, c.ID...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// jobCursor decodes a job page token; nil for the first page.
func jobCursor(token string, f state.JobFilter) (*state.JobCursor, error) {
	if token == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 2 || b[0] != tokenJobs {
		return nil, badToken("job")
	}
	ci, n := binary.Uvarint(b[1:])
	if n <= 0 || len(b) < 1+n+4 {
		return nil, badToken("job")
	}
	b = b[1+n:]
	if binary.BigEndian.Uint32(b) != filterHash(f) {
		return nil, invalid("page_token: it was made for a listing with other filters; give the same filters, or start again without it")
	}
	return &state.JobCursor{CreateIndex: ci, ID: string(b[4:])}, nil
}

func keyToken(kind byte, key string) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{kind}, key...))
}

func tokenKey(kind byte, what, token string) (string, error) {
	if token == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 1 || b[0] != kind {
		return "", badToken(what)
	}
	return string(b[1:]), nil
}

// keyPage returns the page of items (sorted by key) that follows the
// token's key, and the token of the next page ("" on the last). Runners
// and projects are few next to jobs, so a page is cut from the full list.
func keyPage[T any](items []T, key func(T) string, kind byte, what, token string, size uint32) ([]T, string, error) {
	after, err := tokenKey(kind, what, token)
	if err != nil {
		return nil, "", err
	}
	start := 0
	if token != "" {
		start = sort.Search(len(items), func(i int) bool { return key(items[i]) > after })
	}
	items = items[start:]
	n := pageSize(size)
	if len(items) <= n {
		return items, "", nil
	}
	return items[:n], keyToken(kind, key(items[n-1])), nil
}
