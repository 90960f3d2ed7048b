package agent

import (
	"testing"
	"time"
)

// The test servers are real: Raft on disk in the test's directory, one
// leader the others follow, and every server in the Raft configuration.
func TestTestClusterForms(t *testing.T) {
	start := time.Now()
	agents := TestCluster(t, 3, nil)
	t.Logf("3 servers formed a cluster in %v", time.Since(start).Round(time.Millisecond))
	leader := WaitForLeader(t, agents...).Server()
	fut := leader.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		t.Fatal(err)
	}
	if n := len(fut.Configuration().Servers); n != 3 {
		t.Fatalf("%d servers in the raft configuration, want 3", n)
	}
	if leader.logCount.entries.Load() == 0 {
		t.Fatal("the leader's raft-boltdb log store holds no entries")
	}
}
