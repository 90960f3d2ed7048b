// Package project owns the outpost project file (outpost.hcl): its syntax,
// its validation and the evaluation of one job of it into a fully resolved
// job at submit time.
//
// A project file is parsed once with [Parse]. Parse checks everything that
// does not depend on the values of variables: the structure of the file
// (unknown arguments and blocks are errors), the types and ranges of
// constant arguments, name rules, duplicate labels, and every reference made
// by an expression. It also evaluates each expression once with unknown
// variable values, so that type errors such as command = "make" are reported
// by "outpost project validate" rather than at submit time.
//
// [Project.Resolve] then evaluates one job with concrete variable values and
// a workspace, producing a [ResolvedJob] that the server stores and a runner
// executes without ever looking at HCL again.
//
// Expressions may reference var.<name>, workspace, project and job, and only
// in the runner profile, step command elements, step script and env values.
// Every other argument must be a constant. One function is available,
// shellquote (functions.go); operators, conditionals, for expressions and
// template directives are too. A constant optional argument set to null is
// treated as unset; an expression argument that evaluates to null is an
// error, because it is almost always a mistake in a conditional.
//
// Resolve also exports every variable to every step as OUTPOST_VAR_<NAME>
// (ExportedName), the safe way for a script to use a value.
//
// Because the server parses files submitted over the network, Parse also
// bounds what hcl would otherwise accept from trusted input: file size
// (MaxSourceSize), nesting depth, operator count and numbers beyond the
// float64 range (see guard.go). Each limit is far above real project files.
//
// All problems are reported as an [*Error] whose message has one line per
// problem in the form "file:line:col: summary: detail".
//
// The package is free of global state and logging; a parsed [Project] is
// immutable and safe for concurrent use by multiple goroutines.
package project
