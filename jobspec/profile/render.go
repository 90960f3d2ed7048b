package profile

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Render writes a profile as HCL, so a profile built from CLI flags is
// checked by the same parser as a file, and so `profile inspect` shows one
// that `profile set -file` takes back. The text is built with hclwrite, the
// HCL writer, not with Go quoting: only it escapes what HCL reads specially
// in a string ("${" and "%{" become "$${" and "%%{"; quotes, backslashes
// and control characters become HCL escapes), so any string parses back as
// itself (in Unicode normal form C, as HCL keeps every string). Attributes come in a fixed order and map keys sorted, so the same
// profile always renders the same text.
//
// HCL source is UTF-8 text, so a string that is not valid UTF-8 has no HCL
// form: Render returns an error naming the field instead of text that would
// parse back as a different profile (hclwrite would write U+FFFD for each
// bad byte). A profile read by Parse never has one; one built from flags can.
func Render(p *pb.RunnerProfile) ([]byte, error) {
	if err := checkUTF8(p); err != nil {
		return nil, fmt.Errorf("runner profile %q: %w", p.Name, err)
	}
	f := hclwrite.NewEmptyFile()
	b := f.Body().AppendNewBlock("runner_profile", []string{p.Name}).Body()
	if p.TargetRunnerId != "" {
		b.SetAttributeValue("target_runner_id", cty.StringVal(p.TargetRunnerId))
	}
	if len(p.TargetLabels) > 0 {
		setMap(b, "target_labels", p.TargetLabels)
	}
	if p.Mode != "" {
		b.SetAttributeValue("mode", cty.StringVal(p.Mode))
	}
	if p.Driver != "" {
		b.SetAttributeValue("driver", cty.StringVal(p.Driver))
	}
	if len(p.Env) > 0 {
		setMap(b, "env", p.Env)
	}
	if p.Default {
		b.SetAttributeValue("default", cty.True)
	}
	if p.User != "" {
		b.SetAttributeValue("user", cty.StringVal(p.User))
	}
	if l := p.Limits; l != nil {
		lb := b.AppendNewBlock("limits", nil).Body()
		// Sizes and the CPU time go back as the strings the file form
		// takes, in plain bytes and seconds, which parse to the same value.
		if l.MemoryBytes > 0 {
			lb.SetAttributeValue("memory", cty.StringVal(strconv.FormatUint(l.MemoryBytes, 10)))
		}
		if l.Processes > 0 {
			lb.SetAttributeValue("processes", cty.NumberUIntVal(l.Processes))
		}
		if l.OpenFiles > 0 {
			lb.SetAttributeValue("open_files", cty.NumberUIntVal(l.OpenFiles))
		}
		if l.CpuSeconds > 0 {
			lb.SetAttributeValue("cpu", cty.StringVal(strconv.FormatUint(l.CpuSeconds, 10)+"s"))
		}
		if l.Cpus > 0 {
			lb.SetAttributeValue("cpus", cty.NumberFloatVal(l.Cpus))
		}
		if l.FileSizeBytes > 0 {
			lb.SetAttributeValue("file_size", cty.StringVal(strconv.FormatUint(l.FileSizeBytes, 10)))
		}
	}
	return f.Bytes(), nil
}

// setMap writes m as an HCL object, keys sorted. A key is written bare
// only where HCL reads it back as that name: hclwrite would write any
// identifier bare, but `{ for = "x" }` opens a for expression, and true,
// false and null are literal values rather than names, so those are
// quoted, as is anything that is not an identifier.
func setMap(b *hclwrite.Body, name string, m map[string]string) {
	attrs := make([]hclwrite.ObjectAttrTokens, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		key := hclwrite.TokensForValue(cty.StringVal(k))
		if bareKey(k) {
			key = hclwrite.TokensForIdentifier(k)
		}
		attrs = append(attrs, hclwrite.ObjectAttrTokens{Name: key, Value: hclwrite.TokensForValue(cty.StringVal(m[k]))})
	}
	b.SetAttributeRaw(name, hclwrite.TokensForObject(attrs))
}

func bareKey(k string) bool {
	switch k {
	case "for", "true", "false", "null":
		return false
	}
	return hclsyntax.ValidIdentifier(k)
}

// checkUTF8 reports the first string of p, in rendering order, that is not
// valid UTF-8.
func checkUTF8(p *pb.RunnerProfile) error {
	type field struct{ what, s string }
	fields := []field{{"name", p.Name}, {"target_runner_id", p.TargetRunnerId}}
	addMap := func(attr string, m map[string]string) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			fields = append(fields, field{attr + " key", k}, field{fmt.Sprintf("%s %q", attr, k), m[k]})
		}
	}
	addMap("target_labels", p.TargetLabels)
	fields = append(fields, field{"mode", p.Mode}, field{"driver", p.Driver})
	addMap("env", p.Env)
	fields = append(fields, field{"user", p.User})
	for _, f := range fields {
		if !utf8.ValidString(f.s) {
			return fmt.Errorf("%s: %q is not valid UTF-8; profiles are HCL, which must be UTF-8 text", f.what, f.s)
		}
	}
	return nil
}
