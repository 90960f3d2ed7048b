package fsm

import (
	"bufio"
	"encoding/hex"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-run/outpost/fsm/state"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

type sampleEntry struct {
	t    MessageType
	body proto.Message
}

// sampleEntries holds a body of every type. None carries a map, so each
// encodes to the same bytes every time.
func sampleEntries() []sampleEntry {
	j := &pb.Job{Id: "j-1", Project: "web", Name: "deploy", Workspace: "prod", Attempt: 1,
		Steps: []*pb.Step{{Name: "build", Command: []string{"make", "all"}}}, CreatedAt: ts(0)}
	return []sampleEntry{
		{SubmitJobsType, &pb.SubmitJobsEntry{Jobs: []*pb.Job{j}}},
		{AssignJobsType, &pb.AssignJobsEntry{Time: ts(1), Assignments: []*pb.Assignment{{JobId: "j-1", RunnerId: "r-1"}}}},
		{JobStartedType, &pb.JobStartedEntry{Report: &pb.JobStarted{JobId: "j-1", Lease: 7, Time: ts(2)}}},
		{AppendLogsType, &pb.AppendLogsEntry{Report: &pb.JobLogs{JobId: "j-1", Lease: 7, Lines: []*pb.LogLine{lineAt(2, "one")}}, Time: ts(2)}},
		{FinishJobType, &pb.FinishJobEntry{Report: &pb.JobFinished{JobId: "j-1", Lease: 7, Outcome: "succeeded", ExitCode: 3, Time: ts(3)}}},
		{CancelJobType, &pb.CancelJobEntry{JobId: "j-1", Reason: "operator", Time: ts(4)}},
		{MarkLostType, &pb.MarkLostEntry{Jobs: []*pb.LostJob{{JobId: "j-1", Lease: 7}}, Reason: "gone", Time: ts(5)}},
		{UpsertRunnerType, &pb.UpsertRunnerEntry{Runner: &pb.Runner{Id: "r-1", Name: "edge-1", Capacity: 2, Status: "adopted", State: "ready", FirstSeen: ts(0)}}},
		{UpsertProjectType, &pb.UpsertProjectEntry{Project: &pb.Project{Name: "web", Filename: "outpost.hcl", Source: []byte(`project = "web"`)}}},
		{DeleteJobsType, &pb.DeleteJobsEntry{JobIds: []string{"j-1", "j-2"}, Gc: true, Time: ts(6)}},
		{UpdateRunnerType, &pb.RunnerUpdateEntry{RunnerId: "r-1", Action: "drain", Reason: "maintenance", Time: ts(7)}},
		{RunnerTokenType, &pb.UpsertRunnerTokenEntry{Token: &pb.RunnerToken{Id: "t-1", Hash: []byte{1, 2, 3}, CreatedAt: ts(8)}}},
		{UpsertProfilesType, &pb.UpsertProfilesEntry{Profiles: []*pb.RunnerProfile{{Name: "prod", Mode: "on_demand", Default: true, TargetRunnerId: "r-1", Limits: &pb.Limits{Processes: 64}}}}},
		{DeleteProfileType, &pb.DeleteProfileEntry{Name: "old"}},
		{DeleteProjectType, &pb.DeleteProjectEntry{Name: "gone"}},
		{SetPendingReasonsType, &pb.SetPendingReasonsEntry{Reasons: []*pb.PendingReason{{JobId: "j-1", Reason: "no runner"}}}},
		{RetryJobType, &pb.RetryJobEntry{JobId: "j-1", Time: ts(9)}},
		{RunnerReportsType, &pb.RunnerReportsEntry{RunnerId: "r-1", Time: ts(10), Reports: []*pb.RunnerMessage{
			{Msg: &pb.RunnerMessage_Started{Started: &pb.JobStarted{JobId: "j-1", Lease: 7, Time: ts(10)}}},
			{Msg: &pb.RunnerMessage_Finished{Finished: &pb.JobFinished{JobId: "j-1", Lease: 7, Outcome: "failed", Time: ts(11)}}},
		}}},
		{PinJobType, &pb.PinJobEntry{JobId: "j-1", Pinned: true, Time: ts(12)}},
	}
}

// TestEncodingMatchesTheLog checks Encode against entries written by the
// version before the entry table (testdata/entries-v1.golden: type, then
// the entry in hex), and that they decode to the same bodies: logs already
// on disk must still apply.
func TestEncodingMatchesTheLog(t *testing.T) {
	f, err := os.Open("testdata/entries-v1.golden")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	golden := map[MessageType][]byte{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		typ, data, ok := strings.Cut(sc.Text(), " ")
		n, err := strconv.Atoi(typ)
		b, herr := hex.DecodeString(data)
		if !ok || err != nil || herr != nil {
			t.Fatalf("bad golden line %q", sc.Text())
		}
		golden[MessageType(n)] = b
	}
	samples := sampleEntries()
	if len(golden) != len(samples) {
		t.Fatalf("%d golden entries, %d samples", len(golden), len(samples))
	}
	for _, s := range samples {
		got, err := Encode(s.t, s.body)
		if err != nil {
			t.Fatalf("encode %s: %v", s.t, err)
		}
		if want := golden[s.t]; string(got) != string(want) {
			t.Errorf("%s encodes to\n%x\nthe log holds\n%x", s.t, got, want)
		}
		dt, body, err := Decode(golden[s.t])
		if err != nil || dt != s.t || !proto.Equal(body, s.body) {
			t.Errorf("golden %s decodes to %s %v (%v), want %v", s.t, dt, body, err, s.body)
		}
	}
}

// TestEveryTypeHasOneRow checks each row of the table is whole, and that
// every type before the last is there: a gap would be a renumbering.
func TestEveryTypeHasOneRow(t *testing.T) {
	last := MessageType(0)
	for i := range entryTypes {
		et := &entryTypes[i]
		if et.apply == nil {
			if et.name != "" {
				t.Errorf("type %d: named %s but has no apply", i, et.name)
			}
			continue
		}
		if et.name == "" || et.newBody == nil || et.desc != et.newBody().ProtoReflect().Descriptor() {
			t.Errorf("type %d (%q): incomplete row", i, et.name)
		}
		// Each area's types start at their reserved block (issue 15: 30).
		if MessageType(i) != last+1 && MessageType(i)%10 != 0 {
			t.Errorf("type %d follows %d: types are numbered without gaps", i, last)
		}
		last = MessageType(i)
	}
	if last != GossipKeyringType {
		t.Errorf("last type is %s, want %s", last, GossipKeyringType)
	}
	if got := MessageType(99).String(); got != "MessageType(99)" {
		t.Errorf("unknown type prints as %q", got)
	}
}

// haltRecorder is a Halt hook that keeps what it was told.
type haltRecorder struct{ calls chan error }

func newHaltRecorder() *haltRecorder { return &haltRecorder{calls: make(chan error, 8)} }

func (h *haltRecorder) halt(err error) { h.calls <- err }

// futureType is a type this version does not know: what a newer leader
// writes.
const futureType MessageType = 100

// futureRow is the row a newer version would have for futureType.
func futureRow(ignorable bool) *entryType {
	return &entryType{name: "Future", ignorable: ignorable, entryFuncs: of(nil,
		func(*state.Store, uint64, *pb.PinJobEntry) any { return nil })}
}

// TestUnknownTypeHalts applies entries the way Raft does: an unknown type
// stops the FSM at that entry and it applies nothing after it; flagged
// ignorable, it is skipped and the next entries apply.
func TestUnknownTypeHalts(t *testing.T) {
	for _, ignorable := range []bool{false, true} {
		t.Run("ignorable="+strconv.FormatBool(ignorable), func(t *testing.T) {
			h := newHaltRecorder()
			f, err := NewWithConfig(Config{Logger: hclog.NewNullLogger(), Halt: h.halt})
			if err != nil {
				t.Fatal(err)
			}
			a := &applier{t: t, f: f}
			a.mustApply(SubmitJobsType, &pb.SubmitJobsEntry{Jobs: []*pb.Job{job("j-1")}})
			future, err := futureRow(ignorable).encode(futureType, &pb.PinJobEntry{JobId: "j-1"})
			if err != nil {
				t.Fatal(err)
			}
			if flagged := future[0]&byte(IgnoreUnknownTypeFlag) != 0; flagged != ignorable || MessageType(future[0])&^IgnoreUnknownTypeFlag != futureType {
				t.Fatalf("type byte %#x for ignorable=%t", future[0], ignorable)
			}
			res := f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: future})
			a.index = 2
			after := a.apply(SubmitJobsType, &pb.SubmitJobsEntry{Jobs: []*pb.Job{job("j-2")}})
			_, j2err := f.State().JobByID(nil, "j-2")

			if ignorable {
				if res != nil || after != nil || f.Halted() != nil || len(h.calls) != 0 {
					t.Fatalf("ignorable entry: apply = %v, next = %v, halted = %v", res, after, f.Halted())
				}
				if f.AppliedIndex() != 3 || j2err != nil {
					t.Fatalf("applied index %d, j-2: %v; want 3 and the job", f.AppliedIndex(), j2err)
				}
				return
			}
			var unknown *UnknownTypeError
			if err, _ := res.(error); !errors.As(err, &unknown) || unknown.Index != 2 || unknown.Type != futureType {
				t.Fatalf("apply of the unknown type returned %v", res)
			}
			if err, _ := after.(error); !errors.Is(err, ErrHalted) {
				t.Fatalf("apply after the halt returned %v, want ErrHalted", after)
			}
			if f.AppliedIndex() != 1 || !errors.Is(j2err, state.ErrNotFound) {
				t.Fatalf("applied index %d, j-2: %v; want 1 and no job", f.AppliedIndex(), j2err)
			}
			if got := <-h.calls; !errors.As(got, &unknown) || len(h.calls) != 0 {
				t.Fatalf("Halt got %v, then %d more calls; want one *UnknownTypeError", got, len(h.calls))
			}
			if _, err := f.Snapshot(); !errors.Is(err, ErrHalted) {
				t.Fatalf("Snapshot after the halt: %v, want ErrHalted", err)
			}
			if err := f.Restore(nopCloser{}); !errors.Is(err, ErrHalted) {
				t.Fatalf("Restore after the halt: %v, want ErrHalted", err)
			}
		})
	}
}

// TestIgnoreFlagOnAKnownType: the flag only matters to servers that do
// not know the type; the others apply the entry as usual.
func TestIgnoreFlagOnAKnownType(t *testing.T) {
	a := newApplier(t)
	data, err := Encode(SubmitJobsType, &pb.SubmitJobsEntry{Jobs: []*pb.Job{job("j-1")}})
	if err != nil {
		t.Fatal(err)
	}
	data[0] |= byte(IgnoreUnknownTypeFlag)
	if res := a.f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data}); res != nil {
		t.Fatalf("apply: %v", res)
	}
	if _, err := a.f.State().JobByID(nil, "j-1"); err != nil {
		t.Fatal(err)
	}
}
