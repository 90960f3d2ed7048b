package profile

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Render writes a profile as HCL, so a profile built from CLI flags is
// checked by the same parser as a file, and so `profile inspect` can show
// one.
func Render(p *pb.RunnerProfile) string {
	var b strings.Builder
	fmt.Fprintf(&b, "runner_profile %q {\n", p.Name)
	if p.TargetRunnerId != "" {
		fmt.Fprintf(&b, "  target_runner_id = %q\n", p.TargetRunnerId)
	}
	if len(p.TargetLabels) > 0 {
		fmt.Fprintf(&b, "  target_labels = %s\n", renderMap(p.TargetLabels))
	}
	if p.Mode != "" {
		fmt.Fprintf(&b, "  mode = %q\n", p.Mode)
	}
	if p.Driver != "" {
		fmt.Fprintf(&b, "  driver = %q\n", p.Driver)
	}
	if len(p.Env) > 0 {
		fmt.Fprintf(&b, "  env = %s\n", renderMap(p.Env))
	}
	if p.Default {
		b.WriteString("  default = true\n")
	}
	if p.User != "" {
		fmt.Fprintf(&b, "  user = %q\n", p.User)
	}
	if l := p.Limits; l != nil {
		b.WriteString("  limits {\n")
		if l.MemoryBytes > 0 {
			fmt.Fprintf(&b, "    memory = \"%d\"\n", l.MemoryBytes)
		}
		if l.Processes > 0 {
			fmt.Fprintf(&b, "    processes = %d\n", l.Processes)
		}
		if l.OpenFiles > 0 {
			fmt.Fprintf(&b, "    open_files = %d\n", l.OpenFiles)
		}
		if l.CpuSeconds > 0 {
			fmt.Fprintf(&b, "    cpu = \"%ds\"\n", l.CpuSeconds)
		}
		if l.Cpus > 0 {
			fmt.Fprintf(&b, "    cpus = %s\n", strconv.FormatFloat(l.Cpus, 'g', -1, 64))
		}
		if l.FileSizeBytes > 0 {
			fmt.Fprintf(&b, "    file_size = \"%d\"\n", l.FileSizeBytes)
		}
		b.WriteString("  }\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func renderMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%q = %q", k, m[k])
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}
