package command

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

func runnerLabels(r *pb.Runner) string {
	ls := make([]string, 0, len(r.Labels))
	for k, v := range r.Labels {
		ls = append(ls, k+"="+v)
	}
	sort.Strings(ls)
	if len(ls) == 0 {
		return "-"
	}
	return strings.Join(ls, ",")
}

// runnerState is the liveness column: draining shows over ready.
func runnerState(r *pb.Runner) string {
	if r.Draining {
		return r.State + ",draining"
	}
	return orDash(r.State)
}

func ago(r *pb.Runner) string {
	if r.LastSeen == nil {
		return "-"
	}
	return time.Since(r.LastSeen.AsTime()).Round(time.Second).String() + " ago"
}

// RunnerListCommand lists runners.
type RunnerListCommand struct{ Meta *Meta }

func (c *RunnerListCommand) Synopsis() string { return "List runners" }

func (c *RunnerListCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost runner list [options]

  Lists runners: adoption status (pending, adopted, rejected), liveness
  (ready, down, draining), jobs running against capacity, last contact.

Options:

  -json    Print as JSON.
  -stale   Answer from the contacted server's copy.
` + clientHelp)
}

func (c *RunnerListCommand) Run(args []string) int {
	return readCommand(c.Meta, "runner list", args, true,
		func(ctx context.Context, client *rpc.Client, stale bool) (*pb.ListRunnersResponse, error) {
			// Every page: runners are few next to jobs.
			rs, err := rpc.AllRunners(ctx, client.Runners, stale)
			return &pb.ListRunnersResponse{Runners: rs}, err
		},
		func(resp *pb.ListRunnersResponse) {
			if len(resp.Runners) == 0 {
				fmt.Fprintln(c.Meta.Stdout, "No runners. Start one with: outpost runner agent -server=ADDR -data-dir=DIR")
				return
			}
			w := tabwriter.NewWriter(c.Meta.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tNAME\tLABELS\tSTATUS\tSTATE\tJOBS\tLAST SEEN\tVERSION")
			for _, r := range resp.Runners {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", r.Id, orDash(r.Name), runnerLabels(r), r.Status, runnerState(r), r.Running, r.Capacity, ago(r), orDash(r.Version))
			}
			w.Flush()
		})
}

// RunnerInspectCommand shows one runner.
type RunnerInspectCommand struct{ Meta *Meta }

func (c *RunnerInspectCommand) Synopsis() string { return "Show a runner and the jobs it holds" }

func (c *RunnerInspectCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost runner inspect [options] ID

  Shows one runner (by id, unique id prefix or name) and the jobs it holds.

Options:

  -json    Print as JSON.
  -stale   Answer from the contacted server's copy.
` + clientHelp)
}

