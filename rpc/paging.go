package rpc

import (
	"context"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
)

// Every list answer is a page (ARCHITECTURE section 10: list answers are
// bounded): DefaultPageSize items unless the request asks for another
// size, at most MaxPageSize whatever it asks. A page of 1,000 jobs is
// about 600 KB of JSON.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// EachJobPage calls fn with every page of the listing req describes,
// newest first, until the last page or an error (fn's included). req's
// page_token is where it starts.
func EachJobPage(ctx context.Context, c outpostv1connect.JobServiceClient, req *pb.ListJobsRequest, fn func(*pb.ListJobsResponse) error) error {
	req = proto.Clone(req).(*pb.ListJobsRequest)
	for {
		resp, err := c.ListJobs(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		if err := fn(resp.Msg); err != nil {
			return err
		}
		if resp.Msg.NextPageToken == "" {
			return nil
		}
		req.PageToken = resp.Msg.NextPageToken
	}
}

// AllJobs returns every job the listing req describes, newest first, a
// page of MaxPageSize at a time (unless req asks for another size).
func AllJobs(ctx context.Context, c outpostv1connect.JobServiceClient, req *pb.ListJobsRequest) ([]*pb.Job, error) {
	if req.PageSize == 0 {
		req = proto.Clone(req).(*pb.ListJobsRequest)
		req.PageSize = MaxPageSize
	}
	var out []*pb.Job
	err := EachJobPage(ctx, c, req, func(p *pb.ListJobsResponse) error {
		out = append(out, p.Jobs...)
		return nil
	})
	return out, err
}

// AllRunners returns every runner, by id, a page at a time.
func AllRunners(ctx context.Context, c outpostv1connect.RunnerServiceClient, stale bool) ([]*pb.Runner, error) {
	req := &pb.ListRunnersRequest{Stale: stale, PageSize: MaxPageSize}
	var out []*pb.Runner
	for {
		resp, err := c.ListRunners(ctx, connect.NewRequest(req))
		if err != nil {
			return nil, err
		}
		out = append(out, resp.Msg.Runners...)
		if resp.Msg.NextPageToken == "" {
			return out, nil
		}
		req.PageToken = resp.Msg.NextPageToken
	}
}

// AllProjects returns every stored project, by name, a page at a time.
func AllProjects(ctx context.Context, c outpostv1connect.ProjectServiceClient, stale bool) ([]*pb.Project, error) {
	req := &pb.ListProjectsRequest{Stale: stale, PageSize: MaxPageSize}
	var out []*pb.Project
	for {
		resp, err := c.ListProjects(ctx, connect.NewRequest(req))
		if err != nil {
			return nil, err
		}
		out = append(out, resp.Msg.Projects...)
		if resp.Msg.NextPageToken == "" {
			return out, nil
		}
		req.PageToken = resp.Msg.NextPageToken
	}
}
