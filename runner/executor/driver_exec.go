package executor

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// execDriver runs a step's Command directly, without a shell.
type execDriver struct{}

func (execDriver) command(s Step, pathEnv, dir string) (string, []string, error) {
	path, err := lookPath(s.Command[0], pathEnv, dir)
	if err != nil {
		return "", nil, err
	}
	return path, s.Command, nil
}

// lookPath finds file the way a POSIX shell would, but in the step's PATH
// rather than ours (exec.LookPath only knows this process's environment).
// Relative PATH entries, and names with a slash, are taken relative to dir,
// the directory the step runs in. The result is absolute when dir is, and
// errors read like exec.LookPath's.
func lookPath(file, pathEnv, dir string) (string, error) {
	if strings.Contains(file, "/") {
		full := inDir(dir, file)
		if err := checkExecutable(full); err != nil {
			return "", &exec.Error{Name: file, Err: err}
		}
		return full, nil
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "." // POSIX: an empty entry is the current directory
		}
		full := inDir(dir, filepath.Join(d, file))
		if checkExecutable(full) == nil {
			return full, nil
		}
	}
	return "", &exec.Error{Name: file, Err: exec.ErrNotFound}
}

// inDir resolves a relative path against the step's working directory, so the
// file we check is the one the child will execute after its chdir.
func inDir(dir, path string) string {
	if filepath.IsAbs(path) || dir == "" {
		return path
	}
	return filepath.Join(dir, path)
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return exec.ErrNotFound
		}
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fs.ErrPermission
	}
	return nil
}

// displayArgv renders an argv for a header line, quoting only what a shell
// would need quoted, so the line can be pasted into a terminal.
func displayArgv(argv []string) string {
	parts := make([]string, len(argv))
	for i, a := range argv {
		parts[i] = shellQuote(a)
	}
	return strings.Join(parts, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
