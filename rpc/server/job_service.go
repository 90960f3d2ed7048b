package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"
	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/acl"
	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/internal/validate"
	"github.com/outpost-run/outpost/jobspec/project"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
)

// Limits on what a client may send, so one request cannot exhaust a server.
const (
	maxProjectSource = 1 << 20
	maxWait          = 5 * time.Minute
)

// JobService implements outpostv1connect.JobServiceHandler.
type JobService struct {
	b        Backend
	projects *project.Cache

	leaderMu   sync.Mutex
	leaderAddr string
	leader     outpostv1connect.JobServiceClient
}

// parsedProjects is how many distinct project files a server keeps parsed.
const parsedProjects = 128

var _ outpostv1connect.JobServiceHandler = (*JobService)(nil)

// BuildJob turns a resolved project job into a job record ready to submit.
func BuildJob(r *project.ResolvedJob, now time.Time) *pb.Job {
	j := &pb.Job{
		Id:           rpc.NewJobID(),
		Project:      r.Project,
		Name:         r.Job,
		Workspace:    r.Workspace,
		Variables:    r.Variables,
		Profile:      r.Profile,
		Priority:     int32(r.Priority),
		Env:          r.Env,
		Timeout:      durationOrNil(r.Timeout),
		AbortTimeout: durationOrNil(r.AbortTimeout),
		Retry: &pb.RetryPolicy{
			Attempts: uint32(r.Retry.Attempts),
			Delay:    durationOrNil(r.Retry.Delay),
			Backoff:  r.Retry.Backoff,
		},
		CreatedAt: timestamppb.New(now),
	}
	for _, s := range r.Steps {
		j.Steps = append(j.Steps, &pb.Step{
			Name:    s.Name,
			Command: s.Command,
			Script:  s.Script,
			Env:     s.Env,
			Timeout: durationOrNil(s.Timeout),
		})
	}
	return j
}

func durationOrNil(d time.Duration) *durationpb.Duration {
	if d <= 0 {
		return nil
	}
	return durationpb.New(d)
}

