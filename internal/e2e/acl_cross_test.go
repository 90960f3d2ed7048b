package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/acl"
	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	c "github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
	"github.com/outpost-run/outpost/rpc/server"
)

// crossProject is aclProject with a second job that runs until canceled,
// so CancelJob and ReadLogs -follow have a job in play to act on.
func crossProject(name string) string {
	return aclProject(name) + "job \"long\" {\n  step \"s\" {\n    command = [\"sh\", \"-c\", \"echo started; exec sleep 600\"]\n  }\n}\n"
}

// crossObjects are the objects of one project a call acts on.
type crossObjects struct {
	project string
	done    string // a finished job
	running string // a job in play
}

// crossCase is one call of a project-scoped method. call acts on the
// objects of o's project; an error of any code but permission denied
// from a call the level allows fails the test, as does a success of one
// it does not.
type crossCase struct {
	method string
	name   string
	// need is the level on the project the call needs.
	need acl.Level
	// fresh, when set, makes new objects of project a for a call that is
	// expected to succeed (a delete or a cancel uses its object up).
	fresh bool
	call  func(ctx context.Context, cl *rpc.Client, o crossObjects) error
	// after, when set, restores project a after a call that succeeded.
	after func(ctx context.Context)
}

// TestACLCross: on a real server with ACLs on, tokens with read, submit
// or admin on project a only call every project-scoped method of the ACL
// table (onProject, filtered, anyProject rows) on project b's objects and
// are refused with permission denied (lists leave b out), b's state is
// unchanged afterwards, and the same calls on a's objects succeed where
// the level allows, so the refusal is by project and not a blanket one.
// A method of those kinds without a case here fails the test.
func TestACLCross(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "acl-cross", Runner: true, Capacity: 8})
	ctx := context.Background()
	mgmt := s.Client()

	apply := func(p string) {
		t.Helper()
		if _, err := mgmt.Projects.ApplyProject(ctx, connect.NewRequest(&pb.ApplyProjectRequest{Source: []byte(crossProject(p))})); err != nil {
			t.Fatalf("apply %s: %v", p, err)
		}
	}
	submit := func(p, job string) string {
		t.Helper()
		resp, err := mgmt.Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{Project: p, Job: job}))
		if err != nil {
			t.Fatalf("submit %s/%s: %v", p, job, err)
		}
		return resp.Msg.Job.Id
	}
	objects := func(p string) crossObjects {
		t.Helper()
		o := crossObjects{project: p, done: submit(p, "hello"), running: submit(p, "long")}
		if j := waitFinished(t, s, o.done); j.Status != rpc.JobSucceeded {
			t.Fatalf("job %s: %s (%s)", o.done, j.Status, j.StatusReason)
		}
		waitStatus(t, s, o.running, rpc.JobRunning)
		return o
	}
	apply("a")
	apply("b")
	a, b := objects("a"), objects("b")

	// b's state before: every job of b, and the stored project.
	snapshotB := func() (map[string]uint64, uint64) {
		t.Helper()
		list, err := mgmt.Jobs.ListJobs(ctx, connect.NewRequest(&pb.ListJobsRequest{Project: "b"}))
		if err != nil {
			t.Fatal(err)
		}
		jobs := map[string]uint64{}
		for _, j := range list.Msg.Jobs {
			jobs[j.Id] = j.ModifyIndex
		}
		p, err := mgmt.Projects.GetProject(ctx, connect.NewRequest(&pb.GetProjectRequest{Name: "b"}))
		if err != nil {
			t.Fatal(err)
		}
		return jobs, p.Msg.Project.ModifyIndex
	}
	jobsBefore, projectBefore := snapshotB()

	// logs reads a job's logs to the end (or the first message, with
	// follow on a job in play) and returns its text.
	logs := func(ctx context.Context, cl *rpc.Client, id string, follow bool) (string, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := cl.Jobs.ReadLogs(ctx, connect.NewRequest(&pb.ReadLogsRequest{Id: id, Follow: follow}))
		if err != nil {
			return "", err
		}
		defer stream.Close()
		var text strings.Builder
		for stream.Receive() {
			for _, ch := range stream.Msg().Chunks {
				for _, l := range ch.Lines {
					text.WriteString(l.Text)
					text.Write(l.Data)
				}
			}
			if follow {
				// A first message is proof enough the stream is open.
				return text.String(), nil
			}
		}
		return text.String(), stream.Err()
	}
	// notOf fails a list that shows another project's object.
	notOf := func(what string, projects []string, own string) error {
		for _, p := range projects {
			if p != own {
				return errors.New(what + " shows an object of project " + p)
			}
		}
		if len(projects) == 0 {
			return errors.New(what + " shows nothing of project " + own)
		}
		return nil
	}

	cases := []crossCase{
		{method: c.JobServiceGetJobProcedure, name: "GetJob", need: acl.Read, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			_, err := cl.Jobs.GetJob(ctx, connect.NewRequest(&pb.GetJobRequest{Id: o.done}))
			return err
		}},
		{method: c.JobServiceGetJobProcedure, name: "GetJob by prefix", need: acl.Read, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			_, err := cl.Jobs.GetJob(ctx, connect.NewRequest(&pb.GetJobRequest{Id: o.done[:12]}))
			return err
		}},
		{method: c.JobServiceGetJobProcedure, name: "GetJob wait_index", need: acl.Read, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			_, err := cl.Jobs.GetJob(ctx, connect.NewRequest(&pb.GetJobRequest{Id: o.done, WaitIndex: 1}))
			return err
		}},
		{method: c.JobServiceReadLogsProcedure, name: "ReadLogs", need: acl.Read, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			text, err := logs(ctx, cl, o.done, false)
			if err == nil && !strings.Contains(text, "secret of "+o.project) {
				return errors.New("ReadLogs: no log text: " + text)
			}
			if err != nil && strings.Contains(text, "secret") {
				return errors.New("ReadLogs refused yet sent " + text)
			}
			return err
		}},
		{method: c.JobServiceReadLogsProcedure, name: "ReadLogs follow", need: acl.Read, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			_, err := logs(ctx, cl, o.running, true)
			return err
		}},
		{method: c.JobServiceCancelJobProcedure, name: "CancelJob", need: acl.Submit, fresh: true, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			_, err := cl.Jobs.CancelJob(ctx, connect.NewRequest(&pb.CancelJobRequest{Id: o.running, Reason: "cross"}))
			return err
		}},
		{method: c.JobServiceRetryJobProcedure, name: "RetryJob", need: acl.Submit, fresh: true, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			_, err := cl.Jobs.RetryJob(ctx, connect.NewRequest(&pb.RetryJobRequest{Id: o.done}))
			return err
		}},
		{method: c.JobServicePinJobProcedure, name: "PinJob", need: acl.Submit, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			_, err := cl.Jobs.PinJob(ctx, connect.NewRequest(&pb.PinJobRequest{Id: o.done}))
			return err
		}},
		{method: c.JobServiceDeleteJobProcedure, name: "DeleteJob", need: acl.Admin, fresh: true, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			_, err := cl.Jobs.DeleteJob(ctx, connect.NewRequest(&pb.DeleteJobRequest{Id: o.done}))
			return err
		}},
		{method: c.JobServiceSubmitJobProcedure, name: "SubmitJob stored project", need: acl.Submit, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			_, err := cl.Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{Project: o.project, Job: "hello", Driver: "noop"}))
			return err
		}},
		{method: c.JobServiceSubmitJobProcedure, name: "SubmitJob inline project", need: acl.Submit, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			_, err := cl.Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{ProjectSource: []byte(crossProject(o.project)), Job: "hello", Driver: "noop"}))
			return err
		}},
		// A submit to project a with the id of o's job: the state machine
		// skips a taken id, and the answer must not be o's job when o's
		// project is not the caller's (it was, before this test).
		{method: c.JobServiceSubmitJobProcedure, name: "SubmitJob to a with the id of a job", need: acl.Submit, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			resp, err := cl.Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{ProjectSource: []byte(crossProject("a")), Job: "hello", Id: o.done, Driver: "noop"}))
			if err == nil && resp.Msg.Job.Project != "a" {
				return errors.New("SubmitJob answered with job " + resp.Msg.Job.Id + " of project " + resp.Msg.Job.Project)
			}
			return err
		}},
		{method: c.JobServiceListJobsProcedure, name: "ListJobs", need: acl.Read, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			if o.project != "a" {
				_, err := cl.Jobs.ListJobs(ctx, connect.NewRequest(&pb.ListJobsRequest{Project: o.project}))
				return err
			}
			list, err := cl.Jobs.ListJobs(ctx, connect.NewRequest(&pb.ListJobsRequest{PageSize: 1000}))
			if err != nil {
				return err
			}
			var ps []string
			for _, j := range list.Msg.Jobs {
				ps = append(ps, j.Project)
			}
			if err := notOf("ListJobs", ps, "a"); err != nil {
				return err
			}
			own, err := cl.Jobs.ListJobs(ctx, connect.NewRequest(&pb.ListJobsRequest{Project: "a", PageSize: 1000}))
			if err != nil {
				return err
			}
			count, err := cl.Jobs.ListJobs(ctx, connect.NewRequest(&pb.ListJobsRequest{CountOnly: true}))
			if err != nil {
				return err
			}
			if count.Msg.Count != uint64(len(own.Msg.Jobs)) {
				return errors.New("ListJobs count_only counts other projects' jobs")
			}
			return nil
		}},
		{method: c.ProjectServiceListProjectsProcedure, name: "ListProjects", need: acl.Read, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			if o.project != "a" {
				return nil // the filter is checked on a's side: only a shows
			}
			list, err := cl.Projects.ListProjects(ctx, connect.NewRequest(&pb.ListProjectsRequest{}))
			if err != nil {
				return err
			}
			var ps []string
			for _, p := range list.Msg.Projects {
				ps = append(ps, p.Name)
			}
			return notOf("ListProjects", ps, "a")
		}},
		{method: c.ProjectServiceGetProjectProcedure, name: "GetProject", need: acl.Read, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			_, err := cl.Projects.GetProject(ctx, connect.NewRequest(&pb.GetProjectRequest{Name: o.project}))
			return err
		}},
		{method: c.ProjectServiceApplyProjectProcedure, name: "ApplyProject", need: acl.Admin, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			_, err := cl.Projects.ApplyProject(ctx, connect.NewRequest(&pb.ApplyProjectRequest{Source: []byte(crossProject(o.project) + "# changed\n")}))
			return err
		}},
		{method: c.ProjectServiceDeleteProjectProcedure, name: "DeleteProject", need: acl.Admin, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			_, err := cl.Projects.DeleteProject(ctx, connect.NewRequest(&pb.DeleteProjectRequest{Name: o.project}))
			return err
		}, after: func(context.Context) { apply("a") }},
		// Runner profiles belong to no project: any project reader may
		// read them (anyProject), so there is no b to refuse; the case
		// proves a token with a level on a only gets them.
		{method: c.ProjectServiceListProfilesProcedure, name: "ListProfiles", need: acl.Read, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			if o.project != "a" {
				return nil
			}
			_, err := cl.Projects.ListProfiles(ctx, connect.NewRequest(&pb.ListProfilesRequest{}))
			return err
		}},
		{method: c.ProjectServiceGetProfileProcedure, name: "GetProfile", need: acl.Read, call: func(ctx context.Context, cl *rpc.Client, o crossObjects) error {
			if o.project != "a" {
				return nil
			}
			_, err := cl.Projects.GetProfile(ctx, connect.NewRequest(&pb.GetProfileRequest{Name: "cross"}))
			return err
		}},
	}

	// Every project-scoped row of the table has a case.
	covered := map[string]bool{}
	for _, cs := range cases {
		covered[cs.method] = true
	}
	for m, r := range server.MethodRules() {
		switch r.Access {
		case server.AccessProject, server.AccessFiltered, server.AccessAnyProject:
			if !covered[m] {
				t.Errorf("%s is a project-scoped method (%s) without a cross-project case in TestACLCross", m, r)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	if _, err := mgmt.Projects.SetProfile(ctx, connect.NewRequest(&pb.SetProfileRequest{Profile: &pb.RunnerProfile{Name: "cross"}})); err != nil {
		t.Fatal(err)
	}

	levels := []struct {
		name  string
		level acl.Level
	}{{"read", acl.Read}, {"submit", acl.Submit}, {"admin", acl.Admin}}
	var clients []*rpc.Client
	for _, lv := range levels {
		name := "a-" + lv.name
		if _, err := mgmt.ACL.UpsertPolicy(ctx, connect.NewRequest(&pb.UpsertPolicyRequest{Name: name, Rules: "project \"a\" { policy = \"" + lv.name + "\" }\n"})); err != nil {
			t.Fatal(err)
		}
		tok, err := mgmt.ACL.CreateToken(ctx, connect.NewRequest(&pb.CreateTokenRequest{Name: name, Policies: []string{name}}))
		if err != nil {
			t.Fatal(err)
		}
		cl, err := rpc.NewClientTLS(s.Addr(), nil, testcluster.ClientTLSConfig(t), rpc.WithToken(tok.Msg.Secret))
		if err != nil {
			t.Fatal(err)
		}
		for _, cs := range cases {
			// On b: refused, whatever the level on a.
			if err := cs.call(ctx, cl, b); err != nil && connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Errorf("%s with %s on a, on b's objects: %v, want permission denied", cs.name, lv.name, err)
			} else if err == nil && !isListOrShared(cs.method) {
				t.Errorf("%s with %s on a, on b's objects: allowed, want permission denied", cs.name, lv.name)
			} else if err != nil && strings.Contains(err.Error(), b.running) {
				t.Errorf("%s with %s on a: the refusal names b's job: %v", cs.name, lv.name, err)
			}
			// On a: allowed when the level covers it, refused when not.
			o := a
			if cs.fresh && lv.level >= cs.need {
				o = objects("a")
			}
			err := cs.call(ctx, cl, o)
			switch {
			case lv.level >= cs.need && err != nil:
				t.Errorf("%s with %s on a, on a's objects: %v, want success", cs.name, lv.name, err)
			case lv.level < cs.need && connect.CodeOf(err) != connect.CodePermissionDenied:
				t.Errorf("%s with %s on a, on a's objects: %v, want permission denied", cs.name, lv.name, err)
			}
			if err == nil && cs.after != nil {
				cs.after(ctx)
			}
			if o != a {
				// Free the runner slot of the fresh job in play.
				_, _ = mgmt.Jobs.CancelJob(ctx, connect.NewRequest(&pb.CancelJobRequest{Id: o.running}))
			}
		}
		clients = append(clients, cl)
	}

	// A prefix every job has is ambiguous: the refusal must not list
	// job ids (b's among them) to a token that may not read b; the
	// prefix itself is the only "j-" it may hold.
	for i, cl := range clients {
		_, err := cl.Jobs.GetJob(ctx, connect.NewRequest(&pb.GetJobRequest{Id: "j-"}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || strings.Count(err.Error(), "j-") > 1 {
			t.Errorf("GetJob j- with %s on a: %v, want an ambiguous prefix without b's ids", levels[i].name, err)
		}
	}

	if _, err := mgmt.Jobs.GetJob(ctx, connect.NewRequest(&pb.GetJobRequest{Id: "j-"})); connect.CodeOf(err) != connect.CodeInvalidArgument || strings.Count(err.Error(), "j-") < 3 {
		t.Errorf("GetJob j- as management: %v, want an ambiguous prefix that lists the ids", err)
	}

	// A runner serves every project: a token that may inspect runners but
	// read only a sees, of the runner's jobs in play, only a's.
	if _, err := mgmt.ACL.UpsertPolicy(ctx, connect.NewRequest(&pb.UpsertPolicyRequest{Name: "runner-a",
		Rules: "project \"a\" { policy = \"read\" }\nrunner { policy = \"register\" }\n"})); err != nil {
		t.Fatal(err)
	}
	tok, err := mgmt.ACL.CreateToken(ctx, connect.NewRequest(&pb.CreateTokenRequest{Name: "runner-a", Policies: []string{"runner-a"}}))
	if err != nil {
		t.Fatal(err)
	}
	inspector, err := rpc.NewClientTLS(s.Addr(), nil, testcluster.ClientTLSConfig(t), rpc.WithToken(tok.Msg.Secret))
	if err != nil {
		t.Fatal(err)
	}
	bJob, err := getJob(ctx, s, b.running)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*rpc.Client{mgmt, inspector} {
		resp, err := cl.Runners.GetRunner(ctx, connect.NewRequest(&pb.GetRunnerRequest{Id: bJob.RunnerId}))
		if err != nil {
			t.Fatalf("GetRunner: %v", err)
		}
		sawB := false
		for _, j := range resp.Msg.Jobs {
			sawB = sawB || j.Project == "b"
		}
		if want := cl == mgmt; sawB != want {
			t.Errorf("GetRunner (management %v) shows b's jobs: %v, want %v", cl == mgmt, sawB, want)
		}
	}

	jobsAfter, projectAfter := snapshotB()
	if projectAfter != projectBefore {
		t.Errorf("project b changed: modify index %d, was %d", projectAfter, projectBefore)
	}
	for id, idx := range jobsBefore {
		if jobsAfter[id] != idx {
			t.Errorf("job %s of b changed: modify index %d, was %d", id, jobsAfter[id], idx)
		}
	}
	for id := range jobsAfter {
		if _, ok := jobsBefore[id]; !ok {
			t.Errorf("job %s appeared in b", id)
		}
	}
	if j, err := getJob(ctx, s, b.running); err != nil || j.Status != rpc.JobRunning {
		t.Errorf("b's running job: %v %v, want it still running", j, err)
	}
}

// isListOrShared reports whether a call on b's side may succeed: lists
// (which leave b out, checked on a's side) and runner profiles (shared by
// every project).
func isListOrShared(method string) bool {
	switch method {
	case c.ProjectServiceListProjectsProcedure, c.ProjectServiceListProfilesProcedure, c.ProjectServiceGetProfileProcedure:
		return true
	}
	return false
}
