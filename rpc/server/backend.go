package server

import (
	"context"
	"net/http"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Backend is what the handlers need from a server.
type Backend interface {
	// State is the local replica's state store. It can be replaced by a
	// snapshot restore, so fetch it again rather than keeping it.
	State() *state.Store
	// Apply commits one log entry through Raft (via the leader) and returns
	// the FSM's result; a refused change comes back as the error.
	Apply(ctx context.Context, t fsm.MessageType, body proto.Message) (any, error)
	// Commit is Apply without waiting for this server's replica to catch
	// up; it returns the commit index. For hot paths whose callers do not
	// read their write back from this server.
	Commit(ctx context.Context, t fsm.MessageType, body proto.Message) (any, uint64, error)
	// ReadBarrier makes the local state at least as new as the leader's at
	// the time of the call, unless stale reads are allowed.
	ReadBarrier(ctx context.Context, stale bool) error
	// RecentBarrier makes the local state at least as new as the leader's
	// was a moment (about a second) ago, sharing one barrier among the
	// calls of that moment: for the hot paths that read settings, not
	// jobs, so a server that has just restarted cannot act on settings it
	// has not caught up with.
	RecentBarrier(ctx context.Context) error
	// RegisterRunner records a runner that opened a stream and decides its
	// adoption status.
	RegisterRunner(ctx context.Context, reg *pb.Register, addr string) (*pb.Runner, error)
	// RunnerConnected tells the liveness tracker that a runner's stream is
	// open; the returned func says it closed.
	RunnerConnected(runnerID string) (closed func())
	// RunnerSeen refreshes a runner's liveness.
	RunnerSeen(runnerID string)
	// RunnerLastSeen is when this server last heard of a runner, if ever.
	RunnerLastSeen(runnerID string) (time.Time, bool)
	// RunnerFresh reports whether a runner's stream has spoken recently
	// enough; a stream that went quiet is closed.
	RunnerFresh(runnerID string) bool
	// ConfirmRunner confirms, through the leader, that the leases of a
	// runner just heard from still hold (see agent's leaseConfirmer). done
	// is called once, from another goroutine, and must not block.
	ConfirmRunner(runnerID string, done func(error))
	// ServeRunners says whether this server can serve runner streams: nil,
	// or why its runners should go to another server (it has had no
	// leader for a while, say).
	ServeRunners() error
	// LeasePeriod is how long the servers wait for a silent runner before
	// giving its jobs away (runner_timeout).
	LeasePeriod() time.Duration
	// ServerAddrs are every server's API address, for runners to move to.
	ServerAddrs() []string
	// LeaderAddr is the leader's API address, or "" when this server leads.
	LeaderAddr(ctx context.Context) (string, error)
	// PeerHTTPClient is the client this server reaches other servers
	// with (with its server certificate under TLS), and PeerURL the base
	// URL of another server's API address (https:// under TLS).
	PeerHTTPClient() *http.Client
	PeerURL(addr string) string
	// GossipAddrs are the servers' gossip addresses, for runners to join.
	GossipAddrs() []string
	// GossipKeyHolders counts, for each of keys, the live gossip members
	// (servers, runners) that report holding it, and the live members.
	GossipKeyHolders(keys []string) (holders []KeyHolders, members KeyHolders)
	// Status describes this agent.
	Status() *pb.StatusResponse
	// CollectJobs runs a garbage-collection pass of finished jobs on this
	// server, which must lead: by the configured bounds, or with olderThan
	// (when not nil) as the age bound instead of job_gc_threshold.
	CollectJobs(ctx context.Context, olderThan *time.Duration) (*pb.GarbageCollectResponse, error)

	// ApplyEntry commits a log entry forwarded by another server; only the
	// leader accepts it.
	ApplyEntry(ctx context.Context, entry []byte) (*pb.ApplyResponse, error)
	// LeaderReadIndex is the index a consistent read on a follower waits for.
	LeaderReadIndex(ctx context.Context) (uint64, error)
	// RemoteRunners records which runners hold a stream to another server
	// and how long ago each spoke; on the leader it then verifies that it
	// still leads, so the caller may confirm those runners' leases.
	RemoteRunners(ctx context.Context, server string, runnerIDs []string, silentMS []uint32) error

	// Members lists the gossip pool.
	Members() []*pb.Member
	// RaftPeers lists the Raft configuration.
	RaftPeers(ctx context.Context, stale bool) (*pb.RaftPeersResponse, error)
	// RemovePeer removes a server from the Raft configuration.
	RemovePeer(ctx context.Context, id string) error

	// ACL is this server's ACL settings.
	ACL() ACLSettings
	// ACLBootstrapReset is the reset index an operator wrote to
	// <data_dir>/acl-bootstrap-reset, 0 when there is no such file;
	// ClearACLBootstrapReset removes the file once it has been used.
	ACLBootstrapReset() (uint64, error)
	ClearACLBootstrapReset()
}

// KeyHolders counts gossip members by role.
type KeyHolders struct{ Servers, Runners uint32 }
