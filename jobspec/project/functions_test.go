package project

import (
	"os/exec"
	"strings"
	"testing"
)

// Values a -var could carry that a shell must not run.
var hostileValues = []string{
	"", "plain", "two words", "$(id)", "`id`", "a'b", "'", "''", `"`, `\`, `a\'b`,
	"$HOME", "${HOME}", "x; id", "x && id", "x | id", "x > /tmp/outpost-pwned", "*", "?", "[a]", "~",
	"!", "#comment", "-n", "--", "a\nb", "tab\there", "\t", "é ü", "%s", "a=b", "{a,b}", "$'\\x41'",
}

// shellquote's output is one word whose value, for a POSIX shell, is the
// input itself: checked with a real /bin/sh.
func TestShellQuoteWithSh(t *testing.T) {
	t.Parallel()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh:", err)
	}
	for _, v := range hostileValues {
		// printf %s prints its one argument, so more than one word, or an
		// expansion, shows as a difference.
		out, err := exec.Command(sh, "-c", "printf '[%s]' "+ShellQuote(v)).Output()
		if err != nil {
			t.Errorf("%q quoted as %s: sh failed: %v", v, ShellQuote(v), err)
			continue
		}
		if got, want := string(out), "["+v+"]"; got != want {
			t.Errorf("%q quoted as %s: sh printed %q, want %q", v, ShellQuote(v), got, want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":           "''",
		"prod":       "prod",
		"v1.2.3":     "v1.2.3",
		"a/b:c@d+e%": "a/b:c@d+e%",
		"two words":  "'two words'",
		"$(id)":      "'$(id)'",
		"it's":       `'it'\''s'`,
		"'":          `''\'''`,
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// In a project file: shellquote(var.x) in a script, and a hostile -var.
func TestShellquoteInScript(t *testing.T) {
	t.Parallel()
	p, err := Parse("outpost.hcl", []byte(`project = "q"
variable "msg" {}
job "say" {
  step "s" { script = "echo ${shellquote(var.msg)} ${shellquote(workspace)}" }
  step "t" { command = ["echo", shellquote(var.msg)] }
}`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Resolve("say", map[string]string{"msg": "$(touch /tmp/x); it's"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Steps[0].Script, `echo '$(touch /tmp/x); it'\''s' default`; got != want {
		t.Errorf("script = %s, want %s", got, want)
	}
	if got := r.Steps[1].Command[1]; got != `'$(touch /tmp/x); it'\''s'` {
		t.Errorf("command element = %s", got)
	}
	for src, want := range map[string]string{
		`shellquote()`:         "Not enough function arguments",
		`shellquote("a", "b")`: "Too many function arguments",
		`shellquote(["a"])`:    "Invalid function argument",
		`shellquote(null)`:     "Invalid function argument",
	} {
		_, err := Parse("outpost.hcl", []byte(`project = "q"
job "say" {
  step "s" { script = `+src+` }
}`))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", src, err, want)
		}
	}
}

// ShellQuote's output read back the way a shell reads a word gives its
// input, and holds nothing outside quotes but safe characters.
func FuzzShellQuote(f *testing.F) {
	for _, v := range hostileValues {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := ShellQuote(s)
		var out strings.Builder
		quoted := false
		for i := 0; i < len(q); i++ {
			c := q[i]
			switch {
			case c == '\'':
				quoted = !quoted
			case quoted:
				out.WriteByte(c)
			case c == '\\' && i+1 < len(q) && q[i+1] == '\'':
				out.WriteByte('\'')
				i++
			case strings.IndexFunc(string(c), unsafeInShell) >= 0 || c >= 0x80:
				t.Fatalf("ShellQuote(%q) = %s: %q outside quotes", s, q, c)
			default:
				out.WriteByte(c)
			}
		}
		if quoted {
			t.Fatalf("ShellQuote(%q) = %s: unterminated quote", s, q)
		}
		if out.String() != s {
			t.Fatalf("ShellQuote(%q) = %s, which reads back as %q", s, q, out.String())
		}
	})
}
