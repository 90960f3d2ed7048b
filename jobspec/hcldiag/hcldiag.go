// Package hcldiag renders HCL diagnostics the way every outpost HCL file
// reports them: one error per line, as file:line:col: text.
package hcldiag

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Error renders the error diagnostics of diags, one per line, with their
// detail folded onto that line. It returns nil when there is none.
func Error(diags hcl.Diagnostics) error {
	var lines []string
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + strings.Join(strings.Fields(d.Detail), " ")
		}
		if d.Subject != nil {
			msg = fmt.Sprintf("%s:%d:%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, msg)
		}
		lines = append(lines, msg)
	}
	if len(lines) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(lines, "\n"))
}
