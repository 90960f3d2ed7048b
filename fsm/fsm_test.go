package fsm

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func ts(sec int) *timestamppb.Timestamp {
	return timestamppb.New(t0.Add(time.Duration(sec) * time.Second))
}

// applier feeds entries to an FSM the way Raft does, with rising indexes.
type applier struct {
	t     *testing.T
	f     *FSM
	index uint64
}

func (a *applier) apply(mt MessageType, body proto.Message) any {
	a.t.Helper()
	data, err := Encode(mt, body)
	if err != nil {
		a.t.Fatalf("encode %s: %v", mt, err)
	}
	a.index++
	return a.f.Apply(&raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: data})
}

func (a *applier) mustApply(mt MessageType, body proto.Message) any {
	a.t.Helper()
	res := a.apply(mt, body)
	if err, ok := res.(error); ok {
		a.t.Fatalf("apply %s: %v", mt, err)
	}
	return res
}

func newApplier(t *testing.T) *applier {
	f, err := New(hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	return &applier{t: t, f: f}
}

func job(id string) *pb.Job {
	return &pb.Job{
		Id: id, Project: "web", Name: "deploy", Workspace: "prod",
		Variables: map[string]string{"env": "prod"},
		Steps:     []*pb.Step{{Name: "build", Command: []string{"make"}}},
		Retry:     &pb.RetryPolicy{Attempts: 1, Delay: durationpb.New(time.Second), Backoff: 2},
		CreatedAt: ts(0),
	}
}

func lineAt(sec int, text string) *pb.LogLine {
	return &pb.LogLine{Time: ts(sec), Stream: "stdout", Step: "build", Text: text}
}

// TestApplyEveryTypeAndSnapshot applies every entry type, then checks a
// snapshot restored into a fresh FSM holds exactly the same state.
func TestApplyEveryTypeAndSnapshot(t *testing.T) {
	a := newApplier(t)
	a.mustApply(UpsertProjectType, &pb.UpsertProjectEntry{Project: &pb.Project{Name: "web", Filename: "outpost.hcl", Source: []byte(`project = "web"`)}})
	a.mustApply(UpsertRunnerType, &pb.UpsertRunnerEntry{Runner: &pb.Runner{Id: "r-1", Name: "edge-1", Labels: map[string]string{"env": "prod"}, Capacity: 2, Status: "adopted", State: "ready", FirstSeen: ts(0)}})
	a.mustApply(SubmitJobsType, &pb.SubmitJobsEntry{Jobs: []*pb.Job{job("j-1"), job("j-2"), job("j-3"), job("j-4")}})
	res := a.mustApply(AssignJobsType, &pb.AssignJobsEntry{Time: ts(1), Assignments: []*pb.Assignment{
		{JobId: "j-1", RunnerId: "r-1"}, {JobId: "j-2", RunnerId: "r-1"}, {JobId: "j-3", RunnerId: "r-1"},
	}})
	lease := a.index
	if got := res.(*AssignResult).Assigned; len(got) != 3 {
		t.Fatalf("assigned %v, want 3 jobs", got)
	}
	a.mustApply(JobStartedType, &pb.JobStartedEntry{Report: &pb.JobStarted{JobId: "j-1", Lease: lease, Time: ts(2)}})
	a.mustApply(AppendLogsType, &pb.AppendLogsEntry{Report: &pb.JobLogs{JobId: "j-1", Lease: lease, Lines: []*pb.LogLine{lineAt(2, "one"), lineAt(2, "two")}}, Time: ts(2)})
	a.mustApply(FinishJobType, &pb.FinishJobEntry{Report: &pb.JobFinished{JobId: "j-1", Lease: lease, Outcome: "succeeded", Time: ts(3), Lines: []*pb.LogLine{lineAt(3, "three")}}})
	a.mustApply(JobStartedType, &pb.JobStartedEntry{Report: &pb.JobStarted{JobId: "j-2", Lease: lease, Time: ts(2)}})
	a.mustApply(CancelJobType, &pb.CancelJobEntry{JobId: "j-2", Reason: "operator", Time: ts(4)})
	a.mustApply(MarkLostType, &pb.MarkLostEntry{Jobs: []*pb.LostJob{{JobId: "j-3", Lease: lease}}, Reason: "runner r-1 gone", Time: ts(5)})
	a.mustApply(CancelJobType, &pb.CancelJobEntry{JobId: "j-4", Time: ts(6)})
	a.mustApply(DeleteJobsType, &pb.DeleteJobsEntry{JobIds: []string{"j-4"}, Time: ts(6)})
	a.mustApply(PinJobType, &pb.PinJobEntry{JobId: "j-2", Pinned: true, Time: ts(6)})
	a.mustApply(UpsertRunnerType, &pb.UpsertRunnerEntry{Runner: &pb.Runner{Id: "r-2", Capacity: 1, Status: "pending"}})
	a.mustApply(UpdateRunnerType, &pb.RunnerUpdateEntry{RunnerId: "r-2", Action: "adopt", Time: ts(7)})
	a.mustApply(UpdateRunnerType, &pb.RunnerUpdateEntry{RunnerId: "r-2", Action: "drain", Time: ts(7)})
	a.mustApply(RunnerTokenType, &pb.UpsertRunnerTokenEntry{Token: &pb.RunnerToken{Id: "t-1", Hash: []byte{1, 2, 3}, CreatedAt: ts(8)}})
	a.mustApply(UpsertProfilesType, &pb.UpsertProfilesEntry{Profiles: []*pb.RunnerProfile{
		{Name: "prod", TargetLabels: map[string]string{"env": "prod"}, Mode: "on_demand", Default: true, Limits: &pb.Limits{Processes: 64}},
		{Name: "old", TargetRunnerId: "r-1"},
	}})
	a.mustApply(DeleteProfileType, &pb.DeleteProfileEntry{Name: "old"})
	a.mustApply(UpsertProjectType, &pb.UpsertProjectEntry{Project: &pb.Project{Name: "gone"}})
	a.mustApply(DeleteProjectType, &pb.DeleteProjectEntry{Name: "gone"})
	a.mustApply(SubmitJobsType, &pb.SubmitJobsEntry{Jobs: []*pb.Job{job("j-5")}})
	a.mustApply(SetPendingReasonsType, &pb.SetPendingReasonsEntry{Reasons: []*pb.PendingReason{{JobId: "j-5", Reason: "no adopted runner matches labels {env=prod}"}}})
	a.mustApply(RetryJobType, &pb.RetryJobEntry{JobId: "j-1", Time: ts(9)})
	a.mustApply(AssignJobsType, &pb.AssignJobsEntry{Time: ts(10), Assignments: []*pb.Assignment{{JobId: "j-5", RunnerId: "r-1"}}})
	lease5 := a.index
	rep := a.mustApply(RunnerReportsType, &pb.RunnerReportsEntry{RunnerId: "r-1", Time: ts(11), Reports: []*pb.RunnerMessage{
		{Msg: &pb.RunnerMessage_Started{Started: &pb.JobStarted{JobId: "j-5", Lease: lease5, Time: ts(11)}}},
		{Msg: &pb.RunnerMessage_Logs{Logs: &pb.JobLogs{JobId: "j-5", Lease: lease5, Lines: []*pb.LogLine{lineAt(11, "five")}}}},
		{Msg: &pb.RunnerMessage_Finished{Finished: &pb.JobFinished{JobId: "j-5", Lease: 1, Outcome: "succeeded", Time: ts(12)}}},
		{Msg: &pb.RunnerMessage_Finished{Finished: &pb.JobFinished{JobId: "j-5", Lease: lease5, Outcome: "succeeded", Time: ts(12)}}},
	}}).(*ReportsResult)
	if rep.Errors[0] != nil || rep.Errors[1] != nil || !errors.Is(rep.Errors[2], state.ErrStaleLease) || rep.Errors[3] != nil {
		t.Fatalf("report results = %v, want only the stale finish refused", rep.Errors)
	}
	a.mustApply(PinJobType, &pb.PinJobEntry{JobId: "j-5", Pinned: true, Time: ts(13)})
	a.mustApply(ACLBootstrapType, &pb.ACLBootstrapEntry{Token: &pb.ACLToken{AccessorId: "a-1", Hash: []byte{1}, Management: true, CreatedAt: ts(14)}})
	if err, _ := a.apply(ACLBootstrapType, &pb.ACLBootstrapEntry{Token: &pb.ACLToken{AccessorId: "a-9", Hash: []byte{9}}}).(error); !errors.Is(err, state.ErrConflict) {
		t.Errorf("second bootstrap: err = %v, want a conflict", err)
	}
	a.mustApply(ACLPolicyUpsertType, &pb.ACLPolicyUpsertEntry{Policy: &pb.ACLPolicy{Name: "web", Rules: `project "web" { policy = "read" }`}})
	a.mustApply(ACLPolicyUpsertType, &pb.ACLPolicyUpsertEntry{Policy: &pb.ACLPolicy{Name: "gone"}})
	a.mustApply(ACLPolicyDeleteType, &pb.ACLPolicyDeleteEntry{Name: "gone"})
	a.mustApply(ACLUserUpsertType, &pb.ACLUserUpsertEntry{User: &pb.ACLUser{Name: "ann", Policies: []string{"web"}, PasswordHash: []byte{2}, Salt: []byte{3}, ArgonTime: 1, ArgonMemoryKib: 8, ArgonThreads: 1}})
	a.mustApply(ACLUserUpsertType, &pb.ACLUserUpsertEntry{User: &pb.ACLUser{Name: "bob"}})
	a.mustApply(ACLTokenUpsertType, &pb.ACLTokenUpsertEntry{Token: &pb.ACLToken{AccessorId: "a-2", Hash: []byte{4}, User: "bob", ExpiresAt: ts(20)}})
	a.mustApply(ACLTokenUpsertType, &pb.ACLTokenUpsertEntry{Token: &pb.ACLToken{AccessorId: "a-3", Hash: []byte{5}, Policies: []string{"web"}}})
	a.mustApply(ACLTokenUpsertType, &pb.ACLTokenUpsertEntry{Token: &pb.ACLToken{AccessorId: "a-4", Hash: []byte{6}}})
	a.mustApply(ACLTokenDeleteType, &pb.ACLTokenDeleteEntry{AccessorIds: []string{"a-4"}})
	a.mustApply(ACLUserDeleteType, &pb.ACLUserDeleteEntry{Name: "bob"})
	// Runner identity and the gossip keyring.
	a.mustApply(RunnerTokenType, &pb.UpsertRunnerTokenEntry{Token: &pb.RunnerToken{Id: "t-2", Hash: []byte{4, 5, 6}, CreatedAt: ts(13), MaxUses: 2, Projects: []string{"web"}}})
	a.mustApply(RegisterRunnerType, &pb.RegisterRunnerEntry{TokenId: "t-2", Time: ts(14), Runner: &pb.Runner{Id: "r-3", Capacity: 1, State: "ready", SecretHash: []byte{7}}})
	a.mustApply(UpdateRunnerType, &pb.RunnerUpdateEntry{RunnerId: "r-3", Action: "reject", Time: ts(14)})
	a.mustApply(ForgetRunnerType, &pb.ForgetRunnerEntry{RunnerId: "r-3", Time: ts(15)})
	a.mustApply(DeleteRunnerTokenType, &pb.DeleteRunnerTokenEntry{Id: "t-2"})
	a.mustApply(GossipKeyringType, &pb.GossipKeyringEntry{Op: "init", Key: "a2V5a2V5a2V5a2V5a2V5aw=="})
	a.mustApply(GossipKeyringType, &pb.GossipKeyringEntry{Op: "install", Key: "ZW52ZW52ZW52ZW52ZW52ZQ=="})

	st := a.f.State()
	if _, err := st.ACLToken("a-2"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("token of deleted user: err = %v, want not found", err)
	}
	if tok, err := st.ACLTokenByHash([]byte{5}); err != nil || tok.AccessorId != "a-3" {
		t.Errorf("token by hash = %v, %v", tok, err)
	}
	for id, want := range map[string]string{"j-1": "pending", "j-2": "canceling", "j-3": "pending", "j-5": "succeeded"} {
		j, err := st.JobByID(nil, id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if j.Status != want {
			t.Errorf("%s status = %s (%s), want %s", id, j.Status, j.StatusReason, want)
		}
	}
	if _, err := st.JobByID(nil, "j-4"); !errors.Is(err, state.ErrNotFound) || !st.Collected("j-4") {
		t.Errorf("deleted job j-4: err = %v, tombstone %v; want not found, and a tombstone", err, st.Collected("j-4"))
	}
	if j, _ := st.JobByID(nil, "j-2"); !j.Pinned {
		t.Error("j-2 is not pinned")
	}
	if got := texts(st.LogChunks(nil, "j-5", 0)); got != "five" {
		t.Errorf("j-5 logs = %q", got)
	}
	if j, _ := st.JobByID(nil, "j-1"); j.Attempt != 2 {
		t.Errorf("retried j-1 is attempt %d, want 2", j.Attempt)
	}
	if ps := st.Profiles(nil); len(ps) != 1 || ps[0].Name != "prod" {
		t.Errorf("profiles = %v, want only prod", ps)
	}
	if r, _ := st.RunnerByID(nil, "r-2"); r.Status != "adopted" || !r.Draining {
		t.Errorf("r-2 = %s draining=%t, want adopted and draining", r.Status, r.Draining)
	}
	if tomb := st.RunnerTombstone("r-3"); tomb == nil || len(tomb.RejectedSecretHashes) != 1 {
		t.Errorf("forgotten rejected r-3 left tombstone %v, want one holding its secret's hash", tomb)
	}
	if k := st.GossipKeyring(nil); len(k.GetKeys()) != 2 || k.Primary != "a2V5a2V5a2V5a2V5a2V5aw==" {
		t.Errorf("gossip keyring = %v", k)
	}
	if got := texts(st.LogChunks(nil, "j-1", 0)); got != "one,two,three" {
		t.Errorf("j-1 logs = %q", got)
	}

	restored := roundTrip(t, a.f)
	assertSameState(t, st, restored.State())
	if got, want := restored.State().LatestIndex(), st.LatestIndex(); got != want {
		t.Errorf("restored latest index %d, want %d", got, want)
	}
}

func texts(chunks []*pb.LogChunk) string {
	var b bytes.Buffer
	for _, c := range chunks {
		for _, l := range c.Lines {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.Write(l.Data)
		}
	}
	return b.String()
}

// roundTrip persists f's snapshot and restores it into a fresh FSM.
func roundTrip(t *testing.T, f *FSM) *FSM {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteSnapshot(&buf, snap.(*snapshot).view, 0); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	fresh, err := New(hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Restore(nopCloser{&buf}); err != nil {
		t.Fatal(err)
	}
	return fresh
}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }

func assertSameState(t *testing.T, want, got *state.Store) {
	t.Helper()
	ws, gs := want.Snapshot(), got.Snapshot()
	eqList(t, "jobs in play", ws.Jobs(), gs.Jobs())
	// Finished jobs live in their own table, kept encoded.
	eqList(t, "all jobs", want.Jobs(nil, state.JobFilter{}), got.Jobs(nil, state.JobFilter{}))
	if n := len(want.Jobs(nil, state.JobFilter{Status: rpc.JobSucceeded})); n == 0 {
		t.Fatal("no finished job in the state: the history table is not compared")
	}
	// A finished job's logs move into its history row.
	finishedLogs := 0
	for _, j := range want.Jobs(nil, state.JobFilter{}) {
		wc, gc := want.LogChunks(nil, j.Id, 0), got.LogChunks(nil, j.Id, 0)
		if len(wc) > 0 {
			eqList(t, "log chunks of "+j.Id, wc, gc)
			if rpc.JobTerminal(j.Status) {
				finishedLogs++
			}
		} else if len(gc) > 0 {
			t.Errorf("job %s: %d log chunks restored, want none", j.Id, len(gc))
		}
	}
	if finishedLogs == 0 {
		t.Error("no finished job has logs: the history's logs are not compared")
	}
	if w, g := ws.LogChunkCount(), gs.LogChunkCount(); w != g {
		t.Errorf("%d log chunks restored, want %d", g, w)
	}
	if len(ws.LogChunks()) > 0 || len(gs.LogChunks()) > 0 {
		eqList(t, "log chunks in play", ws.LogChunks(), gs.LogChunks())
	}
	eqList(t, "projects", ws.Projects(), gs.Projects())
	eqList(t, "runners", ws.Runners(), gs.Runners())
	eqList(t, "runner tokens", ws.RunnerTokens(), gs.RunnerTokens())
	eqList(t, "runner profiles", ws.Profiles(), gs.Profiles())
	eqList(t, "tombstones", tombstones(t, ws), tombstones(t, gs))
	// Snapshots from before ACLs have none.
	if ws.ACLBootstrap() > 0 {
		eqList(t, "acl policies", ws.ACLPolicies(), gs.ACLPolicies())
		eqList(t, "acl tokens", ws.ACLTokens(), gs.ACLTokens())
		eqList(t, "acl users", ws.ACLUsers(), gs.ACLUsers())
	}
	if w, g := ws.ACLBootstrap(), gs.ACLBootstrap(); w != g {
		t.Errorf("restored acl bootstrap index %d, want %d", g, w)
	}
	// Tables of issue 15, which snapshots made before it lack.
	if len(ws.RunnerTombstones())+len(gs.RunnerTombstones()) > 0 {
		eqList(t, "runner tombstones", ws.RunnerTombstones(), gs.RunnerTombstones())
	}
	if w, g := ws.GossipKeyring(), gs.GossipKeyring(); w != nil || g != nil {
		if w == nil || g == nil || !proto.Equal(w, g) {
			t.Errorf("gossip keyring restored as %v, want %v", g, w)
		}
	}
	wc, wp, _ := want.FinishedStats()
	gc, gp, _ := got.FinishedStats()
	if wc != gc || wp != gp {
		t.Errorf("restored %d collectable and %d pinned finished jobs, want %d and %d", gc, gp, wc, wp)
	}
}

func tombstones(t *testing.T, sn *state.Snapshot) []*pb.Tombstones {
	t.Helper()
	var out []*pb.Tombstones
	if err := sn.Tombstones(func(ts *pb.Tombstones) error { out = append(out, ts); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func eqList[T proto.Message](t *testing.T, what string, want, got []T) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%s: %d restored, want %d", what, len(got), len(want))
	}
	if len(want) == 0 {
		t.Fatalf("%s: table is empty, so the comparison proves nothing", what)
	}
	for i := range want {
		if !proto.Equal(want[i], got[i]) {
			t.Errorf("%s[%d] differs after restore:\n got %v\nwant %v", what, i, got[i], want[i])
		}
	}
}

// TestSnapshotIsPointInTime checks that writes after Snapshot do not leak
// into what Persist writes.
func TestSnapshotIsPointInTime(t *testing.T) {
	a := newApplier(t)
	a.mustApply(SubmitJobsType, &pb.SubmitJobsEntry{Jobs: []*pb.Job{job("j-1")}})
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	a.mustApply(SubmitJobsType, &pb.SubmitJobsEntry{Jobs: []*pb.Job{job("j-2")}})
	var buf bytes.Buffer
	if err := WriteSnapshot(&buf, snap.(*snapshot).view, 0); err != nil {
		t.Fatal(err)
	}
	st, err := ReadSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(st.Jobs(nil, state.JobFilter{})); n != 1 {
		t.Fatalf("snapshot holds %d jobs, want the 1 that existed when it was taken", n)
	}
}

func TestReadSnapshotRejectsGarbage(t *testing.T) {
	for name, data := range map[string][]byte{
		"empty":        nil,
		"wrong magic":  []byte("not-a-snapshot\n"),
		"unknown kind": append([]byte(snapshotMagic), 99, 0),
		"truncated":    append([]byte(snapshotMagic), byte(recordJob), 10, 1, 2),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ReadSnapshot(bytes.NewReader(data)); err == nil {
				t.Fatal("ReadSnapshot accepted garbage")
			}
		})
	}
}

func TestEncodeChecksBodyType(t *testing.T) {
	if _, err := Encode(SubmitJobsType, &pb.CancelJobEntry{}); err == nil {
		t.Fatal("Encode accepted a CancelJobEntry body for a SubmitJobs entry")
	}
	if _, _, err := Decode([]byte{200, 1, 2}); err == nil {
		t.Fatal("Decode accepted an unknown type")
	}
	if res := newApplierNoT().f.Apply(&raft.Log{Type: raft.LogCommand, Data: []byte{byte(SubmitJobsType), 0xff, 0xff}}); res == nil {
		t.Fatal("Apply of a corrupt body returned no error")
	}
}

func newApplierNoT() *applier {
	f, _ := New(hclog.NewNullLogger())
	return &applier{f: f}
}

// FuzzDecode feeds arbitrary bytes to Apply: a corrupt or hostile entry must
// produce an error, never a panic.
func FuzzDecode(f *testing.F) {
	for _, seed := range []struct {
		t MessageType
		m proto.Message
	}{
		{SubmitJobsType, &pb.SubmitJobsEntry{Jobs: []*pb.Job{job("j-1")}}},
		{AssignJobsType, &pb.AssignJobsEntry{Assignments: []*pb.Assignment{{JobId: "j-1", RunnerId: "r"}}}},
		{FinishJobType, &pb.FinishJobEntry{Report: &pb.JobFinished{JobId: "j-1", Lease: 2, Outcome: "failed"}}},
		{MarkLostType, &pb.MarkLostEntry{Jobs: []*pb.LostJob{{JobId: "j-1", Lease: 2}}}},
	} {
		b, err := Encode(seed.t, seed.m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a := newApplierNoT()
		a.f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data})
		a.f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: data})
	})
}

