package server

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

// A result or log report from a runner that does not number lines, too
// large for one entry, is recorded as log reports of its lines, in order,
// then the result; anything else goes as it is.
func TestSplitReportKeepsEntriesSmall(t *testing.T) {
	var lines []*pb.LogLine
	for i := range 3000 {
		lines = append(lines, &pb.LogLine{Stream: "stdout", Data: fmt.Appendf(nil, "%0300d", i)})
	}
	fin := &pb.RunnerMessage{Msg: &pb.RunnerMessage_Finished{Finished: &pb.JobFinished{JobId: "j-1", Lease: 4, Outcome: "succeeded", Lines: lines}}}
	parts := splitReport(fin, reportSize(fin))
	if len(parts) < 4 {
		t.Fatalf("a %d byte result became %d reports", reportSize(fin), len(parts))
	}
	n := 0
	for i, p := range parts {
		if s := reportSize(p); s > maxReportBytes {
			t.Errorf("part %d is %d bytes", i, s)
		}
		if i == len(parts)-1 {
			if f := p.GetFinished(); f == nil || len(f.Lines) != 0 || f.Outcome != "succeeded" {
				t.Fatalf("last part is %v, want the result without its lines", p)
			}
			continue
		}
		for _, l := range p.GetLogs().GetLines() {
			if string(l.Data) != fmt.Sprintf("%0300d", n) {
				t.Fatalf("line %d out of order: %.20s", n, l.Data)
			}
			n++
		}
	}
	if n != len(lines) || len(fin.GetFinished().Lines) != len(lines) {
		t.Errorf("%d of %d lines went as log reports; the original has %d", n, len(lines), len(fin.GetFinished().Lines))
	}
	numbered := &pb.RunnerMessage{Msg: &pb.RunnerMessage_Logs{Logs: &pb.JobLogs{JobId: "j-1", Lease: 4, FirstLine: 1, Lines: lines}}}
	if got := splitReport(numbered, reportSize(numbered)); len(got) != 1 {
		t.Errorf("a numbered report was split in %d", len(got))
	}
}

func TestByteBudgetWaitsForRoom(t *testing.T) {
	b := newByteBudget(100)
	if n, err := b.take(context.Background(), 1000); err != nil || n != 100 {
		t.Fatalf("take more than the budget: %d, %v", n, err)
	}
	got := make(chan int)
	go func() {
		n, _ := b.take(context.Background(), 60)
		got <- n
	}()
	b.give(50)
	b.give(50)
	if n := <-got; n != 60 {
		t.Fatalf("took %d", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.take(ctx, 50); err == nil {
		t.Fatal("a take past the budget returned for a canceled context")
	}
}