// SubmitJob evaluates one job of a project and queues it. It returns only
// after the job is committed to a quorum's log.
func (s *JobService) SubmitJob(ctx context.Context, req *connect.Request[pb.SubmitJobRequest]) (*connect.Response[pb.SubmitJobResponse], error) {
	m := req.Msg
	if m.Job == "" {
		return nil, invalid("job: a job name is required")
	}
	if m.Driver != "" && m.Driver != "noop" {
		return nil, invalid("driver: %q is not a driver override; use \"noop\" or leave it empty", m.Driver)
	}
	src, filename := m.ProjectSource, m.ProjectFilename
	switch {
	case len(src) > maxProjectSource:
		return nil, invalid("project_source: %d bytes is over the %d byte limit", len(src), maxProjectSource)
	case len(src) > 0 && m.Project != "":
		return nil, invalid("give either project_source or project, not both")
	case len(src) == 0 && m.Project == "":
		return nil, invalid("project_source or project is required")
	case len(src) == 0:
		if err := s.b.ReadBarrier(ctx, false); err != nil {
			return nil, toConnect(err)
		}
		p, err := s.b.State().ProjectByName(nil, m.Project)
		if err != nil {
			if errors.Is(err, state.ErrNotFound) {
				return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("no project named %q is stored; store it with `outpost project apply`, or see `outpost project list`", m.Project))
			}
			return nil, toConnect(err)
		}
		src, filename = p.Source, p.Filename
	}
	if filename == "" {
		filename = "outpost.hcl"
	}
	proj, err := s.projects.Parse(filename, src)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if err := authorize(ctx, acl.AreaProject, acl.Submit, proj.Name); err != nil {
		return nil, err
	}
	resolved, err := proj.Resolve(m.Job, m.Variables, m.Workspace)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	job := BuildJob(resolved, time.Now())
	if len(m.ProjectSource) > 0 {
		// The profile decides where the job may run: read it from a state
		// that has caught up (a server just restarted has not).
		if err := s.b.RecentBarrier(ctx); err != nil {
			return nil, toConnect(err)
		}
	}
	if err := applyProfile(s.b.State(), job, resolved); err != nil {
		return nil, err
	}
	if m.Driver != "" {
		job.Driver = m.Driver
	}
	if m.Id != "" {
		if err := validate.JobID(m.Id); err != nil {
			return nil, invalid("id: %v", err)
		}
		// A retried submit whose first try committed finds its job here
		// and returns it instead of queuing a second one.
		job.Id = m.Id
		if s.b.State().Collected(job.Id) {
			return nil, errCollected(job.Id)
		}
	}
	_, index, err := s.b.Commit(ctx, fsm.SubmitJobsType, &pb.SubmitJobsEntry{Jobs: []*pb.Job{job}})
	if err != nil {
		return nil, toConnect(err)
	}
	// Committed means durable on a quorum. This server may not have
	// applied it yet; rather than wait, answer with the job as the state
	// machine records it on submit. Reads that follow go through a read
	// barrier and see it.
	if stored, err := s.b.State().JobByID(nil, job.Id); err == nil && stored.Id == job.Id {
		// The state machine skips a job whose id is taken, so the job
		// found may be another project's, chosen by a caller who gave
		// its id: answering with it would hand over a job (its
		// environment too) the caller's submit right does not cover.
		// Only a job of the project just authorized is this submit's.
		if stored.Project != job.Project {
			if err := authorize(ctx, acl.AreaProject, acl.Read, stored.Project); err != nil {
				return nil, err
			}
			return nil, connect.NewError(connect.CodeAlreadyExists, fmt.Errorf(
				"id %s is taken by a job of project %q; submit without an id to run the job anew", job.Id, stored.Project))
		}
		return connect.NewResponse(&pb.SubmitJobResponse{Job: stored}), nil
	}
	// The state machine skips a job whose id is a deleted job's: it was
	// collected between the check above and the commit.
	if m.Id != "" && s.b.State().Collected(job.Id) {
		return nil, errCollected(job.Id)
	}
	job.Status, job.StatusReason, job.Attempt = rpc.JobPending, "waiting for a runner", 1
	job.CreateIndex, job.ModifyIndex, job.UpdatedAt = index, index, job.CreatedAt
	return connect.NewResponse(&pb.SubmitJobResponse{Job: job}), nil
}

// applyProfile copies the targeting and execution settings of the job's
// runner profile (or the default profile) into the job. No profile at all
// means any adopted runner, in static mode.
func applyProfile(st *state.Store, job *pb.Job, r *project.ResolvedJob) error {
	var p *pb.RunnerProfile
	if job.Profile != "" {
		var err error
		if p, err = st.ProfileByName(job.Profile); err != nil {
			pos := ""
			if r.ProfilePos.IsValid() {
				pos = r.ProfilePos.String() + ": "
			}
			return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(
				"%sUnknown runner profile: no runner profile named %q; create it with `outpost runner profile set`, or see `outpost runner profile list`", pos, job.Profile))
		}
	} else if p = st.DefaultProfile(); p != nil {
		job.Profile = p.Name
	}
	job.Mode = "static"
	if p == nil {
		return nil
	}
	job.TargetRunnerId, job.TargetLabels, job.Driver = p.TargetRunnerId, p.TargetLabels, p.Driver
	if p.Driver == "exec" {
		for _, st := range job.Steps {
			if st.Script != "" {
				return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(
					"step %q is a script, but runner profile %q uses the exec driver, which runs commands only; use command = [...] or a profile without driver = \"exec\"", st.Name, p.Name))
			}
		}
	}
	if p.Mode != "" {
		job.Mode = p.Mode
	}
	job.Limits, job.User = p.Limits, p.User
	if len(p.Env) > 0 {
		env := make(map[string]string, len(p.Env)+len(job.Env))
		for k, v := range p.Env {
			env[k] = v
		}
		for k, v := range job.Env {
			env[k] = v
		}
		job.Env = env
	}
	return nil
}

