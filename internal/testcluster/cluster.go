package testcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Cluster is a set of servers that form one Raft cluster.
type Cluster struct {
	t       testing.TB
	Servers []*Server
	// token is the ACL management token, made once the cluster has a
	// leader, that every server's Client and Env send.
	token string
}

// Token returns the cluster's ACL management token.
func (c *Cluster) Token() string { return c.token }

// UseToken makes every server's Client and Env send token from now on:
// after a snapshot restore, say, which brings the other cluster's tokens.
func (c *Cluster) UseToken(token string) {
	c.token = token
	for _, s := range c.Servers {
		s.setToken(c.t, token)
	}
}

// bootstrapACL makes the management token through the first server (or
// takes token, when given) and hands it to every server.
func (c *Cluster) bootstrapACL(ctx context.Context, token string) error {
	if token == "" {
		var err error
		if token, err = bootstrapVia(ctx, c.Servers[0].client); err != nil {
			return fmt.Errorf("acl bootstrap: %w", err)
		}
	}
	c.token = token
	for _, s := range c.Servers {
		s.setToken(c.t, token)
	}
	return nil
}

// StartCluster starts n servers from the template opts and waits until all
// of them agree on a leader. Each gets its own name (opts.Name, default
// "server", plus "-1", "-2", ...), ports and data directory; opts.DataDir
// and the port fields are ignored for n > 1.
//
// A server of a larger cluster is started with -bootstrap-expect=n, its own
// -gossip-port and a -retry-join for every other server's gossip address.
func StartCluster(t testing.TB, n int, opts ServerOptions) *Cluster {
	t.Helper()
	return StartClusterEach(t, n, opts, nil)
}

// StartClusterEach is StartCluster with a hook that adjusts each server's
// options (index i from 0) after the template is applied and before any
// server starts: to put each server on an address of its own (Host) in a
// network namespace of its own (Prefix), say. The -retry-join addresses
// are made from each server's Host and gossip port after the hook ran;
// the hook must not change the name, ports or data directory.
func StartClusterEach(t testing.TB, n int, opts ServerOptions, each func(i int, o *ServerOptions)) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("testcluster: a cluster needs at least one server, not %d", n)
	}
	if n == 1 {
		if each != nil {
			each(0, &opts)
		}
		s := StartServer(t, opts)
		return &Cluster{t: t, Servers: []*Server{s}, token: s.Token()}
	}
	if opts.Dev {
		t.Fatalf("testcluster: a -dev agent cannot join a cluster")
	}
	for attempt := 1; ; attempt++ {
		c := launchCluster(t, n, opts, each)
		timeout := c.Servers[0].opts.ReadyTimeout
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := poll(ctx, func() (bool, string, error) { return c.agreed(ctx) })
		if err == nil {
			err = c.bootstrapACL(ctx, opts.ACLToken)
		}
		cancel()
		if err == nil {
			return c
		}
		// As in StartServer: a port taken by another process between
		// FreePort and the bind is fixed by starting over on new ones.
		if attempt < startAttempts && c.lostPortRace() {
			t.Logf("testcluster: a server lost a port race (%v); restarting the cluster on new ports", err)
			for _, s := range c.Servers {
				s.Kill()
			}
			continue
		}
		t.Fatalf("testcluster: %d servers did not agree on a leader within %v: %v", n, timeout, err)
	}
}

// launchCluster starts n servers that join each other, without waiting.
func launchCluster(t testing.TB, n int, opts ServerOptions, each func(int, *ServerOptions)) *Cluster {
	t.Helper()
	base := opts.Name
	if base == "" {
		base = "server"
	}
	all := make([]ServerOptions, n)
	for i := range all {
		o := opts
		o.Name = base + "-" + strconv.Itoa(i+1)
		o.HTTPPort, o.RaftPort, o.DataDir = 0, 0, ""
		o.BootstrapExpect = n
		o.GossipPort = FreePort(t)
		if each != nil {
			each(i, &o)
		}
		all[i] = o
	}
	c := &Cluster{t: t}
	for i, o := range all {
		o.RetryJoin = nil
		for j, p := range all {
			if j != i {
				o.RetryJoin = append(o.RetryJoin, net.JoinHostPort(p.host(), strconv.Itoa(p.GossipPort)))
			}
		}
		c.Servers = append(c.Servers, launchServer(t, o))
	}
	return c
}

func (c *Cluster) lostPortRace() bool {
	for _, s := range c.Servers {
		if s.Exited() && strings.Contains(s.Logs(), "address already in use") {
			return true
		}
	}
	return false
}

// agreed reports whether every server names the same leader.
func (c *Cluster) agreed(ctx context.Context) (bool, string, error) {
	leaders := map[string]bool{}
	var views []string
	for _, s := range c.Servers {
		if s.Exited() {
			return false, "", fmt.Errorf("%s exited (%s); log tail:\n%s", s.Name(), s.ExitState(), s.Tail(20))
		}
		st, err := s.Status(ctx)
		if err != nil {
			return false, fmt.Sprintf("%s: Status: %v", s.Name(), err), nil
		}
		leaders[st.Leader] = true
		views = append(views, fmt.Sprintf("%s sees leader %q", s.Name(), st.Leader))
	}
	if len(leaders) == 1 && !leaders[""] {
		return true, "", nil
	}
	return false, strings.Join(views, "; "), nil
}

// Addrs returns every server's API address.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		out[i] = s.Addr()
	}
	return out
}

// Leader asks every running server, in parallel, whether it leads, and
// returns the one that does. Frozen or dead servers are skipped. It is an
// error if none does, or several do (an old leader that has not yet noticed
// it was deposed): the caller should retry, or use WaitForLeader.
func (c *Cluster) Leader(ctx context.Context) (*Server, error) {
	type answer struct {
		s    *Server
		lead bool
		view string
	}
	answers := make([]answer, len(c.Servers))
	var wg sync.WaitGroup
	for i, s := range c.Servers {
		answers[i].s = s
		if s.Exited() {
			answers[i].view = s.Name() + " is not running"
			continue
		}
		wg.Go(func() {
			st, err := s.Status(ctx)
			if err != nil {
				answers[i].view = fmt.Sprintf("%s: %v", s.Name(), err)
				return
			}
			answers[i].lead = st.IsLeader
			answers[i].view = fmt.Sprintf("%s: leader %q, is_leader %v", s.Name(), st.Leader, st.IsLeader)
		})
	}
	wg.Wait()
	var leaders []*Server
	var views []string
	for _, a := range answers {
		if a.lead {
			leaders = append(leaders, a.s)
		}
		views = append(views, a.view)
	}
	switch len(leaders) {
	case 1:
		return leaders[0], nil
	case 0:
		return nil, errors.New("no server leads: " + strings.Join(views, "; "))
	default:
		return nil, errors.New("several servers claim to lead: " + strings.Join(views, "; "))
	}
}

// WaitForLeader waits until exactly one server leads and returns it.
func (c *Cluster) WaitForLeader(timeout time.Duration) *Server {
	c.t.Helper()
	var leader *Server
	WaitFor(c.t, timeout, func() (bool, string) {
		s, err := c.Leader(context.Background())
		if err != nil {
			return false, err.Error()
		}
		leader = s
		return true, ""
	})
	return leader
}
