package server

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/acl"
	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/jobspec/profile"
	"github.com/outpost-run/outpost/jobspec/project"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
)

// ProjectService stores projects and runner profiles.
type ProjectService struct {
	b Backend
}

var _ outpostv1connect.ProjectServiceHandler = (*ProjectService)(nil)

// SetProfile creates or replaces runner profiles, from an HCL file or from
// one profile built by the CLI's flags.
func (s *ProjectService) SetProfile(ctx context.Context, req *connect.Request[pb.SetProfileRequest]) (*connect.Response[pb.SetProfileResponse], error) {
	m := req.Msg
	var profiles []*pb.RunnerProfile
	switch {
	case len(m.Source) > 0 && m.Profile != nil:
		return nil, invalid("give either source or profile, not both")
	case len(m.Source) > maxProjectSource:
		return nil, invalid("source: %d bytes is over the %d byte limit", len(m.Source), maxProjectSource)
	case len(m.Source) > 0:
		name := m.Filename
		if name == "" {
			name = "profile.hcl"
		}
		ps, err := profile.Parse(name, m.Source)
		if err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
		profiles = ps
	case m.Profile != nil:
		// Flags go through the same checks as a file: render and parse.
		src, err := profile.Render(m.Profile)
		if err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
		ps, err := profile.Parse("flags", src)
		if err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
		profiles = ps
	default:
		return nil, invalid("source or profile is required")
	}
	if _, err := s.b.Apply(ctx, fsm.UpsertProfilesType, &pb.UpsertProfilesEntry{Profiles: profiles}); err != nil {
		return nil, toConnect(err)
	}
	resp := &pb.SetProfileResponse{}
	for _, p := range profiles {
		got, err := s.b.State().ProfileByName(p.Name)
		if err != nil {
			return nil, toConnect(err)
		}
		resp.Profiles = append(resp.Profiles, got)
	}
	return connect.NewResponse(resp), nil
}

// ListProfiles lists runner profiles.
func (s *ProjectService) ListProfiles(ctx context.Context, req *connect.Request[pb.ListProfilesRequest]) (*connect.Response[pb.ListProfilesResponse], error) {
	if err := s.b.ReadBarrier(ctx, req.Msg.Stale); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.ListProfilesResponse{Profiles: s.b.State().Profiles(nil)}), nil
}

// GetProfile returns one runner profile.
func (s *ProjectService) GetProfile(ctx context.Context, req *connect.Request[pb.GetProfileRequest]) (*connect.Response[pb.GetProfileResponse], error) {
	if req.Msg.Name == "" {
		return nil, invalid("name: a profile name is required")
	}
	if err := s.b.ReadBarrier(ctx, req.Msg.Stale); err != nil {
		return nil, toConnect(err)
	}
	p, err := s.b.State().ProfileByName(req.Msg.Name)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.GetProfileResponse{Profile: p}), nil
}

// DeleteProfile removes a runner profile.
func (s *ProjectService) DeleteProfile(ctx context.Context, req *connect.Request[pb.DeleteProfileRequest]) (*connect.Response[pb.DeleteProfileResponse], error) {
	if req.Msg.Name == "" {
		return nil, invalid("name: a profile name is required")
	}
	if _, err := s.b.Apply(ctx, fsm.DeleteProfileType, &pb.DeleteProfileEntry{Name: req.Msg.Name}); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.DeleteProfileResponse{}), nil
}

// ApplyProject validates a project file and stores it verbatim.
func (s *ProjectService) ApplyProject(ctx context.Context, req *connect.Request[pb.ApplyProjectRequest]) (*connect.Response[pb.ApplyProjectResponse], error) {
	m := req.Msg
	if len(m.Source) == 0 {
		return nil, invalid("source: the project file's content is required")
	}
	if len(m.Source) > maxProjectSource {
		return nil, invalid("source: %d bytes is over the %d byte limit", len(m.Source), maxProjectSource)
	}
	name := m.Filename
	if name == "" {
		name = "outpost.hcl"
	}
	p, err := project.Parse(name, m.Source)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if err := authorize(ctx, acl.AreaProject, acl.Admin, p.Name); err != nil {
		return nil, err
	}
	stored := &pb.Project{Name: p.Name, Filename: name, Source: m.Source}
	if _, err := s.b.Apply(ctx, fsm.UpsertProjectType, &pb.UpsertProjectEntry{Project: stored}); err != nil {
		return nil, toConnect(err)
	}
	got, err := s.b.State().ProjectByName(nil, p.Name)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.ApplyProjectResponse{Project: got, Jobs: p.JobNames()}), nil
}

// ListProjects lists stored projects.
func (s *ProjectService) ListProjects(ctx context.Context, req *connect.Request[pb.ListProjectsRequest]) (*connect.Response[pb.ListProjectsResponse], error) {
	if err := s.b.ReadBarrier(ctx, req.Msg.Stale); err != nil {
		return nil, toConnect(err)
	}
	projects := s.b.State().Projects(nil)
	if !authzFrom(ctx).IsManagement() {
		projects = slices.DeleteFunc(projects, func(p *pb.Project) bool { return !canRead(ctx, p.Name) })
	}
	page, next, err := keyPage(projects, func(p *pb.Project) string { return p.Name }, tokenProjects, "project", req.Msg.PageToken, req.Msg.PageSize)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.ListProjectsResponse{Projects: page, NextPageToken: next}), nil
}

// GetProject returns a stored project and its job names.
func (s *ProjectService) GetProject(ctx context.Context, req *connect.Request[pb.GetProjectRequest]) (*connect.Response[pb.GetProjectResponse], error) {
	if req.Msg.Name == "" {
		return nil, invalid("name: a project name is required")
	}
	if err := authorize(ctx, acl.AreaProject, acl.Read, req.Msg.Name); err != nil {
		return nil, err
	}
	if err := s.b.ReadBarrier(ctx, req.Msg.Stale); err != nil {
		return nil, toConnect(err)
	}
	p, err := s.b.State().ProjectByName(nil, req.Msg.Name)
	if err != nil {
		return nil, toConnect(err)
	}
	resp := &pb.GetProjectResponse{Project: p}
	if parsed, err := project.Parse(p.Filename, p.Source); err == nil {
		resp.Jobs = parsed.JobNames()
	}
	return connect.NewResponse(resp), nil
}

// DeleteProject removes a stored project; its jobs stay.
func (s *ProjectService) DeleteProject(ctx context.Context, req *connect.Request[pb.DeleteProjectRequest]) (*connect.Response[pb.DeleteProjectResponse], error) {
	if req.Msg.Name == "" {
		return nil, invalid("name: a project name is required")
	}
	if err := authorize(ctx, acl.AreaProject, acl.Admin, req.Msg.Name); err != nil {
		return nil, err
	}
	if _, err := s.b.Apply(ctx, fsm.DeleteProjectType, &pb.DeleteProjectEntry{Name: req.Msg.Name}); err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("no project named %q; see `outpost project list`", req.Msg.Name))
		}
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.DeleteProjectResponse{}), nil
}
