// Package profile parses runner profile files: HCL with one or more
// runner_profile blocks, each saying which runners a job may run on (by id
// or by labels) and how (static or on_demand, driver, env, limits).
// Errors name file:line:col.
package profile

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/outpost-run/outpost/internal/validate"
	"github.com/outpost-run/outpost/jobspec/hcldiag"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Modes.
const (
	ModeStatic   = "static"
	ModeOnDemand = "on_demand"
)

type file struct {
	Profiles []*block `hcl:"runner_profile,block"`
}

type block struct {
	Name           string            `hcl:"name,label"`
	TargetRunnerID *string           `hcl:"target_runner_id,optional"`
	TargetLabels   map[string]string `hcl:"target_labels,optional"`
	Mode           *string           `hcl:"mode,optional"`
	Driver         *string           `hcl:"driver,optional"`
	Env            map[string]string `hcl:"env,optional"`
	Default        *bool             `hcl:"default,optional"`
	User           *string           `hcl:"user,optional"`
	Limits         *limitsBlock      `hcl:"limits,block"`
	DeclRange      hcl.Range         `hcl:",def_range"`
}

type limitsBlock struct {
	Memory    *string   `hcl:"memory,optional"`
	Processes *int      `hcl:"processes,optional"`
	OpenFiles *int      `hcl:"open_files,optional"`
	CPU       *string   `hcl:"cpu,optional"`
	CPUs      *float64  `hcl:"cpus,optional"`
	FileSize  *string   `hcl:"file_size,optional"`
	Range     hcl.Range `hcl:",def_range"`
}

// Parse reads every runner_profile block in src.
func Parse(filename string, src []byte) ([]*pb.RunnerProfile, error) {
	f, diags := hclparse.NewParser().ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, hcldiag.Error(diags)
	}
	var fb file
	if diags := gohcl.DecodeBody(f.Body, nil, &fb); diags.HasErrors() {
		return nil, hcldiag.Error(diags)
	}
	if len(fb.Profiles) == 0 {
		return nil, fmt.Errorf("%s: no runner_profile blocks; a profile file holds one or more `runner_profile \"NAME\" { ... }`", filename)
	}
	var (
		out  []*pb.RunnerProfile
		errs hcl.Diagnostics
		seen = map[string]bool{}
	)
	bad := func(r hcl.Range, summary, detail string) {
		errs = append(errs, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: r.Ptr()})
	}
	for _, b := range fb.Profiles {
		p := &pb.RunnerProfile{Name: b.Name, TargetLabels: b.TargetLabels, Env: b.Env, Mode: ModeStatic, Filename: filename, Source: src}
		if err := validate.ProfileName(b.Name); err != nil {
			bad(b.DeclRange, "Invalid profile name", err.Error()+".")
		}
		// The labels a profile targets follow the rules of runner labels: a
		// key no runner could have would leave its jobs pending for ever.
		if err := validate.Labels(b.TargetLabels); err != nil {
			bad(b.DeclRange, "Invalid target label", err.Error()+".")
		}
		if seen[b.Name] {
			bad(b.DeclRange, "Duplicate profile", fmt.Sprintf("runner_profile %q is defined more than once.", b.Name))
		}
		seen[b.Name] = true
		for _, k := range slices.Sorted(maps.Keys(b.Env)) {
			if err := validate.EnvName(k); err != nil {
				bad(b.DeclRange, "Invalid environment variable name", err.Error()+".")
			}
		}
		if b.TargetRunnerID != nil {
			p.TargetRunnerId = *b.TargetRunnerID
			if err := validate.RunnerID(p.TargetRunnerId); err != nil {
				bad(b.DeclRange, "Invalid target runner", err.Error()+".")
			}
		}
		if p.TargetRunnerId != "" && len(p.TargetLabels) > 0 {
			bad(b.DeclRange, "Conflicting targets", "Set target_runner_id or target_labels, not both.")
		}
		if b.Mode != nil {
			p.Mode = *b.Mode
			if p.Mode != ModeStatic && p.Mode != ModeOnDemand {
				bad(b.DeclRange, "Invalid mode", fmt.Sprintf("mode %q: use %q or %q.", p.Mode, ModeStatic, ModeOnDemand))
			}
		}
		if b.Driver != nil {
			p.Driver = *b.Driver
			switch p.Driver {
			case "", "exec", "shell", "noop":
			default:
				bad(b.DeclRange, "Invalid driver", fmt.Sprintf("driver %q: use \"exec\", \"shell\" or \"noop\".", p.Driver))
			}
		}
		if b.Default != nil {
			p.Default = *b.Default
		}
		if b.User != nil {
			p.User = *b.User
		}
		if l := b.Limits; l != nil {
			lim, err := parseLimits(l)
			if err != nil {
				bad(l.Range, "Invalid limits", err.Error())
			}
			p.Limits = lim
		}
		if (p.Limits != nil || p.User != "") && p.Mode != ModeOnDemand {
			bad(b.DeclRange, "Limits need on_demand", "limits and user apply to on_demand executors; set mode = \"on_demand\".")
		}
		out = append(out, p)
	}
	if errs.HasErrors() {
		return nil, hcldiag.Error(errs)
	}
	return out, nil
}

