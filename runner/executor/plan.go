package executor

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// stepDriver turns a step into the process that runs it.
type stepDriver interface {
	// command returns the program to start and its argv. pathEnv is the PATH
	// of the step's merged environment and dir the job's working directory;
	// both matter for finding the program.
	command(s Step, pathEnv, dir string) (path string, argv []string, err error)
}

// plannedStep is a validated step with its driver chosen.
type plannedStep struct {
	Step
	name    string // Step.Name, or a positional name when it is empty
	display string // what the step runs, for its header line
	noop    bool
	driver  stepDriver
}

// planError is a validation failure, attributed to a step when it has one.
type planError struct {
	step string
	msg  string
}

func (e *planError) Error() string {
	if e.step == "" {
		return e.msg
	}
	return fmt.Sprintf("step %q: %s", e.step, e.msg)
}

// planJob validates the whole spec before anything runs, so a mistake in the
// last step cannot leave the first ones' side effects behind.
func planJob(spec Spec) ([]plannedStep, error) {
	switch spec.Driver {
	case DriverAuto, DriverExec, DriverShell, DriverNoop:
	default:
		return nil, &planError{msg: fmt.Sprintf("unknown driver %q (want %q, %q or %q)", spec.Driver, DriverExec, DriverShell, DriverNoop)}
	}
	if err := checkEnv(spec.Env); err != nil {
		return nil, &planError{msg: "job env: " + err.Error()}
	}
	if iso := spec.Isolation; iso != nil && !(iso.Limits.CPUs >= 0 && iso.Limits.CPUs <= 1<<20) {
		return nil, &planError{msg: fmt.Sprintf("cpus limit %g: want a number of cores above 0", iso.Limits.CPUs)}
	}
	if spec.Driver != DriverNoop && spec.Dir != "" {
		fi, err := os.Stat(spec.Dir)
		if err != nil {
			return nil, &planError{msg: fmt.Sprintf("working directory: %v", err)}
		}
		if !fi.IsDir() {
			return nil, &planError{msg: fmt.Sprintf("working directory %q is not a directory", spec.Dir)}
		}
	}

	steps := make([]plannedStep, 0, len(spec.Steps))
	for i, s := range spec.Steps {
		p := plannedStep{Step: s, name: s.Name, noop: spec.Driver == DriverNoop}
		if p.name == "" {
			p.name = "#" + strconv.Itoa(i+1)
		}
		fail := func(format string, args ...any) error {
			return &planError{step: p.name, msg: fmt.Sprintf(format, args...)}
		}

		hasCommand, hasScript := len(s.Command) > 0, s.Script != ""
		switch {
		case hasCommand && hasScript:
			return nil, fail("both command and script are set")
		case !hasCommand && !hasScript:
			return nil, fail("neither command nor script is set")
		case hasCommand && s.Command[0] == "":
			return nil, fail("command has an empty program name")
		case hasScript && spec.Driver == DriverExec:
			return nil, fail("the exec driver runs commands only, not scripts")
		}
		if s.Timeout < 0 {
			return nil, fail("negative timeout %v", s.Timeout)
		}
		if err := checkEnv(s.Env); err != nil {
			return nil, fail("env: %v", err)
		}

		if hasCommand {
			p.driver, p.display = execDriver{}, displayArgv(s.Command)
		} else {
			p.driver, p.display = shellDriver{}, displayScript(s.Script)
		}
		steps = append(steps, p)
	}
	return steps, nil
}

// checkEnv rejects variables that execve would refuse or misparse, so the job
// fails up front instead of at the step that uses them.
func checkEnv(env map[string]string) error {
	for k, v := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("invalid variable name %q", k)
		}
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("variable %s contains a NUL byte", k)
		}
	}
	return nil
}
