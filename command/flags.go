package command

import (
	"fmt"
	"sort"
	"strings"

	"github.com/outpost-run/outpost/internal/validate"
)

// kvFlag is a repeatable k=v flag (-var, -label).
type kvFlag map[string]string

func (f kvFlag) String() string {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k+"="+f[k])
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (f kvFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not of the form key=value", v)
	}
	f[k] = val
	return nil
}

// labelFlag is a repeatable k=v label flag (-label, -target-label). Each
// label is checked as it is parsed, by the rules the servers apply, so a
// bad one is a usage error (exit 2) that names it.
type labelFlag map[string]string

func (f labelFlag) String() string { return kvFlag(f).String() }

func (f labelFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not of the form key=value", v)
	}
	if err := validate.Label(k, val); err != nil {
		return err
	}
	f[k] = val
	return nil
}

// stringsFlag is a repeatable flag of plain values.
type stringsFlag []string

func (f *stringsFlag) String() string     { return strings.Join(*f, ",") }
func (f *stringsFlag) Set(v string) error { *f = append(*f, v); return nil }
