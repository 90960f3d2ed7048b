package fsm

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/internal/validate"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// MessageType is the first byte of every log entry; the rest is the body,
// a protobuf message whose type is fixed by the MessageType.
//
// The byte's low seven bits are the type. The high bit is
// IgnoreUnknownTypeFlag: set, it tells a server that does not know the
// type that it may skip the entry; clear, such a server halts (see
// Config.Halt). Types therefore stay below 128.
type MessageType byte

// IgnoreUnknownTypeFlag, set in an entry's type byte, lets a server that
// does not know the type skip the entry with a warning instead of halting.
// Encode sets it for the types whose table row says ignorable; Decode
// strips it.
const IgnoreUnknownTypeFlag MessageType = 128

// Values are stored in the log forever: never renumber, only append, and
// stay below IgnoreUnknownTypeFlag. A new type also needs its row in
// entryTypes below, and nothing else.
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

	// ACL (20-29 are reserved for it).
	ACLBootstrapType    MessageType = 20
	ACLPolicyUpsertType MessageType = 21
	ACLPolicyDeleteType MessageType = 22
	ACLTokenUpsertType  MessageType = 23
	ACLTokenDeleteType  MessageType = 24
	ACLUserUpsertType   MessageType = 25
	ACLUserDeleteType   MessageType = 26

	// Runner identity and the gossip keyring (issue 15): 30-39.
	RegisterRunnerType    MessageType = 30
	DeleteRunnerTokenType MessageType = 31
	ForgetRunnerType      MessageType = 32
	GossipKeyringType     MessageType = 33
)

