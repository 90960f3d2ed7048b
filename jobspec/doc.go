// Package jobspec is the home of outpost's two HCL languages: project
// files (jobspec/project) and runner profiles (jobspec/profile), with the
// diagnostics formatter both share (jobspec/hcldiag). The packages below it
// parse and render text only; they import nothing from the server, the
// runner or the CLI, so every role can use them: no package under jobspec
// reaches agent, command, fsm, rpc, rpc/server or runner, through
// anything (scripts/check-imports.sh). The wire schema, rpc/outpostv1, is
// theirs to use.
package jobspec