// RetryJob runs a finished job again as a new attempt.
func (s *JobService) RetryJob(ctx context.Context, req *connect.Request[pb.RetryJobRequest]) (*connect.Response[pb.RetryJobResponse], error) {
	j, err := s.jobToChange(ctx, req.Msg.Id, acl.Submit)
	if err != nil {
		return nil, err
	}
	if _, err := s.b.Apply(ctx, fsm.RetryJobType, &pb.RetryJobEntry{JobId: j.Id, Time: timestamppb.Now()}); err != nil {
		return nil, toConnect(err)
	}
	j, err = s.b.State().JobByID(nil, j.Id)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.RetryJobResponse{Job: j}), nil
}

// GetJob returns one job; with wait_index it blocks until the job changes.
func (s *JobService) GetJob(ctx context.Context, req *connect.Request[pb.GetJobRequest]) (*connect.Response[pb.GetJobResponse], error) {
	m := req.Msg
	if m.Id == "" {
		return nil, invalid("id: a job id is required")
	}
	if err := s.b.ReadBarrier(ctx, m.Stale); err != nil {
		return nil, toConnect(err)
	}
	wait := maxWait
	if d := m.Wait.AsDuration(); m.Wait != nil && d > 0 && d < wait {
		wait = d
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		ws := memdb.NewWatchSet()
		j, err := jobByID(ctx, s.b.State(), ws, m.Id)
		if err != nil {
			return nil, err
		}
		if err := authorize(ctx, acl.AreaProject, acl.Read, j.Project); err != nil {
			return nil, err
		}
		if m.WaitIndex == 0 || j.ModifyIndex > m.WaitIndex || watchOrTimeout(ctx, ws) {
			return connect.NewResponse(&pb.GetJobResponse{Job: j, Index: j.ModifyIndex}), nil
		}
	}
}

// watchOrTimeout waits for ws to fire; it reports true when ctx ended first.
// It also wakes periodically, so a state store swapped by a snapshot restore
// (whose old watch channels never fire) is picked up.
func watchOrTimeout(ctx context.Context, ws memdb.WatchSet) bool {
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_ = ws.WatchCtx(wctx)
	return ctx.Err() != nil
}

// errCollected refuses a submit that reuses the id of a deleted job.
func errCollected(id string) error {
	return connect.NewError(connect.CodeAlreadyExists, fmt.Errorf(
		"job %s already ran, finished and was deleted (garbage-collected, or by `outpost job delete`); its id is not used again: submit without an id to run the job anew", id))
}

// ListJobs returns a page of jobs, newest first, filtered first.
func (s *JobService) ListJobs(ctx context.Context, req *connect.Request[pb.ListJobsRequest]) (*connect.Response[pb.ListJobsResponse], error) {
	m := req.Msg
	if m.Status != "" && !validStatus(m.Status) {
		return nil, invalid("status: %q is not a job status", m.Status)
	}
	f := state.JobFilter{Status: m.Status, Project: m.Project, Name: m.Name, Workspace: m.Workspace}
	if m.CreatedAfter != nil {
		f.CreatedAfter = m.CreatedAfter.AsTime()
	}
	if m.CreatedBefore != nil {
		f.CreatedBefore = m.CreatedBefore.AsTime()
	}
	cursor, err := jobCursor(m.PageToken, f)
	if err != nil {
		return nil, err
	}
	if m.Project != "" {
		if err := authorize(ctx, acl.AreaProject, acl.Read, m.Project); err != nil {
			return nil, err
		}
	} else if !authzFrom(ctx).IsManagement() {
		f.ProjectAllowed = func(p string) bool { return canRead(ctx, p) }
	}
	if err := s.b.ReadBarrier(ctx, m.Stale); err != nil {
		return nil, toConnect(err)
	}
	st := s.b.State()
	if m.CountOnly {
		n := st.CountJobs(f)
		return connect.NewResponse(&pb.ListJobsResponse{Count: uint64(n), Index: st.Index(state.TableJobs)}), nil
	}
	size := m.PageSize
	if size == 0 {
		size = m.Limit
	}
	jobs, more := st.JobPage(f, cursor, pageSize(size))
	resp := &pb.ListJobsResponse{Jobs: jobs, Count: uint64(len(jobs)), Index: st.Index(state.TableJobs)}
	if more && len(jobs) > 0 {
		last := jobs[len(jobs)-1]
		resp.NextPageToken = jobToken(state.JobCursor{CreateIndex: last.CreateIndex, ID: last.Id}, f)
	}
	return connect.NewResponse(resp), nil
}

