package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// MessageType is the first byte of every log entry; the rest is the body,
// a protobuf message whose type is fixed by the MessageType.
type MessageType byte

// Values are stored in the log forever: never renumber, only append.
const (
	SubmitJobsType        MessageType = 1
	AssignJobsType        MessageType = 2
	JobStartedType        MessageType = 3
	AppendLogsType        MessageType = 4
	FinishJobType         MessageType = 5
	CancelJobType         MessageType = 6
	MarkLostType          MessageType = 7
	UpsertRunnerType      MessageType = 8
	UpsertProjectType     MessageType = 9
	DeleteJobsType        MessageType = 10
	UpdateRunnerType      MessageType = 11
	RunnerTokenType       MessageType = 12
	UpsertProfilesType    MessageType = 13
	DeleteProfileType     MessageType = 14
	DeleteProjectType     MessageType = 15
	SetPendingReasonsType MessageType = 16
	RetryJobType          MessageType = 17
	RunnerReportsType     MessageType = 18
	PinJobType            MessageType = 19
)

var typeNames = map[MessageType]string{
	SubmitJobsType:        "SubmitJobs",
	AssignJobsType:        "AssignJobs",
	JobStartedType:        "JobStarted",
	AppendLogsType:        "AppendLogs",
	FinishJobType:         "FinishJob",
	CancelJobType:         "CancelJob",
	MarkLostType:          "MarkLost",
	UpsertRunnerType:      "UpsertRunner",
	UpsertProjectType:     "UpsertProject",
	DeleteJobsType:        "DeleteJobs",
	UpdateRunnerType:      "UpdateRunner",
	RunnerTokenType:       "RunnerToken",
	UpsertProfilesType:    "UpsertProfiles",
	DeleteProfileType:     "DeleteProfile",
	DeleteProjectType:     "DeleteProject",
	SetPendingReasonsType: "SetPendingReasons",
	RetryJobType:          "RetryJob",
	RunnerReportsType:     "RunnerReports",
	PinJobType:            "PinJob",
}

func (t MessageType) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("MessageType(%d)", byte(t))
}

// newBody returns an empty body message for t.
func newBody(t MessageType) (proto.Message, error) {
	switch t {
	case SubmitJobsType:
		return &pb.SubmitJobsEntry{}, nil
	case AssignJobsType:
		return &pb.AssignJobsEntry{}, nil
	case JobStartedType:
		return &pb.JobStartedEntry{}, nil
	case AppendLogsType:
		return &pb.AppendLogsEntry{}, nil
	case FinishJobType:
		return &pb.FinishJobEntry{}, nil
	case CancelJobType:
		return &pb.CancelJobEntry{}, nil
	case MarkLostType:
		return &pb.MarkLostEntry{}, nil
	case UpsertRunnerType:
		return &pb.UpsertRunnerEntry{}, nil
	case UpsertProjectType:
		return &pb.UpsertProjectEntry{}, nil
	case DeleteJobsType:
		return &pb.DeleteJobsEntry{}, nil
	case UpdateRunnerType:
		return &pb.RunnerUpdateEntry{}, nil
	case RunnerTokenType:
		return &pb.UpsertRunnerTokenEntry{}, nil
	case UpsertProfilesType:
		return &pb.UpsertProfilesEntry{}, nil
	case DeleteProfileType:
		return &pb.DeleteProfileEntry{}, nil
	case DeleteProjectType:
		return &pb.DeleteProjectEntry{}, nil
	case SetPendingReasonsType:
		return &pb.SetPendingReasonsEntry{}, nil
	case RetryJobType:
		return &pb.RetryJobEntry{}, nil
	case RunnerReportsType:
		return &pb.RunnerReportsEntry{}, nil
	case PinJobType:
		return &pb.PinJobEntry{}, nil
	}
	return nil, fmt.Errorf("fsm: unknown message type %d", byte(t))
}

// Encode builds a log entry from a type and its body.
func Encode(t MessageType, body proto.Message) ([]byte, error) {
	want, err := newBody(t)
	if err != nil {
		return nil, err
	}
	if want.ProtoReflect().Descriptor() != body.ProtoReflect().Descriptor() {
		return nil, fmt.Errorf("fsm: %s entry needs a %T body, got %T", t, want, body)
	}
	b, err := proto.MarshalOptions{}.MarshalAppend([]byte{byte(t)}, body)
	if err != nil {
		return nil, fmt.Errorf("fsm: encode %s: %w", t, err)
	}
	return b, nil
}

// Decode splits a log entry into its type and body.
func Decode(data []byte) (MessageType, proto.Message, error) {
	if len(data) == 0 {
		return 0, nil, fmt.Errorf("fsm: empty log entry")
	}
	t := MessageType(data[0])
	body, err := newBody(t)
	if err != nil {
		return t, nil, err
	}
	if err := proto.Unmarshal(data[1:], body); err != nil {
		return t, nil, fmt.Errorf("fsm: decode %s: %w", t, err)
	}
	return t, body, nil
}
