package agent

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/outpost-run/outpost/internal/validate"
)

// AddFlags registers the flags of b's command on fs, each bound straight
// to its field of b.Flags (the flag overlay) or, for -dev and -config, of
// b. A flag sets its field only when it is given, so "was it set" is the
// field being non-nil, and a flag's zero value never hides a file's.
//
// The two commands share names and fields; where they differ is only
// what the commands have always called things: `runner agent -server`
// is the server list and `-capacity` the runner's capacity, while for
// `agent` -server runs a server and -runner-capacity sizes the in-agent
// runner.
func (b *Builder) AddFlags(fs *flag.FlagSet) {
	o := &b.Flags
	if o.Server == nil {
		o.Server = &ServerBlock{}
	}
	if o.Runner == nil {
		o.Runner = &RunnerBlock{}
	}
	if o.Ports == nil {
		o.Ports = &PortsBlock{}
	}
	if o.TLS == nil {
		o.TLS = &TLSBlock{}
	}
	fs.Var(listFlag{p: &b.ConfigPaths}, "config", "")
	fs.Var(stringFlag{&o.Name}, "name", "")
	fs.Var(stringFlag{&o.DataDir}, "data-dir", "")
	fs.Var(stringFlag{&o.BindAddr}, "bind", "")
	fs.Var(stringFlag{&o.LogLevel}, "log-level", "")
	fs.Var(intFlag{&o.Ports.Gossip}, "gossip-port", "")
	fs.Var(labelsFlag{&o.Runner.Labels}, "label", "")
	fs.Var(stringFlag{&o.TLS.CAFile}, "ca-file", "")
	fs.Var(stringFlag{&o.TLS.CertFile}, "cert-file", "")
	fs.Var(stringFlag{&o.TLS.KeyFile}, "key-file", "")
	fs.Var(boolFlag{&o.TLS.Disable}, "insecure-no-tls", "")
	// Servers and runners gossip with the same key.
	fs.Var(stringFlag{&o.Server.Encrypt}, "encrypt", "")
	switch b.Command {
	case CommandAgent:
		fs.BoolVar(&b.Dev, "dev", false, "")
		fs.Var(boolFlag{&o.Server.Enabled}, "server", "")
		fs.Var(boolFlag{&o.Runner.Enabled}, "runner", "")
		fs.Var(intFlag{&o.Server.BootstrapExpect}, "bootstrap-expect", "")
		fs.Var(listFlag{p: &o.Server.RetryJoin}, "retry-join", "")
		fs.Var(stringFlag{&o.Advertise}, "advertise", "")
		fs.Var(intFlag{&o.Ports.HTTP}, "http-port", "")
		fs.Var(intFlag{&o.Ports.Raft}, "raft-port", "")
		fs.Var(intFlag{&o.Server.RaftMultiplier}, "raft-multiplier", "")
		fs.Var(intFlag{&o.Runner.Capacity}, "runner-capacity", "")
	case CommandRunnerAgent:
		fs.Var(listFlag{p: &o.Runner.Servers, commas: true}, "server", "")
		fs.Var(intFlag{&o.Runner.Capacity}, "capacity", "")
		fs.Var(stringFlag{&o.Runner.Token}, "token", "")
		fs.Var(stringFlag{&o.Runner.LogHead}, "log-head", "")
		fs.Var(stringFlag{&o.Runner.LogTail}, "log-tail", "")
		fs.Var(stringFlag{&o.Runner.LogRate}, "log-rate", "")
	}
}

// The flag values below parse as the standard library's do, with the same
// words in their errors ("parse error", "value out of range"), so a bad
// flag reads as it always has: invalid value "x" for flag -http-port:
// parse error.
var (
	errParse = errors.New("parse error")
	errRange = errors.New("value out of range")
)

func numError(err error) error {
	var ne *strconv.NumError
	if !errors.As(err, &ne) {
		return err
	}
	switch ne.Err {
	case strconv.ErrSyntax:
		return errParse
	case strconv.ErrRange:
		return errRange
	}
	return err
}

// stringFlag sets *p to the flag's value.
type stringFlag struct{ p **string }

func (f stringFlag) Set(s string) error { *f.p = &s; return nil }

func (f stringFlag) String() string {
	if f.p == nil || *f.p == nil {
		return ""
	}
	return **f.p
}

// intFlag sets *p to the flag's value, read as flag.Int reads it.
type intFlag struct{ p **int }

func (f intFlag) Set(s string) error {
	v, err := strconv.ParseInt(s, 0, strconv.IntSize)
	if err != nil {
		return numError(err)
	}
	n := int(v)
	*f.p = &n
	return nil
}

func (f intFlag) String() string {
	if f.p == nil || *f.p == nil {
		return "0"
	}
	return strconv.Itoa(**f.p)
}

// boolFlag sets *p to the flag's value; given alone (-server), true.
type boolFlag struct{ p **bool }

func (f boolFlag) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return errParse
	}
	*f.p = &v
	return nil
}

func (f boolFlag) String() string {
	if f.p == nil || *f.p == nil {
		return "false"
	}
	return strconv.FormatBool(**f.p)
}

func (f boolFlag) IsBoolFlag() bool { return true }

// listFlag appends each use of a repeatable flag to *p; with commas, a
// value may also list several, separated by commas.
type listFlag struct {
	p      *[]string
	commas bool
}

func (f listFlag) Set(s string) error {
	if f.commas {
		*f.p = append(*f.p, strings.Split(s, ",")...)
	} else {
		*f.p = append(*f.p, s)
	}
	return nil
}

func (f listFlag) String() string {
	if f.p == nil {
		return ""
	}
	return strings.Join(*f.p, ",")
}

// labelsFlag adds each -label k=v to *p. A label is checked as it is
// parsed, by the rules the servers apply, so a bad one is a usage error
// that names it.
type labelsFlag struct{ p *map[string]string }

func (f labelsFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not of the form key=value", s)
	}
	if err := validate.Label(k, v); err != nil {
		return err
	}
	if *f.p == nil {
		*f.p = map[string]string{}
	}
	(*f.p)[k] = v
	return nil
}

func (f labelsFlag) String() string {
	if f.p == nil {
		return ""
	}
	kv := make([]string, 0, len(*f.p))
	for k, v := range *f.p {
		kv = append(kv, k+"="+v)
	}
	slices.Sort(kv)
	return strings.Join(kv, ",")
}
