package command

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/go-hclog"

	"github.com/outpost-run/outpost/jobspec/project"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/runner/executor"
)

// JobRunCommand submits a job (or runs it in the CLI with -local).
type JobRunCommand struct{ Meta *Meta }

func (c *JobRunCommand) Synopsis() string { return "Run a job of a project file" }

func (c *JobRunCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost job run [options] JOB

  Evaluates JOB from a project file and runs it: on a runner chosen by the
  cluster, or with -local right here in this process. Without -detach it
  streams the job's output and exits with the job's exit code.

Options:

  -file=PATH        Project file. Default ./outpost.hcl.
  -project=NAME     Run a job of a project stored with ` + "`outpost project apply`" + `.
  -var=k=v          Set a project variable; repeatable.
  -workspace=NAME   Workspace (dev, staging, prod, ...). Default "default".
  -detach           Print the job id and return once the job is queued.
  -local            Run the job in this process; no server needed. Steps run
                    in the project file's directory.
` + clientHelp)
}

func (c *JobRunCommand) Run(args []string) int {
	var (
		file, workspace, driver string
		projectName             string
		detach, local           bool
		vars                    = kvFlag{}
	)
	fs := c.Meta.flagSet("job run", true)
	fs.StringVar(&file, "file", "outpost.hcl", "")
	fs.StringVar(&workspace, "workspace", "", "")
	fs.StringVar(&driver, "driver", "", "")
	fs.StringVar(&projectName, "project", "", "")
	fs.BoolVar(&detach, "detach", false, "")
	fs.BoolVar(&local, "local", false, "")
	fs.Var(vars, "var", "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() != 1 {
		c.Meta.UI.Error("Error: job run takes exactly one argument, the job name")
		return exitUsage
	}
	name := fs.Arg(0)
	var src []byte
	if projectName == "" {
		var err error
		if src, err = os.ReadFile(file); err != nil {
			return c.Meta.errorf("reading project file: %v", err)
		}
	} else if local {
		c.Meta.UI.Error("Error: -local runs a project file; it cannot use -project")
		return exitUsage
	}
	if local {
		return c.runLocal(file, src, name, vars, workspace)
	}

	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	job, err := submitWithRetry(ctx, client, &pb.SubmitJobRequest{
		Id:              rpc.NewJobID(),
		ProjectSource:   src,
		ProjectFilename: filepath.Base(file),
		Project:         projectName,
		Job:             name,
		Variables:       vars,
		Workspace:       workspace,
		Driver:          driver,
	})
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	if detach {
		fmt.Fprintln(c.Meta.Stdout, job.Id)
		return exitOK
	}
	fmt.Fprintf(c.Meta.Stderr, "==> job %s queued (%s/%s, workspace %s)\n", job.Id, job.Project, job.Name, job.Workspace)
	final, err := followLogs(ctx, client, job.Id, c.Meta.Stdout, c.Meta.Stderr)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(c.Meta.Stderr, "==> stopped following; job %s keeps running. Cancel it with: outpost job cancel %s\n", job.Id, job.Id)
			return exitError
		}
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	fmt.Fprintf(c.Meta.Stderr, "==> job %s %s: %s\n", final.Id, final.Status, final.StatusReason)
	return jobExitCode(final)
}

// submitWithRetry submits a job, retrying while the cluster has no leader
// (an election takes a second or two). The request carries its own job id,
// so a retry after a submit that did commit returns that job, not a copy.
func submitWithRetry(ctx context.Context, client *rpc.Client, req *pb.SubmitJobRequest) (*pb.Job, error) {
	deadline := time.Now().Add(15 * time.Second)
	for wait := 100 * time.Millisecond; ; wait = min(wait*2, 2*time.Second) {
		resp, err := client.Jobs.SubmitJob(ctx, connect.NewRequest(req))
		if err == nil {
			return resp.Msg.Job, nil
		}
		if connect.CodeOf(err) != connect.CodeUnavailable || time.Now().Add(wait).After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
	}
}

// runLocal evaluates and runs the job in this process.
func (c *JobRunCommand) runLocal(file string, src []byte, name string, vars map[string]string, workspace string) int {
	proj, err := project.Parse(file, src)
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	job, err := proj.Resolve(name, vars, workspace)
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	dir, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	// The job's processes end with it here too: in a cgroup of its own
	// where the host allows it.
	host, err := executor.NewHost(executor.HostOptions{Name: "local", Logger: hclog.NewNullLogger()})
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	defer host.Close()
	spec := executor.Spec{
		JobID:        "local",
		Host:         host,
		Key:          fmt.Sprintf("local-%d", os.Getpid()),
		Env:          job.Env,
		BaseEnv:      os.Environ(),
		Dir:          dir,
		Timeout:      job.Timeout,
		AbortTimeout: job.AbortTimeout,
	}
	for _, s := range job.Steps {
		spec.Steps = append(spec.Steps, executor.Step{Name: s.Name, Command: s.Command, Script: s.Script, Env: s.Env, Timeout: s.Timeout})
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(c.Meta.Stderr, "==> running %s/%s locally (workspace %s)\n", job.Project, job.Job, job.Workspace)
	res := executor.Run(ctx, spec, func(l executor.LogLine) {
		printLine(c.Meta.Stdout, c.Meta.Stderr, string(l.Stream), []byte(l.Text))
	})
	if res.Outcome == executor.Succeeded {
		fmt.Fprintln(c.Meta.Stderr, "==> job succeeded")
		return exitOK
	}
	fmt.Fprintf(c.Meta.Stderr, "==> job %s: %s\n", res.Outcome, res.Reason)
	if res.Outcome == executor.Failed && res.ExitCode > 0 && res.ExitCode < 256 {
		return res.ExitCode
	}
	return exitError
}