// entryTypes is every log entry type this version knows, by type. Entries
// change tables, not snapshot records: a type that writes an existing table
// needs nothing in snapshot.go; only a new table needs a record kind there.
var entryTypes = [IgnoreUnknownTypeFlag]entryType{
	SubmitJobsType: {name: "SubmitJobs", entryFuncs: of(checkSubmitJobs,
		func(st *state.Store, index uint64, b *pb.SubmitJobsEntry) any { return st.SubmitJobs(index, b.Jobs) })},
	AssignJobsType: {name: "AssignJobs", entryFuncs: of(nil,
		func(st *state.Store, index uint64, b *pb.AssignJobsEntry) any {
			ids, err := st.AssignJobs(index, b)
			if err != nil {
				return err
			}
			return &AssignResult{Assigned: ids}
		})},
	JobStartedType: {name: "JobStarted", entryFuncs: of(
		func(b *pb.JobStartedEntry) error { return needs(b.Report != nil, "report") },
		func(st *state.Store, index uint64, b *pb.JobStartedEntry) any { return st.JobStarted(index, b.Report) })},
	AppendLogsType: {name: "AppendLogs", entryFuncs: of(
		func(b *pb.AppendLogsEntry) error { return needs(b.Report != nil, "report") },
		func(st *state.Store, index uint64, b *pb.AppendLogsEntry) any { return st.AppendLogs(index, b.Report) })},
	FinishJobType: {name: "FinishJob", entryFuncs: of(
		func(b *pb.FinishJobEntry) error { return needs(b.Report != nil, "report") },
		func(st *state.Store, index uint64, b *pb.FinishJobEntry) any { return st.FinishJob(index, b.Report) })},
	CancelJobType: {name: "CancelJob", entryFuncs: of(nil,
		func(st *state.Store, index uint64, b *pb.CancelJobEntry) any { return st.CancelJob(index, b) })},
	MarkLostType: {name: "MarkLost", entryFuncs: of(nil,
		func(st *state.Store, index uint64, b *pb.MarkLostEntry) any { return st.MarkLost(index, b) })},
	UpsertRunnerType: {name: "UpsertRunner", entryFuncs: of(checkUpsertRunner,
		func(st *state.Store, index uint64, b *pb.UpsertRunnerEntry) any {
			return st.UpsertRunner(index, b.Runner)
		})},
	UpsertProjectType: {name: "UpsertProject", entryFuncs: of(checkUpsertProject,
		func(st *state.Store, index uint64, b *pb.UpsertProjectEntry) any {
			return st.UpsertProject(index, b.Project)
		})},
	DeleteJobsType: {name: "DeleteJobs", entryFuncs: of(nil,
		func(st *state.Store, index uint64, b *pb.DeleteJobsEntry) any { return st.DeleteJobs(index, b) })},
	UpdateRunnerType: {name: "UpdateRunner", entryFuncs: of(nil,
		func(st *state.Store, index uint64, b *pb.RunnerUpdateEntry) any { return st.UpdateRunner(index, b) })},
	RunnerTokenType: {name: "RunnerToken", entryFuncs: of(
		func(b *pb.UpsertRunnerTokenEntry) error {
			return needs(b.Token.GetId() != "" && len(b.Token.GetHash()) > 0, "token id and hash")
		},
		func(st *state.Store, index uint64, b *pb.UpsertRunnerTokenEntry) any {
			return st.UpsertRunnerToken(index, b.Token)
		})},
	UpsertProfilesType: {name: "UpsertProfiles", entryFuncs: of(checkUpsertProfiles,
		func(st *state.Store, index uint64, b *pb.UpsertProfilesEntry) any {
			return st.UpsertProfiles(index, b.Profiles)
		})},
	DeleteProfileType: {name: "DeleteProfile", entryFuncs: of(nil,
		func(st *state.Store, index uint64, b *pb.DeleteProfileEntry) any {
			return st.DeleteProfile(index, b.Name)
		})},
	DeleteProjectType: {name: "DeleteProject", entryFuncs: of(nil,
		func(st *state.Store, index uint64, b *pb.DeleteProjectEntry) any {
			return st.DeleteProject(index, b.Name)
		})},
	SetPendingReasonsType: {name: "SetPendingReasons", entryFuncs: of(nil,
		func(st *state.Store, index uint64, b *pb.SetPendingReasonsEntry) any {
			return st.SetPendingReasons(index, b.Reasons)
		})},
	RetryJobType: {name: "RetryJob", entryFuncs: of(nil,
		func(st *state.Store, index uint64, b *pb.RetryJobEntry) any { return st.RetryJob(index, b) })},
	RunnerReportsType: {name: "RunnerReports", entryFuncs: of(checkRunnerReports,
		func(st *state.Store, index uint64, b *pb.RunnerReportsEntry) any {
			return &ReportsResult{Errors: st.ApplyReports(index, b.Time, b.Reports)}
		})},
	PinJobType: {name: "PinJob", entryFuncs: of(
		func(b *pb.PinJobEntry) error { return needs(b.JobId != "", "job id") },
		func(st *state.Store, index uint64, b *pb.PinJobEntry) any { return st.PinJob(index, b) })},
	ACLBootstrapType: {name: "ACLBootstrap", entryFuncs: of(
		func(b *pb.ACLBootstrapEntry) error {
			return needs(b.Token.GetAccessorId() != "" && len(b.Token.GetHash()) > 0, "token accessor and hash")
		},
		func(st *state.Store, index uint64, b *pb.ACLBootstrapEntry) any { return st.ACLBootstrap(index, b) })},
	ACLPolicyUpsertType: {name: "ACLPolicyUpsert", entryFuncs: of(
		func(b *pb.ACLPolicyUpsertEntry) error { return needs(b.Policy.GetName() != "", "policy name") },
		func(st *state.Store, index uint64, b *pb.ACLPolicyUpsertEntry) any {
			return st.UpsertACLPolicy(index, b.Policy)
		})},
	ACLPolicyDeleteType: {name: "ACLPolicyDelete", entryFuncs: of(
		func(b *pb.ACLPolicyDeleteEntry) error { return needs(b.Name != "", "policy name") },
		func(st *state.Store, index uint64, b *pb.ACLPolicyDeleteEntry) any {
			return st.DeleteACLPolicy(index, b.Name)
		})},
	ACLTokenUpsertType: {name: "ACLTokenUpsert", entryFuncs: of(
		func(b *pb.ACLTokenUpsertEntry) error {
			return needs(b.Token.GetAccessorId() != "" && len(b.Token.GetHash()) > 0, "token accessor and hash")
		},
		func(st *state.Store, index uint64, b *pb.ACLTokenUpsertEntry) any {
			return st.InsertACLToken(index, b.Token)
		})},
	ACLTokenDeleteType: {name: "ACLTokenDelete", entryFuncs: of(
		func(b *pb.ACLTokenDeleteEntry) error { return needs(len(b.AccessorIds) > 0, "token accessor") },
		func(st *state.Store, index uint64, b *pb.ACLTokenDeleteEntry) any {
			return st.DeleteACLTokens(index, b.AccessorIds)
		})},
	ACLUserUpsertType: {name: "ACLUserUpsert", entryFuncs: of(
		func(b *pb.ACLUserUpsertEntry) error { return needs(b.User.GetName() != "", "user name") },
		func(st *state.Store, index uint64, b *pb.ACLUserUpsertEntry) any {
			return st.UpsertACLUser(index, b.User)
		})},
	ACLUserDeleteType: {name: "ACLUserDelete", entryFuncs: of(
		func(b *pb.ACLUserDeleteEntry) error { return needs(b.Name != "", "user name") },
		func(st *state.Store, index uint64, b *pb.ACLUserDeleteEntry) any {
			return st.DeleteACLUser(index, b.Name)
		})},
	RegisterRunnerType: {name: "RegisterRunner", entryFuncs: of(
		func(b *pb.RegisterRunnerEntry) error {
			if err := needs(b.TokenId != "" && b.Time != nil, "token id and time"); err != nil {
				return err
			}
			return checkUpsertRunner(&pb.UpsertRunnerEntry{Runner: b.Runner})
		},
		func(st *state.Store, index uint64, b *pb.RegisterRunnerEntry) any {
			return st.RegisterRunnerWithToken(index, b.Runner, b.TokenId, b.Time)
		})},
	DeleteRunnerTokenType: {name: "DeleteRunnerToken", entryFuncs: of(
		func(b *pb.DeleteRunnerTokenEntry) error { return needs(b.Id != "", "token id") },
		func(st *state.Store, index uint64, b *pb.DeleteRunnerTokenEntry) any {
			return st.DeleteRunnerToken(index, b.Id)
		})},
	ForgetRunnerType: {name: "ForgetRunner", entryFuncs: of(
		func(b *pb.ForgetRunnerEntry) error { return needs(b.RunnerId != "", "runner id") },
		func(st *state.Store, index uint64, b *pb.ForgetRunnerEntry) any { return st.ForgetRunner(index, b) })},
	GossipKeyringType: {name: "GossipKeyring", entryFuncs: of(
		func(b *pb.GossipKeyringEntry) error { return needs(b.Op != "" && b.Key != "", "op and key") },
		func(st *state.Store, index uint64, b *pb.GossipKeyringEntry) any {
			return st.ApplyGossipKeyring(index, b)
		})},
}

