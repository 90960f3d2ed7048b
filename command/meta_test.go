package command

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"connectrpc.com/connect"
	"github.com/mitchellh/cli"

	"github.com/outpost-run/outpost/rpc"
)

// TestArgCommand: the one-argument commands' shared path parses the
// command's flags, refuses a wrong number of arguments before calling, and
// prints a failed call in the CLI's words.
func TestArgCommand(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		callErr error
		code    int
		stdout  string
		stderr  string
	}{
		{"one argument", []string{"a-1"}, nil, exitOK, "shown a-1 (flag on)\n", ""},
		{"flags before it", []string{"-flag=false", "a-1"}, nil, exitOK, "shown a-1 (flag off)\n", ""},
		{"none", nil, nil, exitUsage, "", "Error: thing poke takes exactly one argument, a thing id\n"},
		{"two", []string{"a", "b"}, nil, exitUsage, "", "Error: thing poke takes exactly one argument, a thing id\n"},
		{"bad flag", []string{"-nope", "a"}, nil, exitUsage, "", "Error: flag provided but not defined: -nope\nRun 'outpost thing poke -h' for usage.\n"},
		{"call fails", []string{"a-1"}, connect.NewError(connect.CodeNotFound, errors.New(`thing "a-1": not found`)), exitError, "", "Error: thing \"a-1\": not found\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ui := cli.NewMockUi()
			var out bytes.Buffer
			m := &Meta{UI: ui, Stdout: &out, address: "http://127.0.0.1:1"}
			flagOn := true
			fs := m.flagSet("thing poke", true)
			fs.BoolVar(&flagOn, "flag", true, "")
			code := argCommand(m, fs, "a thing id", tc.args,
				func(ctx context.Context, c *rpc.Client, id string) (string, error) {
					if c == nil || ctx == nil {
						t.Fatal("no client or context")
					}
					return id, tc.callErr
				},
				func(id string) int {
					state := "on"
					if !flagOn {
						state = "off"
					}
					out.WriteString("shown " + id + " (flag " + state + ")\n")
					return exitOK
				})
			if code != tc.code || out.String() != tc.stdout || ui.ErrorWriter.String() != tc.stderr {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out.String(), ui.ErrorWriter.String(), tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}
