package hcldiag

import (
	"testing"

	"github.com/hashicorp/hcl/v2"
)

func TestError(t *testing.T) {
	at := &hcl.Range{Filename: "a.hcl", Start: hcl.Pos{Line: 3, Column: 7}}
	cases := []struct {
		name  string
		diags hcl.Diagnostics
		want  string
	}{
		{"positioned, detail folded onto its line", hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Bad value", Detail: "want a\n  string", Subject: at}}, "a.hcl:3:7: Bad value: want a string"},
		{"warnings dropped, one line each", hcl.Diagnostics{
			{Severity: hcl.DiagWarning, Summary: "Deprecated"},
			{Severity: hcl.DiagError, Summary: "First"},
			{Severity: hcl.DiagError, Summary: "Second", Subject: at},
		}, "First\na.hcl:3:7: Second"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := Error(tc.diags); err == nil || err.Error() != tc.want {
				t.Fatalf("Error = %v, want %q", err, tc.want)
			}
		})
	}
	if err := Error(hcl.Diagnostics{{Severity: hcl.DiagWarning, Summary: "w"}}); err != nil {
		t.Fatalf("warnings only: %v, want nil", err)
	}
}