// Entries carrying a name, label or capacity that internal/validate
// refuses are refused by the FSM too, whoever proposed them, and leave
// the state as it was.
func TestApplyRefusesInvalidValues(t *testing.T) {
	a := newApplier(t)
	runner := func(mod func(*pb.Runner)) *pb.UpsertRunnerEntry {
		r := &pb.Runner{Id: "r-1", Name: "edge-1", Labels: map[string]string{"env": "prod"}, Capacity: 2, Status: "adopted", State: "ready"}
		mod(r)
		return &pb.UpsertRunnerEntry{Runner: r}
	}
	bad := []struct {
		name string
		t    MessageType
		body proto.Message
	}{
		{"runner name with a newline", UpsertRunnerType, runner(func(r *pb.Runner) { r.Name = "edge\n1" })},
		{"label key with a space", UpsertRunnerType, runner(func(r *pb.Runner) { r.Labels = map[string]string{"my env": "prod"} })},
		{"label value with a comma", UpsertRunnerType, runner(func(r *pb.Runner) { r.Labels = map[string]string{"env": "a,b"} })},
		{"capacity too large", UpsertRunnerType, runner(func(r *pb.Runner) { r.Capacity = 100000000 })},
		{"capacity zero", UpsertRunnerType, runner(func(r *pb.Runner) { r.Capacity = 0 })},
		{"profile name", UpsertProfilesType, &pb.UpsertProfilesEntry{Profiles: []*pb.RunnerProfile{{Name: "a b"}}}},
		{"profile target label", UpsertProfilesType, &pb.UpsertProfilesEntry{Profiles: []*pb.RunnerProfile{{Name: "p", TargetLabels: map[string]string{"a=b": "c"}}}}},
		{"job workspace", SubmitJobsType, &pb.SubmitJobsEntry{Jobs: []*pb.Job{func() *pb.Job { j := job("j-1"); j.Workspace = "a b"; return j }()}}},
		{"job target label", SubmitJobsType, &pb.SubmitJobsEntry{Jobs: []*pb.Job{func() *pb.Job { j := job("j-1"); j.TargetLabels = map[string]string{"k": "x y"}; return j }()}}},
		{"project name", UpsertProjectType, &pb.UpsertProjectEntry{Project: &pb.Project{Name: "Web"}}},
	}
	for _, tc := range bad {
		res := a.apply(tc.t, tc.body)
		err, _ := res.(error)
		if !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("%s: apply returned %v, want ErrInvalidEntry", tc.name, res)
		}
	}
	st := a.f.State()
	if n := len(st.Runners(nil)) + len(st.Profiles(nil)) + len(st.Projects(nil)) + st.CountJobs(state.JobFilter{}); n != 0 {
		t.Errorf("refused entries left %d rows in the state", n)
	}
	a.mustApply(UpsertRunnerType, runner(func(*pb.Runner) {}))
}

