package runner

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/outpost-run/outpost/rpc"
)

// serverList is where the runner may connect: the addresses it was started
// with, then the ones the servers announce (every server of the Raft
// configuration). The announced ones are kept in the data dir, so a runner
// started with a single -server address still finds the others after that
// server dies, and after its own restart.
type serverList struct {
	mu         sync.Mutex
	configured []string
	learned    []string
	// at is the address in use; moving goes to the one after it.
	at     string
	path   string // "" keeps the learned list in memory only
	logger hclog.Logger
}

// serversFile is the data-dir file holding the announced servers.
const serversFile = "servers.json"

func newServerList(configured []string, dataDir string, learn bool, logger hclog.Logger) *serverList {
	l := &serverList{logger: logger}
	for _, a := range configured {
		if n, err := rpc.NormalizeAddress(a); err == nil && !slices.Contains(l.configured, n) {
			l.configured = append(l.configured, n)
		}
	}
	if learn && dataDir != "" {
		l.path = filepath.Join(dataDir, serversFile)
		if b, err := os.ReadFile(l.path); err == nil {
			var saved struct{ Servers []string }
			if err := json.Unmarshal(b, &saved); err != nil {
				logger.Warn("ignoring unreadable list of servers", "file", l.path, "error", err)
			} else {
				l.learned = l.clean(saved.Servers)
			}
		}
	}
	if !learn {
		l.path = "-"
	}
	if all := l.allLocked(); len(all) > 0 {
		l.at = all[0]
	}
	return l
}

// clean normalizes announced addresses and drops duplicates and the
// configured ones.
func (l *serverList) clean(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		n, err := rpc.NormalizeAddress(a)
		if err != nil || slices.Contains(l.configured, n) || slices.Contains(out, n) {
			continue
		}
		out = append(out, n)
	}
	return out
}

func (l *serverList) allLocked() []string {
	return append(slices.Clone(l.configured), l.learned...)
}

// count is how many servers the runner knows of.
func (l *serverList) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.configured) + len(l.learned)
}

// current is the server to connect to.
func (l *serverList) current() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.at
}

// next moves past the current server, which failed, and returns the one to
// try now.
func (l *serverList) next() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	all := l.allLocked()
	i := slices.Index(all, l.at)
	l.at = all[(i+1)%len(all)]
	return l.at
}

// learn takes the servers a server announced.
func (l *serverList) learn(addrs []string) {
	if len(addrs) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.path == "-" {
		return
	}
	learned := l.clean(addrs)
	if slices.Equal(learned, l.learned) {
		return
	}
	l.logger.Info("servers of the cluster", "servers", fmt.Sprint(append(slices.Clone(l.configured), learned...)))
	l.learned = learned
	if l.path == "" {
		return
	}
	b, _ := json.Marshal(struct{ Servers []string }{learned})
	tmp := l.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		l.logger.Warn("could not keep the list of servers", "error", err)
		return
	}
	if err := os.Rename(tmp, l.path); err != nil {
		l.logger.Warn("could not keep the list of servers", "error", err)
	}
}
