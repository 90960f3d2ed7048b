package project

import (
	"strings"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// The functions expressions may call. There is one: a value pasted into a
// script with ${...} is shell code, so `-var 'v=$(id)'` runs id; quoting
// must be as easy as not quoting. Everything else HCL could offer stays
// out: a project file is evaluated on the server, from the network.
var functions = map[string]function.Function{
	"shellquote": shellquoteFunc,
}

// shellquoteFunc is shellquote(s): s as one word of POSIX sh, whatever it
// holds. See ShellQuote.
var shellquoteFunc = function.New(&function.Spec{
	Description: "Quotes a string as one word for a POSIX shell.",
	Params:      []function.Parameter{{Name: "s", Type: cty.String}},
	Type:        function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.StringVal(ShellQuote(args[0].AsString())), nil
	},
})

// ShellQuote returns s as one word for a POSIX shell (sh, bash, dash,
// zsh): unchanged when it holds only characters no shell treats
// specially, else in single quotes, inside which nothing is special but
// the single quote itself, which is ended, escaped and reopened. The empty
// string is a pair of single quotes. It is Python's shlex.quote:
//
//	prod     ->  prod
//	$(id)    ->  '$(id)'
//	it's     ->  'it'\''s'
//	(empty)  ->  ''
func ShellQuote(s string) string {
	if s == "" {
		return "''"
	}
	if strings.IndexFunc(s, unsafeInShell) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// unsafeInShell reports whether a shell may treat r other than as itself
// in an unquoted word: anything but ASCII letters, digits and @%+=:,./-_.
func unsafeInShell(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	}
	return !strings.ContainsRune("@%+=:,./-_", r)
}
