package fsm

import (
	"bufio"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

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
		if MessageType(i) != last+1 {
			t.Errorf("type %d follows %d: types are numbered without gaps", i, last)
		}
		last = MessageType(i)
	}
	if last != PinJobType {
		t.Errorf("last type is %s, want %s", last, PinJobType)
	}
	if got := MessageType(99).String(); got != "MessageType(99)" {
		t.Errorf("unknown type prints as %q", got)
	}
}