// entryType is one row of entryTypes.
type entryType struct {
	name string
	// ignorable types are written with IgnoreUnknownTypeFlag, so servers
	// older than the type skip them. Only for an entry whose absence
	// leaves an old server's state correct (a hint, a statistic), never
	// for one that changes a job, a runner or anything a read returns.
	ignorable bool
	entryFuncs
}

// entryFuncs are a type's body handling, typed once by of.
type entryFuncs struct {
	desc protoreflect.MessageDescriptor
	// newBody returns an empty body, to decode into.
	newBody func() proto.Message
	// validate rejects a body that decodes but lacks what apply needs
	// (a missingField error), so a corrupt or hand-made entry yields an
	// error instead of a panic, or that carries values internal/validate
	// refuses. nil when the type has no rule.
	validate func(proto.Message) error
	// apply hands the body to one state-store method and returns the
	// proposer's result: an error or a typed result.
	apply func(st *state.Store, index uint64, body proto.Message) any
}

// of types a row's functions by their body message M, so each row is
// written against its own message and the assertion lives here once.
func of[T any, M interface {
	*T
	proto.Message
}](check func(M) error, apply func(*state.Store, uint64, M) any) entryFuncs {
	ef := entryFuncs{
		desc:    M(new(T)).ProtoReflect().Descriptor(),
		newBody: func() proto.Message { return M(new(T)) },
		apply:   func(st *state.Store, index uint64, body proto.Message) any { return apply(st, index, body.(M)) },
	}
	if check != nil {
		ef.validate = func(body proto.Message) error { return check(body.(M)) }
	}
	return ef
}

// lookup returns t's row, or nil when this version does not know t.
func lookup(t MessageType) *entryType {
	if t >= IgnoreUnknownTypeFlag || entryTypes[t].apply == nil {
		return nil
	}
	return &entryTypes[t]
}

func (t MessageType) String() string {
	if et := lookup(t); et != nil {
		return et.name
	}
	return fmt.Sprintf("MessageType(%d)", byte(t))
}

// ErrUnknownType is what Decode and Encode return for a type this version
// does not know.
var ErrUnknownType = errors.New("unknown message type")

// Encode builds a log entry from a type and its body.
func Encode(t MessageType, body proto.Message) ([]byte, error) {
	et := lookup(t)
	if et == nil {
		return nil, fmt.Errorf("fsm: %w %d", ErrUnknownType, byte(t))
	}
	return et.encode(t, body)
}

func (et *entryType) encode(t MessageType, body proto.Message) ([]byte, error) {
	if et.desc != body.ProtoReflect().Descriptor() {
		return nil, fmt.Errorf("fsm: %s entry needs a %T body, got %T", t, et.newBody(), body)
	}
	head := byte(t)
	if et.ignorable {
		head |= byte(IgnoreUnknownTypeFlag)
	}
	b, err := proto.MarshalOptions{}.MarshalAppend([]byte{head}, body)
	if err != nil {
		return nil, fmt.Errorf("fsm: encode %s: %w", t, err)
	}
	return b, nil
}