func parseLimits(l *limitsBlock) (*pb.Limits, error) {
	out := &pb.Limits{}
	var err error
	if l.Memory != nil {
		if out.MemoryBytes, err = ParseSize(*l.Memory); err != nil {
			return nil, fmt.Errorf("memory: %w", err)
		}
	}
	if l.FileSize != nil {
		if out.FileSizeBytes, err = ParseSize(*l.FileSize); err != nil {
			return nil, fmt.Errorf("file_size: %w", err)
		}
	}
	if l.Processes != nil {
		if *l.Processes < 1 {
			return nil, fmt.Errorf("processes must be at least 1")
		}
		out.Processes = uint64(*l.Processes)
	}
	if l.OpenFiles != nil {
		if *l.OpenFiles < 3 {
			return nil, fmt.Errorf("open_files must be at least 3 (stdin, stdout, stderr)")
		}
		out.OpenFiles = uint64(*l.OpenFiles)
	}
	if l.CPU != nil {
		d, err := time.ParseDuration(*l.CPU)
		if err != nil || d < time.Second {
			return nil, fmt.Errorf("cpu: %q is not a duration of at least 1s", *l.CPU)
		}
		out.CpuSeconds = uint64(d / time.Second)
	}
	if l.CPUs != nil {
		// A CFS quota has a 1ms floor per 100ms period: 0.01 of a core.
		if c := *l.CPUs; !(c >= 0.01 && c <= maxCPUs) {
			return nil, fmt.Errorf("cpus: %v is not a number of cores from 0.01 to %d (e.g. 0.5, 2)", c, maxCPUs)
		}
		out.Cpus = *l.CPUs
	}
	return out, nil
}

// maxCPUs bounds the cpus limit well above any machine, so that a typo
// (cpus = 5e9) is an error rather than no limit.
const maxCPUs = 4096

var sizeUnits = map[string]uint64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1000, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1000 * 1000, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1000 * 1000 * 1000, "gib": 1 << 30,
}

// ParseSize reads sizes like "512MiB", "1GB" or "1048576".
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	n, err := strconv.ParseUint(t[:i], 10, 64)
	unit, ok := sizeUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	if err != nil || !ok || n == 0 {
		return 0, fmt.Errorf("%q is not a size (e.g. 512MiB, 2GB)", s)
	}
	// Without this, "17592186044416m" wraps to 0, which reads as no limit.
	if n > math.MaxUint64/unit {
		return 0, fmt.Errorf("%q is too large a size (at most 16 EiB)", s)
	}
	return n * unit, nil
}

// Matches reports whether a runner with these id and labels is one a job
// targeting (runnerID, labels) may run on.
func Matches(targetRunnerID string, targetLabels map[string]string, runnerID string, runnerLabels map[string]string) bool {
	if targetRunnerID != "" && targetRunnerID != runnerID {
		return false
	}
	for k, v := range targetLabels {
		if got, ok := runnerLabels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
