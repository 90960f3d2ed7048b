package command

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/jobspec/profile"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// RunnerProfileSetCommand creates or updates runner profiles.
type RunnerProfileSetCommand struct{ Meta *Meta }

func (c *RunnerProfileSetCommand) Synopsis() string { return "Create or update runner profiles" }

func (c *RunnerProfileSetCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost runner profile set [options]

  Creates or replaces runner profiles, from an HCL file of runner_profile
  blocks (-file) or from flags for one profile (-name and the rest).

Options:

  -file=PATH              Profile file (HCL).
  -name=NAME              Profile name (flag form).
  -target-label=k=v       Target runners whose labels include this; repeatable.
  -target-runner-id=ID    Target one runner.
  -mode=MODE              static (default) or on_demand.
  -driver=DRIVER          exec, shell or noop (default: by step form).
  -env=k=v                Environment for the job's steps; repeatable.
  -default                Use this profile for jobs that name none.
` + clientHelp)
}

func (c *RunnerProfileSetCommand) Run(args []string) int {
	var (
		file, name, runnerID, mode, driver string
		isDefault                          bool
		labels, env                        = labelFlag{}, kvFlag{}
	)
	fs := c.Meta.flagSet("runner profile set", true)
	fs.StringVar(&file, "file", "", "")
	fs.StringVar(&name, "name", "", "")
	fs.Var(labels, "target-label", "")
	fs.StringVar(&runnerID, "target-runner-id", "", "")
	fs.StringVar(&mode, "mode", "", "")
	fs.StringVar(&driver, "driver", "", "")
	fs.Var(env, "env", "")
	fs.BoolVar(&isDefault, "default", false, "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	req := &pb.SetProfileRequest{}
	switch {
	case file != "" && name != "":
		c.Meta.UI.Error("Error: use -file or -name, not both")
		return exitUsage
	case file != "":
		src, err := os.ReadFile(file)
		if err != nil {
			return c.Meta.errorf("reading profile file: %v", err)
		}
		// Check locally first: errors then name the user's own path.
		if _, err := profile.Parse(file, src); err != nil {
			c.Meta.UI.Error(err.Error())
			return exitError
		}
		req.Source, req.Filename = src, filepath.Base(file)
	case name != "":
		req.Profile = &pb.RunnerProfile{Name: name, TargetLabels: labels, TargetRunnerId: runnerID, Mode: mode, Driver: driver, Env: env, Default: isDefault}
		// A value that is not UTF-8 cannot be sent (protobuf strings are
		// UTF-8) nor written as HCL: say which one, before anything is sent.
		if _, err := profile.Render(req.Profile); err != nil {
			c.Meta.UI.Error("Error: " + err.Error())
			return exitUsage
		}
	default:
		c.Meta.UI.Error("Error: give a profile file with -file, or a profile with -name and flags")
		return exitUsage
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	resp, err := client.Projects.SetProfile(context.Background(), connect.NewRequest(req))
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	for _, p := range resp.Msg.Profiles {
		fmt.Fprintf(c.Meta.Stdout, "Runner profile %q saved (%s)\n", p.Name, describeTarget(p))
	}
	return exitOK
}

func describeTarget(p *pb.RunnerProfile) string {
	target := "any runner"
	switch {
	case p.TargetRunnerId != "":
		target = "runner " + p.TargetRunnerId
	case len(p.TargetLabels) > 0:
		target = "labels " + kvFlag(p.TargetLabels).String()
	}
	mode := p.Mode
	if mode == "" {
		mode = "static"
	}
	s := target + ", " + mode
	if p.Default {
		s += ", default"
	}
	return s
}

// RunnerProfileListCommand lists profiles.
type RunnerProfileListCommand struct{ Meta *Meta }

func (c *RunnerProfileListCommand) Synopsis() string { return "List runner profiles" }

func (c *RunnerProfileListCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost runner profile list [options]

  Lists runner profiles.

Options:

  -json   Print as JSON.
` + clientHelp)
}

func (c *RunnerProfileListCommand) Run(args []string) int {
	return readCommand(c.Meta, "runner profile list", args, false,
		func(ctx context.Context, client *rpc.Client, stale bool) (*pb.ListProfilesResponse, error) {
			return answer(client.Projects.ListProfiles(ctx, connect.NewRequest(&pb.ListProfilesRequest{})))
		},
		func(resp *pb.ListProfilesResponse) {
			if len(resp.Profiles) == 0 {
				fmt.Fprintln(c.Meta.Stdout, "No runner profiles. Jobs run on any adopted runner until you add one with `outpost runner profile set`.")
				return
			}
			w := tabwriter.NewWriter(c.Meta.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tTARGET\tMODE\tDRIVER\tDEFAULT")
			for _, p := range resp.Profiles {
				target := "any"
				if p.TargetRunnerId != "" {
					target = "runner " + p.TargetRunnerId
				} else if len(p.TargetLabels) > 0 {
					target = kvFlag(p.TargetLabels).String()
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%t\n", p.Name, target, orDash(p.Mode), orDash(p.Driver), p.Default)
			}
			w.Flush()
		})
}

// RunnerProfileInspectCommand shows one profile as HCL.
type RunnerProfileInspectCommand struct{ Meta *Meta }

func (c *RunnerProfileInspectCommand) Synopsis() string { return "Show a runner profile" }

func (c *RunnerProfileInspectCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost runner profile inspect [options] NAME

  Shows a runner profile as HCL (ready for ` + "`runner profile set -file`" + `).

Options:

  -json   Print as JSON.
` + clientHelp)
}

func (c *RunnerProfileInspectCommand) Run(args []string) int {
	var asJSON bool
	fs := c.Meta.flagSet("runner profile inspect", true)
	fs.BoolVar(&asJSON, "json", false, "")
	return argCommand(c.Meta, fs, "the profile name", args,
		func(ctx context.Context, client *rpc.Client, name string) (*pb.GetProfileResponse, error) {
			return answer(client.Projects.GetProfile(ctx, connect.NewRequest(&pb.GetProfileRequest{Name: name})))
		},
		func(resp *pb.GetProfileResponse) int {
			if asJSON {
				return c.Meta.printJSON(resp.Profile)
			}
			src, err := profile.Render(resp.Profile)
			if err != nil {
				return c.Meta.errorf("%v", err)
			}
			c.Meta.Stdout.Write(src)
			return exitOK
		})
}

// RunnerProfileDeleteCommand deletes a profile.
type RunnerProfileDeleteCommand struct{ Meta *Meta }

func (c *RunnerProfileDeleteCommand) Synopsis() string { return "Delete a runner profile" }

func (c *RunnerProfileDeleteCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost runner profile delete [options] NAME

  Deletes a runner profile. Queued jobs keep the targeting they took from
  it when they were submitted.
` + clientHelp)
}

func (c *RunnerProfileDeleteCommand) Run(args []string) int {
	return argCommand(c.Meta, c.Meta.flagSet("runner profile delete", true), "the profile name", args,
		func(ctx context.Context, client *rpc.Client, name string) (string, error) {
			_, err := client.Projects.DeleteProfile(ctx, connect.NewRequest(&pb.DeleteProfileRequest{Name: name}))
			return name, err
		},
		func(name string) int {
			fmt.Fprintf(c.Meta.Stdout, "Runner profile %q deleted\n", name)
			return exitOK
		})
}
