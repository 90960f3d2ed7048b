package command

import (
	"os"
	"path/filepath"
	"testing"
)

// TestTokenFile: login's token file is the owner's alone (dir 0700, file
// 0600, even over a file that was world-readable), and a command uses it
// only when neither -token nor OUTPOST_TOKEN is given.
func TestTokenFile(t *testing.T) {
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	t.Setenv("OUTPOST_TOKEN", "")
	dir := filepath.Join(cfg, "outpost")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	path, err := writeTokenFile("opt_secret")
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "token") {
		t.Fatalf("token file at %s", path)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %o, want %o", p, got, want)
		}
	}
	m := &Meta{}
	if got, _ := m.resolveToken(); got != "opt_secret" {
		t.Errorf("from the file: %q", got)
	}
	t.Setenv("OUTPOST_TOKEN", "from-env")
	if got, _ := m.resolveToken(); got != "from-env" {
		t.Errorf("OUTPOST_TOKEN over the file: %q", got)
	}
	m.token = "from-flag"
	if got, _ := m.resolveToken(); got != "from-flag" {
		t.Errorf("-token over OUTPOST_TOKEN: %q", got)
	}
	m.anonymous = true
	if got, _ := m.resolveToken(); got != "" {
		t.Errorf("login sends %q, want no token", got)
	}
}
