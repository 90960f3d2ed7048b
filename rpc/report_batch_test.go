package rpc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-run/outpost/fsm"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// commitRecorder is a Backend whose Commit records each entry and waits
// for the test to release it; nothing else of Backend is used.
type commitRecorder struct {
	Backend
	mu      sync.Mutex
	entries [][]string
	release chan error
	entered chan struct{}
}

func (c *commitRecorder) Commit(_ context.Context, t fsm.MessageType, body proto.Message) (any, uint64, error) {
	var ids []string
	var errs []error
	for _, r := range body.(*pb.RunnerReportsEntry).Reports {
		id := r.GetStarted().GetJobId()
		ids = append(ids, id)
		var err error
		if id == "refused" {
			err = errors.New("refused by the state machine")
		}
		errs = append(errs, err)
	}
	c.mu.Lock()
	c.entries = append(c.entries, ids)
	c.mu.Unlock()
	c.entered <- struct{}{}
	if err := <-c.release; err != nil {
		return nil, 0, err
	}
	return &fsm.ReportsResult{Errors: errs}, 1, nil
}

// TestReportBatcherGroupsStreamsInOrder checks that reports queued while a
// batch commits share the next entry, in arrival order, across streams,
// and that each report hears its own outcome.
func TestReportBatcherGroupsStreamsInOrder(t *testing.T) {
	rec := &commitRecorder{release: make(chan error), entered: make(chan struct{}, 8)}
	rb := newReportBatcher(rec, hclog.NewNullLogger())
	type outcome struct {
		id  string
		err error
	}
	outcomes := make(chan outcome, 32)
	add := func(id string) {
		t.Helper()
		msg := &pb.RunnerMessage{Msg: &pb.RunnerMessage_Started{Started: &pb.JobStarted{JobId: id, Lease: 1}}}
		done := func(err error) { outcomes <- outcome{id, err} }
		if err := rb.add(context.Background(), reportItem{msg: msg, size: reportSize(msg), done: done}); err != nil {
			t.Fatal(err)
		}
	}
	add("first")
	<-rec.entered // the first batch is committing
	var want []string
	for i := range 6 {
		id := fmt.Sprintf("stream%d-%d", i%2, i)
		if i == 3 {
			id = "refused"
		}
		want = append(want, id)
		add(id)
	}
	// add returned, so all six wait in the queue while the first batch
	// commits: they must all go into the second entry.
	rec.release <- nil
	<-rec.entered
	rec.release <- nil
	got := map[string]error{}
	for range 7 {
		o := <-outcomes
		got[o.id] = o.err
	}
	rec.mu.Lock()
	entries := fmt.Sprint(rec.entries)
	rec.mu.Unlock()
	if wantEntries := fmt.Sprint([][]string{{"first"}, want}); entries != wantEntries {
		t.Fatalf("entries = %s, want %s", entries, wantEntries)
	}
	for id, err := range got {
		if (err != nil) != (id == "refused") {
			t.Errorf("report %s: outcome %v", id, err)
		}
	}

	// A failed commit fails every report in it.
	add("lost-a")
	<-rec.entered
	rec.release <- errors.New("no leader")
	if o := <-outcomes; o.id != "lost-a" || o.err == nil {
		t.Errorf("report of a failed commit: %s %v, want an error", o.id, o.err)
	}
}
