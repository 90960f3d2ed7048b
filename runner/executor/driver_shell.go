package executor

import "strings"

// shellPath is the POSIX shell scripts run under. It is fixed rather than
// looked up so a job's PATH cannot swap in a different interpreter.
const shellPath = "/bin/sh"

// shellDriver runs a step's Script with /bin/sh -c.
type shellDriver struct{}

func (shellDriver) command(s Step, _, _ string) (string, []string, error) {
	return shellPath, []string{shellPath, "-c", s.Script}, nil
}

// displayScript shows a script's first line for its header; a header must
// stay one line, and the script itself is in the job definition.
func displayScript(script string) string {
	lines := strings.Split(strings.TrimSpace(script), "\n")
	first := strings.TrimSpace(lines[0])
	if len(lines) > 1 {
		return first + " ..."
	}
	return first
}
