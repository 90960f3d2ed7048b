package executor

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

func TestMergeEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		base     []string
		job      map[string]string
		step     map[string]string
		want     []string
		wantPath string
	}{
		{
			name:     "later layers win, base order kept, new names sorted",
			base:     []string{"PATH=/bin", "A=base", "B=base", "C=base"},
			job:      map[string]string{"B": "job", "C": "job", "Z": "job", "Y": "job"},
			step:     map[string]string{"C": "step", "X": "step"},
			want:     []string{"PATH=/bin", "A=base", "B=job", "C=step", "Y=job", "Z=job", "X=step"},
			wantPath: "/bin",
		},
		{
			name:     "duplicate base entries: last wins",
			base:     []string{"A=1", "PATH=/bin", "A=2"},
			want:     []string{"A=2", "PATH=/bin"},
			wantPath: "/bin",
		},
		{
			name:     "malformed base entries dropped",
			base:     []string{"junk", "=x", "PATH=/bin"},
			want:     []string{"PATH=/bin"},
			wantPath: "/bin",
		},
		{
			name:     "no PATH gets the default",
			base:     []string{"A=1"},
			want:     []string{"A=1", "PATH=" + defaultPath},
			wantPath: defaultPath,
		},
		{
			name:     "empty PATH gets the default",
			base:     []string{"PATH="},
			want:     []string{"PATH=" + defaultPath},
			wantPath: defaultPath,
		},
		{
			name:     "step PATH overrides",
			base:     []string{"PATH=/bin"},
			step:     map[string]string{"PATH": "/opt/bin"},
			want:     []string{"PATH=/opt/bin"},
			wantPath: "/opt/bin",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, path := mergeEnv(tt.base, tt.job, tt.step)
			if !slices.Equal(got, tt.want) {
				t.Errorf("env = %q, want %q", got, tt.want)
			}
			if path != tt.wantPath {
				t.Errorf("path = %q, want %q", path, tt.wantPath)
			}
		})
	}
}

func TestLookPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(bin, "tool"), "#!/bin/sh\n", 0o755)
	writeFile(t, filepath.Join(bin, "data"), "", 0o644)
	writeFile(t, filepath.Join(dir, "local"), "#!/bin/sh\n", 0o755)

	tests := []struct {
		name, file, path, dir string
		want                  string
		wantErr               error
	}{
		{name: "found in PATH", file: "tool", path: "/nonexistent:" + bin, want: filepath.Join(bin, "tool")},
		{name: "not in PATH", file: "tool", path: "/nonexistent", wantErr: exec.ErrNotFound},
		{name: "non-executable skipped", file: "data", path: bin, wantErr: exec.ErrNotFound},
		{name: "relative PATH entry against dir", file: "tool", path: "bin", dir: dir, want: filepath.Join(bin, "tool")},
		{name: "empty PATH entry is dir", file: "local", path: ":/nonexistent", dir: dir, want: filepath.Join(dir, "local")},
		{name: "slash name relative to dir", file: "./local", path: "", dir: dir, want: filepath.Join(dir, "local")},
		{name: "absolute name", file: filepath.Join(bin, "tool"), path: "", want: filepath.Join(bin, "tool")},
		{name: "slash name not executable", file: "bin/data", dir: dir, wantErr: os.ErrPermission},
		{name: "slash name missing", file: "./missing", dir: dir, wantErr: exec.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := lookPath(tt.file, tt.path, tt.dir)
			if tt.wantErr != nil {
				var ee *exec.Error
				if !errors.As(err, &ee) || !errors.Is(err, tt.wantErr) || ee.Name != tt.file {
					t.Fatalf("err = %v, want exec.Error for %q wrapping %v", err, tt.file, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("lookPath = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}
