package server_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"
	"github.com/hashicorp/go-hclog"

	"github.com/outpost-run/outpost/agent"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Every RPC answers a request with missing or bad fields with a typed
// error, never a panic or an internal error. The server is a real dev
// agent in this process.
func TestBadRequestsGetTypedErrors(t *testing.T) {
	cfg := agent.DevConfig()
	cfg.Ports.HTTP = 0
	cfg.Runner = false
	a, err := agent.New(cfg, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	c, err := rpc.NewClient(a.HTTPAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cases := []struct {
		name string
		call func() error
		want connect.Code
	}{
		{"submit without job", func() error {
			_, err := c.Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{ProjectSource: []byte(`project = "p"`)}))
			return err
		}, connect.CodeInvalidArgument},
		{"submit without project", func() error {
			_, err := c.Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{Job: "x"}))
			return err
		}, connect.CodeInvalidArgument},
		{"submit broken HCL", func() error {
			_, err := c.Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{Job: "x", ProjectSource: []byte("project = {{{")}))
			return err
		}, connect.CodeInvalidArgument},
		{"submit bad id", func() error {
			_, err := c.Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{Id: "nope", Job: "t", ProjectSource: []byte("project = \"p\"\njob \"t\" {\n  step \"s\" { command = [\"true\"] }\n}\n")}))
			return err
		}, connect.CodeInvalidArgument},
		{"submit bad driver", func() error {
			_, err := c.Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{Job: "t", Driver: "docker", ProjectSource: []byte("x")}))
			return err
		}, connect.CodeInvalidArgument},
		{"submit unknown stored project", func() error {
			_, err := c.Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{Job: "t", Project: "ghost"}))
			return err
		}, connect.CodeNotFound},
		{"get without id", func() error {
			_, err := c.Jobs.GetJob(ctx, connect.NewRequest(&pb.GetJobRequest{}))
			return err
		}, connect.CodeInvalidArgument},
		{"get unknown", func() error {
			_, err := c.Jobs.GetJob(ctx, connect.NewRequest(&pb.GetJobRequest{Id: "j-0000000000000000"}))
			return err
		}, connect.CodeNotFound},
		{"list bad status", func() error {
			_, err := c.Jobs.ListJobs(ctx, connect.NewRequest(&pb.ListJobsRequest{Status: "sleeping"}))
			return err
		}, connect.CodeInvalidArgument},
		{"cancel unknown", func() error {
			_, err := c.Jobs.CancelJob(ctx, connect.NewRequest(&pb.CancelJobRequest{Id: "j-nope"}))
			return err
		}, connect.CodeNotFound},
		{"retry without id", func() error {
			_, err := c.Jobs.RetryJob(ctx, connect.NewRequest(&pb.RetryJobRequest{}))
			return err
		}, connect.CodeInvalidArgument},
		{"runner action bad", func() error {
			_, err := c.Runners.RunnerAction(ctx, connect.NewRequest(&pb.RunnerActionRequest{Id: "r-1", Action: "explode"}))
			return err
		}, connect.CodeInvalidArgument},
		{"runner inspect unknown", func() error {
			_, err := c.Runners.GetRunner(ctx, connect.NewRequest(&pb.GetRunnerRequest{Id: "r-ghost"}))
			return err
		}, connect.CodeNotFound},
		{"profile bad HCL", func() error {
			_, err := c.Projects.SetProfile(ctx, connect.NewRequest(&pb.SetProfileRequest{Source: []byte(`runner_profile "a" { mode = "vm" }`)}))
			return err
		}, connect.CodeInvalidArgument},
		{"profile empty", func() error {
			_, err := c.Projects.SetProfile(ctx, connect.NewRequest(&pb.SetProfileRequest{}))
			return err
		}, connect.CodeInvalidArgument},
		{"project apply empty", func() error {
			_, err := c.Projects.ApplyProject(ctx, connect.NewRequest(&pb.ApplyProjectRequest{}))
			return err
		}, connect.CodeInvalidArgument},
		{"delete unknown profile", func() error {
			_, err := c.Projects.DeleteProfile(ctx, connect.NewRequest(&pb.DeleteProfileRequest{Name: "ghost"}))
			return err
		}, connect.CodeNotFound},
		{"remove peer empty", func() error {
			_, err := c.Operator.RemovePeer(ctx, connect.NewRequest(&pb.RemovePeerRequest{}))
			return err
		}, connect.CodeInvalidArgument},
		{"stream without register", func() error {
			s := c.Runners.Connect(ctx)
			_ = s.Send(&pb.RunnerMessage{Msg: &pb.RunnerMessage_Heartbeat{Heartbeat: &pb.Heartbeat{}}})
			_, err := s.Receive()
			return err
		}, connect.CodeInvalidArgument},
		{"register without secret", func() error {
			s := c.Runners.Connect(ctx)
			_ = s.Send(&pb.RunnerMessage{Msg: &pb.RunnerMessage_Register{Register: &pb.Register{RunnerId: "r-x", Capacity: 1}}})
			_, err := s.Receive()
			return err
		}, connect.CodeInvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if got := connect.CodeOf(err); got != tc.want {
				t.Fatalf("code %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}
