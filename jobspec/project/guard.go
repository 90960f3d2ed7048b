package project

import (
	"errors"
	"math"
	"math/big"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// This file protects the process from hostile project files. The server
// parses files submitted over the network, and hcl was written for trusted
// configuration: it recurses without limit and does exact arithmetic on
// numbers of any size.

// Limits on the shape of expressions. hclsyntax parses and evaluates
// recursively: a few tens of thousands of "[" exhaust the goroutine stack,
// which is a fatal error rather than a panic, so one hostile submission
// could take a server down; and some long chains (x[a][a][a]…, nested
// template directives) take quadratic time. Real project files nest fewer
// than ten levels and use a handful of operators, so the limits are far
// above anything legitimate and far below anything harmful.
const (
	// maxNesting bounds how deeply brackets, strings, templates and runs of
	// unary operators may nest.
	maxNesting = 100
	// maxOperators bounds the number of operators, postfix index/splat
	// brackets and template directives in the whole file, each of which
	// can add a level to an expression tree.
	maxOperators = 5000
)

// checkShape enforces maxNesting and maxOperators before hclsyntax gets to
// recurse over the input. It works on tokens, so brackets and operators
// inside string literals, heredocs and comments do not count.
func checkShape(filename string, src []byte, ds *diagnostics) bool {
	tokens, _ := hclsyntax.LexConfig(src, filename, hcl.InitialPos)
	depth, unary, operators := 0, 0, 0
	prev := hclsyntax.TokenNil
	for _, t := range tokens {
		switch t.Type {
		case hclsyntax.TokenOBrace, hclsyntax.TokenOParen,
			hclsyntax.TokenOQuote, hclsyntax.TokenOHeredoc, hclsyntax.TokenTemplateInterp:
			depth++
		case hclsyntax.TokenOBrack:
			depth++
			// "[" right after a value indexes or splats it, which nests the
			// expression tree even though the brackets themselves are closed.
			switch prev {
			case hclsyntax.TokenCBrack, hclsyntax.TokenCParen, hclsyntax.TokenCBrace,
				hclsyntax.TokenIdent, hclsyntax.TokenCQuote, hclsyntax.TokenCHeredoc, hclsyntax.TokenNumberLit:
				operators++
			}
		case hclsyntax.TokenTemplateControl:
			depth++
			operators++
		case hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen,
			hclsyntax.TokenCQuote, hclsyntax.TokenCHeredoc, hclsyntax.TokenTemplateSeqEnd:
			if depth > 0 {
				depth--
			}
		case hclsyntax.TokenPlus, hclsyntax.TokenMinus, hclsyntax.TokenStar, hclsyntax.TokenSlash,
			hclsyntax.TokenPercent, hclsyntax.TokenEqualOp, hclsyntax.TokenNotEqual,
			hclsyntax.TokenLessThan, hclsyntax.TokenLessThanEq, hclsyntax.TokenGreaterThan,
			hclsyntax.TokenGreaterThanEq, hclsyntax.TokenAnd, hclsyntax.TokenOr,
			hclsyntax.TokenBang, hclsyntax.TokenQuestion:
			operators++
		}
		// A run of unary operators ("!!!!x", "----1") nests like brackets.
		if t.Type == hclsyntax.TokenBang || t.Type == hclsyntax.TokenMinus {
			unary++
		} else if t.Type != hclsyntax.TokenNewline && t.Type != hclsyntax.TokenComment {
			unary = 0
		}
		if t.Type != hclsyntax.TokenNewline && t.Type != hclsyntax.TokenComment {
			prev = t.Type
		}
		switch {
		case depth+unary > maxNesting:
			ds.addf(t.Range, "Nesting too deep",
				"Brackets, strings and operators may nest at most %d levels deep.", maxNesting)
			return false
		case operators > maxOperators:
			ds.addf(t.Range, "Too many operators",
				"A project file may contain at most %d operators, index brackets and template directives.", maxOperators)
			return false
		}
	}
	return true
}

// checkNumbers rejects number literals that do not fit a float64. cty keeps
// numbers as arbitrary-precision floats, and turning 1e999999999 into a
// string (which interpolation does) would allocate a billion digits.
//
// The same walk swaps every arithmetic operator for a guarded one (see
// guardedOps), which closes the other ways to build such a number.
func checkNumbers(body hcl.Body, ds *diagnostics) bool {
	node, ok := body.(hclsyntax.Node)
	if !ok {
		return true
	}
	ok = true
	hclsyntax.VisitAll(node, func(n hclsyntax.Node) hcl.Diagnostics {
		switch e := n.(type) {
		case *hclsyntax.LiteralValueExpr:
			if e.Val.Type() == cty.Number && e.Val.IsKnown() && !e.Val.IsNull() && !numberInRange(e.Val.AsBigFloat()) {
				ds.add(e.SrcRange, "Number out of range",
					"Numbers in a project file must fit in a 64-bit floating point value.")
				ok = false
			}
		case *hclsyntax.BinaryOpExpr:
			if g, found := guardedOps[e.Op]; found {
				e.Op = g
			}
		case *hclsyntax.UnaryOpExpr:
			if g, found := guardedOps[e.Op]; found {
				e.Op = g
			}
		}
		return nil
	})
	return ok
}

// guardedOps maps hcl's arithmetic operations to copies that fail when the
// result leaves the float64 range. Numbers are arbitrary-precision in cty,
// and interpolating one formats every digit: "${x * x}" repeated through
// nested for expressions, or "${var.n + 0}" with -var n=1e999999999, would
// otherwise allocate gigabytes. The map is built once and never modified.
var guardedOps = func() map[*hclsyntax.Operation]*hclsyntax.Operation {
	m := map[*hclsyntax.Operation]*hclsyntax.Operation{}
	for _, op := range []*hclsyntax.Operation{
		hclsyntax.OpAdd, hclsyntax.OpSubtract, hclsyntax.OpMultiply,
		hclsyntax.OpDivide, hclsyntax.OpModulo, hclsyntax.OpNegate,
	} {
		m[op] = guardOp(op)
	}
	return m
}()

var errOutOfRange = errors.New("the result does not fit in a 64-bit floating point number")

func guardOp(op *hclsyntax.Operation) *hclsyntax.Operation {
	impl := op.Impl
	return &hclsyntax.Operation{
		Type: op.Type,
		Impl: function.New(&function.Spec{
			Params:   impl.Params(),
			VarParam: impl.VarParam(),
			Type:     impl.ReturnTypeForValues,
			Impl: func(args []cty.Value, retType cty.Type) (cty.Value, error) {
				v, err := impl.Call(args)
				if err != nil {
					return v, err
				}
				if u, _ := v.Unmark(); u.Type() == cty.Number && u.IsKnown() && !u.IsNull() && !numberInRange(u.AsBigFloat()) {
					return cty.UnknownVal(retType), errOutOfRange
				}
				return v, nil
			},
		}),
	}
}

// numberInRange reports whether f is representable as a finite float64
// (zero stays zero: underflow counts as out of range).
func numberInRange(f *big.Float) bool {
	if f.IsInf() {
		return false
	}
	v, _ := f.Float64()
	return !math.IsInf(v, 0) && (v != 0 || f.Sign() == 0)
}
