package command

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// tokenPath is where `outpost login` keeps the token:
// $XDG_CONFIG_HOME/outpost/token, else ~/.config/outpost/token.
func tokenPath() (string, error) {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("finding the token file: %w", err)
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "outpost", "token"), nil
}

// readTokenFile returns the stored token, "" when there is none.
func readTokenFile() (token, path string, err error) {
	path, err = tokenPath()
	if err != nil {
		return "", "", nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", path, nil
	}
	if err != nil {
		return "", path, fmt.Errorf("reading the token file: %w", err)
	}
	return strings.TrimSpace(string(b)), path, nil
}

// writeTokenFile stores a token readable by its owner only (directory
// 0700, file 0600), replacing the file rather than writing into it, so a
// file another user made readable is not reused.
func writeTokenFile(token string) (string, error) {
	path, err := tokenPath()
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", fmt.Errorf("securing %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".token-*")
	if err != nil {
		return "", fmt.Errorf("writing the token file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err == nil {
		_, err = tmp.WriteString(token + "\n")
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), path)
		}
		if err != nil {
			return "", fmt.Errorf("writing the token file: %w", err)
		}
		return path, nil
	} else {
		tmp.Close()
		return "", fmt.Errorf("securing the token file: %w", err)
	}
}

// setToken adds the client's token to a plain HTTP request (snapshots).
func setToken(req *http.Request, c *rpc.Client) {
	if c.Token != "" {
		req.Header.Set(rpc.TokenHeader, c.Token)
	}
}

// readPassword reads a password: from the terminal without echo, asking
// twice when confirm, or as the first line of stdin when it is not a
// terminal. Never from the command line, where ps and shell history show
// it.
func (m *Meta) readPassword(prompt string, confirm bool) (string, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the password from stdin: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", errors.New("no password on stdin")
		}
		return pw, nil
	}
	ask := func(p string) (string, error) {
		fmt.Fprint(m.Stderr, p)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(m.Stderr)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		return string(b), nil
	}
	pw, err := ask(prompt)
	if err != nil {
		return "", err
	}
	if confirm {
		again, err := ask("Again: ")
		if err != nil {
			return "", err
		}
		if again != pw {
			return "", errors.New("the two passwords differ")
		}
	}
	if pw == "" {
		return "", errors.New("empty password")
	}
	return pw, nil
}

// listFlag collects a repeatable flag (-policy a -policy b, or a,b).
type listFlag []string

func (f *listFlag) String() string { return strings.Join(*f, ",") }
func (f *listFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*f = append(*f, p)
		}
	}
	return nil
}

func when(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "never"
	}
	return ts.AsTime().Local().Format(time.RFC3339)
}

// printToken shows a token; secret only when just made.
func (m *Meta) printToken(t *pb.ACLToken, secret string) {
	fmt.Fprintf(m.Stdout, "AccessorID:  %s\n", t.AccessorId)
	if secret != "" {
		fmt.Fprintf(m.Stdout, "SecretID:    %s\n", secret)
	}
	fmt.Fprintf(m.Stdout, "Name:        %s\n", orDash(t.Name))
	if t.Management {
		fmt.Fprintf(m.Stdout, "Management:  true\n")
	}
	fmt.Fprintf(m.Stdout, "Policies:    %s\n", orDash(strings.Join(t.Policies, ",")))
	if t.User != "" {
		fmt.Fprintf(m.Stdout, "User:        %s\n", t.User)
	}
	fmt.Fprintf(m.Stdout, "Created:     %s\n", when(t.CreatedAt))
	fmt.Fprintf(m.Stdout, "Expires:     %s\n", when(t.ExpiresAt))
	if secret != "" {
		fmt.Fprintln(m.Stdout, "The secret is shown this once; it is not stored on the servers.")
	}
}

// parseInterspersed parses flags before and after positional arguments
// (`acl user create NAME -policy P`), which the flag package alone stops
// at, and returns the positional ones.
func (m *Meta) parseInterspersed(fs *flag.FlagSet, args []string) ([]string, bool) {
	var pos []string
	for {
		if !m.parse(fs, args) {
			return nil, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
