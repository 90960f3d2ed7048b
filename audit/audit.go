// Package audit writes the audit log: one JSON line per write and per
// refused request a server handled, never a secret (issue 15). It owns the
// log file, the connect interceptor and the HTTP middleware that feed it;
// it imports only acl and the wire schema, never agent, fsm or handlers.
package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Record is one line of the audit log.
type Record struct {
	Time string `json:"time"`
	// Who is acl.Identity.Who(): "user:NAME", "token:ACCESSOR" or
	// "anonymous".
	Who    string `json:"who"`
	Source string `json:"source"`
	// Method is the connect procedure, or the HTTP method and path.
	Method string `json:"method"`
	// Object names what the request is about (project, job, runner,
	// profile...), drawn from the request's id fields only.
	Object string `json:"object,omitempty"`
	// Result is "ok", or the error code and message.
	Result string `json:"result"`
	Node   string `json:"node"`
}

// Log is an audit log file. Each line is written and flushed to the
// kernel at once (one write(2), no fsync): a crash of the process loses
// nothing, and a write costs microseconds on the job path. Safe for
// concurrent use.
type Log struct {
	path   string
	node   string
	logger hclog.Logger

	mu sync.Mutex
	f  *os.File
	bw *bufio.Writer
	// failed is set after a write error was logged, so a full disk logs
	// once, not once per request.
	failed bool
}

// Open opens (creating, mode 0600, in a 0700 directory) the audit log at
// path for server node.
func Open(path, node string, logger hclog.Logger) (*Log, error) {
	l := &Log{path: path, node: node, logger: logger.Named("audit")}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := l.Reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

// Path is the file the log writes.
func (l *Log) Path() string { return l.path }

// Reopen closes the file and opens the path again: after logrotate moved
// it (SIGHUP), lines go to the new file.
func (l *Log) Reopen() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("audit: open %s: %w", l.path, err)
	}
	// A file made by an older umask or by hand is made private.
	_ = f.Chmod(0o600)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_ = l.bw.Flush()
		_ = l.f.Close()
	}
	l.f, l.bw, l.failed = f, bufio.NewWriterSize(f, 4096), false
	return nil
}

// Write appends one record, filling in its time and node.
func (l *Log) Write(r Record) {
	if l == nil {
		return
	}
	r.Time = time.Now().UTC().Format(time.RFC3339Nano)
	r.Node = l.node
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	_, err = l.bw.Write(b)
	if err == nil {
		err = l.bw.Flush()
	}
	if err != nil && !l.failed {
		l.failed = true
		l.logger.Error("cannot write the audit log; requests go on unrecorded until it is reopened (SIGHUP)", "path", l.path, "error", err)
	}
}

// Close flushes and closes the file.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	_ = l.bw.Flush()
	err := l.f.Close()
	l.f = nil
	return err
}