func validStatus(s string) bool {
	switch s {
	case rpc.JobPending, rpc.JobAssigned, rpc.JobRunning, rpc.JobCanceling,
		rpc.JobSucceeded, rpc.JobFailed, rpc.JobCanceled, rpc.JobLost:
		return true
	}
	return false
}

// jobToChange resolves id (a full id or a unique prefix) to the job a
// write is about, on a state that has every write before this request.
// Its errors are ready for the caller.
func (s *JobService) jobToChange(ctx context.Context, id string, need acl.Level) (*pb.Job, error) {
	if id == "" {
		return nil, invalid("id: a job id is required")
	}
	if err := s.b.ReadBarrier(ctx, false); err != nil {
		return nil, toConnect(err)
	}
	j, err := jobByID(ctx, s.b.State(), nil, id)
	if err != nil {
		return nil, err
	}
	if err := authorize(ctx, acl.AreaProject, need, j.Project); err != nil {
		return nil, err
	}
	return j, nil
}

// jobByID is the store's lookup of a job by id or unique prefix, with its
// error ready for the caller. An ambiguous prefix's error lists the ids
// it matches, of every project: a caller that may not read them all gets
// the refusal without them, or "j-" would list other projects' jobs.
func jobByID(ctx context.Context, st *state.Store, ws memdb.WatchSet, id string) (*pb.Job, error) {
	j, err := st.JobByID(ws, id)
	if errors.Is(err, state.ErrAmbiguous) && !authzFrom(ctx).IsManagement() {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(
			"prefix %q matches more than one job; give more of the id (see `outpost job list`)", id))
	}
	if err != nil {
		return nil, toConnect(err)
	}
	return j, nil
}

// CancelJob asks a job to stop.
func (s *JobService) CancelJob(ctx context.Context, req *connect.Request[pb.CancelJobRequest]) (*connect.Response[pb.CancelJobResponse], error) {
	m := req.Msg
	j, err := s.jobToChange(ctx, m.Id, acl.Submit)
	if err != nil {
		return nil, err
	}
	entry := &pb.CancelJobEntry{JobId: j.Id, Reason: m.Reason, Time: timestamppb.Now()}
	if _, err := s.b.Apply(ctx, fsm.CancelJobType, entry); err != nil {
		return nil, toConnect(err)
	}
	j, err = s.b.State().JobByID(nil, j.Id)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.CancelJobResponse{Job: j}), nil
}

