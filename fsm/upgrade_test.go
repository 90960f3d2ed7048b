package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-run/outpost/fsm/state"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// These tests run a rolling upgrade in miniature on real Raft, in process:
// a newer leader writes an entry of a type its older followers do not
// know.

// newerFSM is the leader's FSM: it knows futureType, as a newer version
// would, and leaves the rest to a real FSM.
type newerFSM struct{ *FSM }

func (n newerFSM) Apply(l *raft.Log) any {
	if l.Type == raft.LogCommand && len(l.Data) > 0 && MessageType(l.Data[0])&^IgnoreUnknownTypeFlag == futureType {
		return nil
	}
	return n.FSM.Apply(l)
}

// seenFSM is an older follower's FSM. It records the last entry Raft
// handed it, once the FSM has returned: Raft's own applied index only says
// an entry was queued for the FSM.
type seenFSM struct {
	*FSM
	seen atomic.Uint64
}

func (s *seenFSM) Apply(l *raft.Log) any {
	res := s.FSM.Apply(l)
	s.seen.Store(l.Index)
	return res
}

// lockedBuffer collects a logger's output written on Raft's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type follower struct {
	fsm   *seenFSM
	halts *haltRecorder
	log   *lockedBuffer
}

// upgradeCluster starts a leader and n followers. The leader is the only
// voter and the followers are non-voters: they replicate and apply every
// entry like any follower, but none can be elected, so leadership never
// moves to an older server, however loaded the machine.
func upgradeCluster(t *testing.T, n int) (*raft.Raft, *FSM, []*follower) {
	t.Helper()
	conf := func(id string) *raft.Config {
		c := raft.DefaultConfig()
		c.LocalID = raft.ServerID(id)
		c.Logger = hclog.NewNullLogger()
		c.HeartbeatTimeout = 50 * time.Millisecond
		c.ElectionTimeout = 50 * time.Millisecond
		c.LeaderLeaseTimeout = 50 * time.Millisecond
		c.CommitTimeout = 5 * time.Millisecond
		return c
	}
	start := func(id string, f raft.FSM, trans *raft.InmemTransport, bootstrap bool) *raft.Raft {
		c := conf(id)
		store, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
		if bootstrap {
			boot := raft.Configuration{Servers: []raft.Server{{ID: c.LocalID, Address: trans.LocalAddr()}}}
			if err := raft.BootstrapCluster(c, store, store, snaps, trans, boot); err != nil {
				t.Fatal(err)
			}
		}
		r, err := raft.NewRaft(c, f, store, store, snaps, trans)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Shutdown().Error() })
		return r
	}

	leaderFSM, err := New(hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	_, leaderTrans := raft.NewInmemTransport("")
	leader := start("leader", newerFSM{leaderFSM}, leaderTrans, true)
	waitFor(t, "a leader", func() bool { return leader.State() == raft.Leader })

	var followers []*follower
	for i := range n {
		fl := &follower{halts: newHaltRecorder(), log: &lockedBuffer{}}
		f, err := NewWithConfig(Config{
			Logger: hclog.New(&hclog.LoggerOptions{Output: fl.log, Level: hclog.Warn}),
			Halt:   fl.halts.halt,
		})
		if err != nil {
			t.Fatal(err)
		}
		fl.fsm = &seenFSM{FSM: f}
		addr, trans := raft.NewInmemTransport("")
		leaderTrans.Connect(addr, trans)
		trans.Connect(leaderTrans.LocalAddr(), leaderTrans)
		id := fmt.Sprintf("old-%d", i)
		start(id, fl.fsm, trans, false)
		if err := leader.AddNonvoter(raft.ServerID(id), addr, 0, 10*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
		followers = append(followers, fl)
	}
	return leader, leaderFSM, followers
}

// waitFor retries cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// commit applies data through the leader and returns its index.
func commit(t *testing.T, leader *raft.Raft, data []byte) uint64 {
	t.Helper()
	fut := leader.Apply(data, 10*time.Second)
	if err := fut.Error(); err != nil {
		t.Fatal(err)
	}
	if err, ok := fut.Response().(error); ok {
		t.Fatalf("leader refused entry %d: %v", fut.Index(), err)
	}
	return fut.Index()
}

func submit(t *testing.T, leader *raft.Raft, id string) uint64 {
	t.Helper()
	data, err := Encode(SubmitJobsType, &pb.SubmitJobsEntry{Jobs: []*pb.Job{job(id)}})
	if err != nil {
		t.Fatal(err)
	}
	return commit(t, leader, data)
}

// futureEntry is an entry of futureType, as a newer leader writes it.
func futureEntry(t *testing.T, ignorable bool) []byte {
	t.Helper()
	body, err := proto.Marshal(&pb.PinJobEntry{JobId: "j-1", Pinned: true})
	if err != nil {
		t.Fatal(err)
	}
	head := byte(futureType)
	if ignorable {
		head |= byte(IgnoreUnknownTypeFlag)
	}
	return append([]byte{head}, body...)
}

// TestOlderFollowerHaltsAtUnknownType: followers that meet an entry of a
// type they do not know stop there, say which entry and what to do, and
// apply nothing after it, while the leader goes on.
func TestOlderFollowerHaltsAtUnknownType(t *testing.T) {
	leader, leaderFSM, followers := upgradeCluster(t, 2)
	before := submit(t, leader, "j-1")
	unknown := commit(t, leader, futureEntry(t, false))
	after := submit(t, leader, "j-2")
	if _, err := leaderFSM.State().JobByID(nil, "j-2"); err != nil {
		t.Fatalf("leader: %v", err)
	}

	for i, fl := range followers {
		waitFor(t, fmt.Sprintf("follower %d to be handed entry %d", i, after), func() bool { return fl.fsm.seen.Load() >= after })
		var err error
		select {
		case err = <-fl.halts.calls:
		default:
			t.Fatalf("follower %d: Halt was not called", i)
		}
		var ut *UnknownTypeError
		if !errors.As(err, &ut) || ut.Index != unknown || ut.Type != futureType {
			t.Fatalf("follower %d: Halt got %v, want entry %d of type %d", i, err, unknown, futureType)
		}
		for _, want := range []string{fmt.Sprintf("log entry %d", unknown), fmt.Sprintf("type %d", futureType), "this server is older than the leader; upgrade it"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("follower %d: Halt message %q does not say %q", i, err, want)
			}
		}
		if n := len(fl.halts.calls); n != 0 {
			t.Errorf("follower %d: Halt called %d more times", i, n)
		}
		f := fl.fsm.FSM
		if got := f.Halted(); got == nil || got.Index != unknown {
			t.Errorf("follower %d: Halted() = %v", i, got)
		}
		if got := f.AppliedIndex(); got != before {
			t.Errorf("follower %d: applied index %d, want %d, the entry before the unknown one", i, got, before)
		}
		if _, err := f.State().JobByID(nil, "j-1"); err != nil {
			t.Errorf("follower %d lost the entry before: %v", i, err)
		}
		if _, err := f.State().JobByID(nil, "j-2"); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("follower %d applied an entry after the unknown one: %v", i, err)
		}
		if log := fl.log.String(); !strings.Contains(log, "[ERROR]") || !strings.Contains(log, fmt.Sprintf("index=%d", unknown)) {
			t.Errorf("follower %d logged no error naming the entry:\n%s", i, log)
		}
	}
}

// TestOlderFollowerSkipsIgnorableUnknownType: an unknown entry flagged
// ignorable is skipped with a warning, and the entries after it apply.
func TestOlderFollowerSkipsIgnorableUnknownType(t *testing.T) {
	leader, _, followers := upgradeCluster(t, 1)
	skipped := commit(t, leader, futureEntry(t, true))
	after := submit(t, leader, "j-1")

	fl := followers[0]
	waitFor(t, "the follower to apply the entry after the ignorable one", func() bool { return fl.fsm.seen.Load() >= after })
	f := fl.fsm.FSM
	if f.Halted() != nil || len(fl.halts.calls) != 0 {
		t.Fatalf("follower halted at an ignorable entry: %v", f.Halted())
	}
	if got := f.AppliedIndex(); got != after {
		t.Errorf("applied index %d, want %d", got, after)
	}
	if _, err := f.State().JobByID(nil, "j-1"); err != nil {
		t.Errorf("entry after the ignorable one: %v", err)
	}
	if log := fl.log.String(); !strings.Contains(log, "[WARN]") || !strings.Contains(log, fmt.Sprintf("index=%d", skipped)) {
		t.Errorf("no warning names the skipped entry %d:\n%s", skipped, log)
	}
}