func (c *RunnerInspectCommand) Run(args []string) int {
	var asJSON, stale bool
	fs := c.Meta.flagSet("runner inspect", true)
	fs.BoolVar(&asJSON, "json", false, "")
	fs.BoolVar(&stale, "stale", false, "")
	return argCommand(c.Meta, fs, "a runner id or name", args,
		func(ctx context.Context, client *rpc.Client, id string) (*pb.GetRunnerResponse, error) {
			return answer(client.Runners.GetRunner(ctx, connect.NewRequest(&pb.GetRunnerRequest{Id: id, Stale: stale})))
		},
		func(resp *pb.GetRunnerResponse) int {
			if asJSON {
				return c.Meta.printJSON(resp)
			}
			r := resp.Runner
			w := tabwriter.NewWriter(c.Meta.Stdout, 0, 4, 2, ' ', 0)
			row := func(k, v string) { fmt.Fprintf(w, "%s\t%s\n", k, v) }
			row("ID", r.Id)
			row("Name", orDash(r.Name))
			row("Status", r.Status)
			row("Reason", orDash(r.StatusReason))
			row("State", runnerState(r))
			row("Labels", runnerLabels(r))
			row("Jobs", fmt.Sprintf("%d of %d", r.Running, r.Capacity))
			row("Address", orDash(r.Address))
			row("Version", orDash(r.Version))
			row("First seen", timeString(r.FirstSeen))
			row("Last seen", ago(r))
			w.Flush()
			if len(resp.Jobs) > 0 {
				fmt.Fprintln(c.Meta.Stdout, "\nJobs held:")
				w = tabwriter.NewWriter(c.Meta.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tPROJECT\tJOB\tSTATUS\tLEASE")
				for _, j := range resp.Jobs {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\n", j.Id, j.Project, j.Name, j.Status, j.Lease)
				}
				w.Flush()
			}
			return exitOK
		})
}

// RunnerActionCommand is adopt, reject, forget and drain.
type RunnerActionCommand struct {
	Meta             *Meta
	action, synopsis string
	help             string
}

func (c *RunnerActionCommand) Synopsis() string { return c.synopsis }

func (c *RunnerActionCommand) Help() string {
	extra := ""
	if c.action == "drain" {
		extra = "\nOptions:\n\n  -undo   End the drain: the runner takes new jobs again.\n"
	}
	return strings.TrimSpace(fmt.Sprintf("Usage: outpost runner %s [options] ID\n\n  %s\n%s", c.action, c.help, extra) + clientHelp)
}

func (c *RunnerActionCommand) Run(args []string) int {
	var undo bool
	fs := c.Meta.flagSet("runner "+c.action, true)
	if c.action == "drain" {
		fs.BoolVar(&undo, "undo", false, "")
	}
	// Asked once the flags are parsed: drain -undo is undrain.
	action := func() string {
		if undo {
			return "undrain"
		}
		return c.action
	}
	return argCommand(c.Meta, fs, "a runner id or name", args,
		func(ctx context.Context, client *rpc.Client, id string) (*pb.RunnerActionResponse, error) {
			return answer(client.Runners.RunnerAction(ctx, connect.NewRequest(&pb.RunnerActionRequest{Id: id, Action: action()})))
		},
		func(resp *pb.RunnerActionResponse) int {
			r := resp.Runner
			switch action() {
			case "forget":
				fmt.Fprintf(c.Meta.Stdout, "Runner %s forgotten\n", r.Id)
			case "drain":
				fmt.Fprintf(c.Meta.Stdout, "Runner %s is draining: it finishes its %d job(s) and takes no new ones\n", r.Id, r.Running)
			case "undrain":
				fmt.Fprintf(c.Meta.Stdout, "Runner %s takes new jobs again\n", r.Id)
			default:
				fmt.Fprintf(c.Meta.Stdout, "Runner %s is %s\n", r.Id, r.Status)
			}
			return exitOK
		})
}

// RunnerTokenCreateCommand makes an adoption token.
type RunnerTokenCreateCommand struct{ Meta *Meta }

func (c *RunnerTokenCreateCommand) Synopsis() string {
	return "Create a token that adopts runners on first contact"
}

func (c *RunnerTokenCreateCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost runner token create [options]

  Creates an adoption token. A runner started with -token=TOKEN is adopted
  when it first connects, with no operator step. The token is printed once;
  servers keep only its hash.

  A token adopts only new runner ids: it never lets a runner take an id
  that is registered with another secret, and an id removed with
  ` + "`outpost runner forget`" + ` comes back pending, for an operator to
  adopt, whatever token it brings.

Options:

  -description=TEXT   What the token is for.
  -ttl=DURATION       Expire the token after this long (e.g. 24h). Default: never.
  -uses=N             Runners it may adopt; 0 is no limit. Default: 1, so a
                      token that leaks adopts no one once used. Give a
                      fleet's shared token -uses=0 and a -ttl.
  -label=KEY=VALUE    Adopt only runners that carry this label. Repeatable.
  -project=NAME       The runners it adopts serve only these projects.
                      Repeatable. Default: no binding.
` + clientHelp)
}

func (c *RunnerTokenCreateCommand) Run(args []string) int {
	var (
		desc     string
		ttl      time.Duration
		uses     uint
		labels   = labelFlag{}
		projects stringsFlag
	)
	fs := c.Meta.flagSet("runner token create", true)
	fs.StringVar(&desc, "description", "", "")
	fs.DurationVar(&ttl, "ttl", 0, "")
	fs.UintVar(&uses, "uses", 1, "")
	fs.Var(labels, "label", "")
	fs.Var(&projects, "project", "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	if uses > 1<<20 {
		c.Meta.UI.Error("Error: -uses: at most 1048576 (or 0 for no limit)")
		return exitUsage
	}
	req := &pb.CreateRunnerTokenRequest{Description: desc, MaxUses: uint32(uses), Labels: labels, Projects: projects}
	if ttl > 0 {
		req.Ttl = durationpb.New(ttl)
	}
	resp, err := client.Runners.CreateRunnerToken(context.Background(), connect.NewRequest(req))
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	fmt.Fprintln(c.Meta.Stdout, resp.Msg.Token)
	exp := "never expires"
	if resp.Msg.Info.ExpiresAt != nil {
		exp = "expires " + timeString(resp.Msg.Info.ExpiresAt)
	}
	fmt.Fprintf(c.Meta.Stderr, "Token %s created (%s, %s). Start runners with: outpost runner agent -token=<the token above> ...\n", resp.Msg.Info.Id, tokenUses(resp.Msg.Info), exp)
	return exitOK
}

func tokenUses(t *pb.RunnerToken) string {
	if t.MaxUses == 0 {
		return fmt.Sprintf("used %d, no limit", t.Used)
	}
	return fmt.Sprintf("%d of %d uses left", t.MaxUses-min(t.Used, t.MaxUses), t.MaxUses)
}

func tokenBindings(t *pb.RunnerToken) string {
	var out []string
	if len(t.Labels) > 0 {
		out = append(out, "labels "+runnerLabels(&pb.Runner{Labels: t.Labels}))
	}
	if len(t.Projects) > 0 {
		out = append(out, "projects "+strings.Join(t.Projects, ","))
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, "; ")
}

// RunnerTokenListCommand lists adoption tokens.
type RunnerTokenListCommand struct{ Meta *Meta }

func (c *RunnerTokenListCommand) Synopsis() string { return "List adoption tokens" }

func (c *RunnerTokenListCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost runner token list [options]

  Lists adoption tokens: id, uses left, bindings (labels, projects),
  expiry and description. Never a token's secret: servers do not have it.

Options:

  -json    Print as JSON.
` + clientHelp)
}