// Decode splits a log entry into its type, without IgnoreUnknownTypeFlag,
// and its body. A type this version does not know is ErrUnknownType.
func Decode(data []byte) (MessageType, proto.Message, error) {
	if len(data) == 0 {
		return 0, nil, fmt.Errorf("fsm: empty log entry")
	}
	t := MessageType(data[0]) &^ IgnoreUnknownTypeFlag
	et := lookup(t)
	if et == nil {
		return t, nil, fmt.Errorf("fsm: %w %d", ErrUnknownType, byte(t))
	}
	body := et.newBody()
	if err := proto.Unmarshal(data[1:], body); err != nil {
		return t, nil, fmt.Errorf("fsm: decode %s: %w", t, err)
	}
	return t, body, nil
}

// ErrInvalidEntry is what an entry that breaks a rule of internal/validate
// gets back: a name, label or size no handler should have let in.
var ErrInvalidEntry = errors.New("invalid entry")

// missingField is a validate hook's verdict on an entry without a field
// its apply needs.
type missingField string

func (m missingField) Error() string { return "no " + string(m) }

// needs returns a missingField error for what unless ok.
func needs(ok bool, what string) error {
	if ok {
		return nil
	}
	return missingField(what)
}

// check runs t's validate hook. Values checks apply internal/validate's
// rules to the values an entry carries into the state (names, labels,
// capacities), so no client, no other version and no forwarded raw apply
// can store what the CLI and the handlers refuse. Every server applies the
// same rules to the same entry, so all refuse it alike. Fields tests and
// old entries leave empty are checked only when set.
func (et *entryType) check(t MessageType, body proto.Message) error {
	if et.validate == nil {
		return nil
	}
	err := et.validate(body)
	if err == nil {
		return nil
	}
	if m, ok := err.(missingField); ok {
		return fmt.Errorf("fsm: %s entry has no %s", t, string(m))
	}
	return fmt.Errorf("%s entry: %w: %w", t, err, ErrInvalidEntry)
}

func checkSubmitJobs(b *pb.SubmitJobsEntry) error {
	for _, j := range b.Jobs {
		if j.GetId() == "" {
			return missingField("job id")
		}
	}
	for _, j := range b.Jobs {
		if err := checkJob(j); err != nil {
			return fmt.Errorf("job %s: %w", j.GetId(), err)
		}
	}
	return nil
}

func checkJob(j *pb.Job) error {
	for _, c := range []struct {
		value string
		check func(string) error
	}{{j.Project, validate.ProjectName}, {j.Name, validate.JobName}, {j.Workspace, validate.Workspace}, {j.Profile, validate.ProfileName}} {
		if c.value != "" {
			if err := c.check(c.value); err != nil {
				return err
			}
		}
	}
	return validate.Labels(j.TargetLabels)
}

func checkUpsertRunner(b *pb.UpsertRunnerEntry) error {
	if b.Runner.GetId() == "" {
		return missingField("runner id")
	}
	r := b.Runner
	if err := validate.RunnerID(r.Id); err != nil {
		return err
	}
	if r.Name != "" {
		if err := validate.RunnerName(r.Name); err != nil {
			return err
		}
	}
	if err := validate.Capacity(int64(r.Capacity)); err != nil {
		return err
	}
	return validate.Labels(r.Labels)
}

func checkUpsertProject(b *pb.UpsertProjectEntry) error {
	if b.Project.GetName() == "" {
		return missingField("project name")
	}
	return validate.ProjectName(b.Project.GetName())
}

func checkUpsertProfiles(b *pb.UpsertProfilesEntry) error {
	for _, p := range b.Profiles {
		if p.GetName() == "" {
			return missingField("profile name")
		}
	}
	for _, p := range b.Profiles {
		if err := validate.ProfileName(p.Name); err != nil {
			return err
		}
		if err := validate.Labels(p.TargetLabels); err != nil {
			return fmt.Errorf("profile %s: %w", p.Name, err)
		}
	}
	return nil
}

func checkRunnerReports(b *pb.RunnerReportsEntry) error {
	// The last incomplete report names the error, as it always has.
	var missing missingField
	for _, r := range b.Reports {
		switch m := r.GetMsg().(type) {
		case *pb.RunnerMessage_Started:
			if m.Started == nil {
				missing = "started report"
			}
		case *pb.RunnerMessage_Logs:
			if m.Logs == nil {
				missing = "logs report"
			}
		case *pb.RunnerMessage_Finished:
			if m.Finished == nil {
				missing = "finished report"
			}
		}
	}
	if missing != "" {
		return missing
	}
	return nil
}
