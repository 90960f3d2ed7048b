// Package e2e holds integration tests that drive the real outpost binary:
// agents started as processes on free ports, the CLI run as a user would,
// and the HTTP API reached with plain net/http. Each test starts what it
// needs through internal/testcluster and cleans up after itself. They are
// skipped with -short.
package e2e