func (c *RunnerTokenListCommand) Run(args []string) int {
	var asJSON bool
	fs := c.Meta.flagSet("runner token list", true)
	fs.BoolVar(&asJSON, "json", false, "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() != 0 {
		c.Meta.UI.Error("Error: runner token list takes no arguments")
		return exitUsage
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	resp, err := client.Runners.ListRunnerTokens(context.Background(), connect.NewRequest(&pb.ListRunnerTokensRequest{}))
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	if asJSON {
		return c.Meta.printJSON(resp.Msg)
	}
	if len(resp.Msg.Tokens) == 0 {
		fmt.Fprintln(c.Meta.Stdout, "No adoption tokens")
		return exitOK
	}
	w := tabwriter.NewWriter(c.Meta.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tUSES\tBINDINGS\tEXPIRES\tDESCRIPTION")
	for _, t := range resp.Msg.Tokens {
		exp := "never"
		if t.ExpiresAt != nil {
			exp = timeString(t.ExpiresAt)
			if !t.ExpiresAt.AsTime().After(time.Now()) {
				exp += " (expired)"
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.Id, tokenUses(t), tokenBindings(t), exp, orDash(t.Description))
	}
	_ = w.Flush()
	return exitOK
}

// RunnerTokenRevokeCommand deletes an adoption token.
type RunnerTokenRevokeCommand struct{ Meta *Meta }

func (c *RunnerTokenRevokeCommand) Synopsis() string { return "Revoke an adoption token" }

func (c *RunnerTokenRevokeCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost runner token revoke [options] ID

  Revokes an adoption token (its id from ` + "`outpost runner token list`" + `): no
  runner registers with it any more. Runners it already adopted stay
  adopted; ` + "`outpost runner reject`" + ` revokes one of them.
` + clientHelp)
}

func (c *RunnerTokenRevokeCommand) Run(args []string) int {
	fs := c.Meta.flagSet("runner token revoke", true)
	return argCommand(c.Meta, fs, "a token id", args,
		func(ctx context.Context, client *rpc.Client, id string) (*pb.RevokeRunnerTokenResponse, error) {
			return answer(client.Runners.RevokeRunnerToken(ctx, connect.NewRequest(&pb.RevokeRunnerTokenRequest{Id: id})))
		},
		func(*pb.RevokeRunnerTokenResponse) int {
			fmt.Fprintf(c.Meta.Stdout, "Token %s revoked\n", fs.Arg(0))
			return exitOK
		})
}