// TestRestoreSnapshotFromBeforeGC restores a snapshot written by the
// version before garbage collection (testdata/before-gc.snap: two finished
// jobs with logs, one running, one pending; no done_at, no tombstones):
// its finished jobs count as done when they finished, and can be
// collected.
func TestRestoreSnapshotFromBeforeGC(t *testing.T) {
	data, err := os.ReadFile("testdata/before-gc.snap")
	if err != nil {
		t.Fatal(err)
	}
	f := newApplier(t).f
	if err := f.Restore(nopCloser{bytes.NewBuffer(data)}); err != nil {
		t.Fatal(err)
	}
	st := f.State()
	if n := len(st.Jobs(nil, state.JobFilter{})); n != 4 {
		t.Fatalf("%d jobs restored, want 4", n)
	}
	if got := texts(st.LogChunks(nil, "j-2", 0)); got != "two" {
		t.Fatalf("j-2 logs = %q", got)
	}
	if c, p, tombs := st.FinishedStats(); c != 2 || p != 0 || tombs != 0 {
		t.Fatalf("FinishedStats = %d, %d, %d; want 2 collectable, none pinned, no tombstones", c, p, tombs)
	}
	// j-1 finished at 3s, j-2 at 5s (the runners' clocks: nothing better
	// was recorded then).
	if got := st.Collectable(t0.Add(4*time.Second), 0, 10); len(got) != 1 || got[0] != "j-1" {
		t.Fatalf("Collectable before 4s = %v, want j-1", got)
	}
	a := &applier{t: t, f: f, index: st.LatestIndex()}
	a.mustApply(DeleteJobsType, &pb.DeleteJobsEntry{JobIds: []string{"j-1"}, Gc: true, Time: ts(100)})
	restored := roundTrip(t, f)
	assertSameState(t, f.State(), restored.State())
	if !restored.State().Collected("j-1") {
		t.Fatal("the tombstone of j-1 did not survive a snapshot")
	}
}