// ReadLogs sends a job's log chunks; with follow it stays open until the job
// is finished and every chunk is sent.
func (s *JobService) ReadLogs(ctx context.Context, req *connect.Request[pb.ReadLogsRequest], stream *connect.ServerStream[pb.ReadLogsResponse]) error {
	m := req.Msg
	if m.Id == "" {
		return invalid("id: a job id is required")
	}
	if err := s.b.ReadBarrier(ctx, false); err != nil {
		return toConnect(err)
	}
	after := m.AfterSeq
	for {
		ws := memdb.NewWatchSet()
		st := s.b.State()
		// The job is read before its chunks: a finish and its last lines
		// commit together, so if this read sees the job terminal, the chunk
		// read below sees every line.
		j, err := jobByID(ctx, st, ws, m.Id)
		if err != nil {
			return err
		}
		if err := authorize(ctx, acl.AreaProject, acl.Read, j.Project); err != nil {
			return err
		}
		chunks := st.LogChunks(ws, j.Id, after)
		if len(chunks) > 0 || !m.Follow {
			resp := &pb.ReadLogsResponse{Chunks: readerLines(chunks), Status: j.Status, Truncated: j.LogsTruncated}
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
		if len(chunks) > 0 {
			after = chunks[len(chunks)-1].Seq
		}
		if !m.Follow || rpc.JobTerminal(j.Status) {
			if m.Follow {
				// A last empty message carries the final status.
				if len(chunks) == 0 {
					if err := stream.Send(&pb.ReadLogsResponse{Status: j.Status, Truncated: j.LogsTruncated}); err != nil {
						return err
					}
				}
			}
			return nil
		}
		if watchOrTimeout(ctx, ws) {
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil
			}
			return toConnect(ctx.Err())
		}
	}
}

// DeleteJob removes one finished job and its logs, leaving a tombstone so
// its id is not used again.
func (s *JobService) DeleteJob(ctx context.Context, req *connect.Request[pb.DeleteJobRequest]) (*connect.Response[pb.DeleteJobResponse], error) {
	j, err := s.jobToChange(ctx, req.Msg.Id, acl.Admin)
	if err != nil {
		return nil, err
	}
	entry := &pb.DeleteJobsEntry{JobIds: []string{j.Id}, Time: timestamppb.Now()}
	if _, err := s.b.Apply(ctx, fsm.DeleteJobsType, entry); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.DeleteJobResponse{Id: j.Id}), nil
}

// PinJob pins or unpins a job.
func (s *JobService) PinJob(ctx context.Context, req *connect.Request[pb.PinJobRequest]) (*connect.Response[pb.PinJobResponse], error) {
	j, err := s.jobToChange(ctx, req.Msg.Id, acl.Submit)
	if err != nil {
		return nil, err
	}
	entry := &pb.PinJobEntry{JobId: j.Id, Pinned: !req.Msg.Unpin, Time: timestamppb.Now()}
	if _, err := s.b.Apply(ctx, fsm.PinJobType, entry); err != nil {
		return nil, toConnect(err)
	}
	if j, err = s.b.State().JobByID(nil, j.Id); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.PinJobResponse{Job: j}), nil
}

// GarbageCollect runs a garbage-collection pass now. The leader runs it
// (it picks the jobs, by its clock), so another server hands the call on.
func (s *JobService) GarbageCollect(ctx context.Context, req *connect.Request[pb.GarbageCollectRequest]) (*connect.Response[pb.GarbageCollectResponse], error) {
	var olderThan *time.Duration
	if req.Msg.OlderThan != nil {
		d := req.Msg.OlderThan.AsDuration()
		if d < 0 {
			return nil, invalid("older_than: must not be negative")
		}
		olderThan = &d
	}
	addr, err := s.b.LeaderAddr(ctx)
	if err != nil {
		return nil, toConnect(err)
	}
	if addr != "" {
		s.leaderMu.Lock()
		if s.leaderAddr != addr {
			s.leaderAddr, s.leader = addr, outpostv1connect.NewJobServiceClient(s.b.PeerHTTPClient(), s.b.PeerURL(addr))
		}
		l := s.leader
		s.leaderMu.Unlock()
		return l.GarbageCollect(ctx, forwarded(req))
	}
	resp, err := s.b.CollectJobs(ctx, olderThan)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(resp), nil
}
