package server

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/internal/logcap"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// A batch of reports committed as one log entry holds at most this many
// reports and about this many bytes: entries stay quick to replicate, at
// half of what Raft suggests for an entry (raft.SuggestedMaxDataSize,
// 512 KiB: larger entries delay the heartbeats sent behind them), and the
// Raft directory's size per entry, which bounds it (see agent/raftlog.go),
// stays small.
const (
	maxReportBatch      = 256
	maxReportBatchBytes = 256 << 10
	// maxReportBytes is the largest single report a server takes: a batch
	// of one stays within the batch's bytes. Runners send log pieces of
	// about a quarter of it; a runner's lines that do not number lines are
	// split to fit instead (see splitReport).
	maxReportBytes = maxReportBatchBytes
	// maxOutstandingReports bounds the reports one stream may have waiting
	// for their commit, so a runner that stops reading its acks stalls
	// only itself; maxOutstandingBytes bounds their bytes, so a chatty
	// runner holds at most that much of a server's memory. It must take
	// an attempt's whole final log (logcap.MaxBytes, in pieces) without a
	// wait on each piece.
	maxOutstandingReports = 4 * maxReportBatch
	maxOutstandingBytes   = 8 << 20
	// reportQueue is how many reports of all streams may wait for the
	// next batch. A stream whose report cannot be queued stops reading,
	// heartbeats included, so the queue is sized for a large fleet each
	// with a few reports pending through a leader election.
	reportQueue         = 32 * maxReportBatch
	reportCommitTimeout = 10 * time.Second
)

// reportBatcher commits the job reports of every runner stream on this
// server together. Committed per stream, a runner finishing a hundred jobs
// a second made a log entry (and, on a follower, a forwarded call) for
// nearly every job; one committer per server makes entries as large as the
// load. One batch is in flight at a time, so the reports of each stream
// commit in the order they arrived: logs before the result that ends them.
type reportBatcher struct {
	b      Backend
	in     chan reportItem
	logger hclog.Logger
}

// reportItem is one report waiting to be committed; done gets its outcome
// exactly once and must not block.
type reportItem struct {
	msg  *pb.RunnerMessage
	size int
	done func(error)
}

func newReportBatcher(b Backend, logger hclog.Logger) *reportBatcher {
	rb := &reportBatcher{b: b, in: make(chan reportItem, reportQueue), logger: logger}
	// It lives as long as the process: it holds no state of its own
	// between batches, and a server's handlers are never torn down.
	go rb.run()
	return rb
}

// add queues a report, waiting while the queue is full.
func (rb *reportBatcher) add(ctx context.Context, it reportItem) error {
	select {
	case rb.in <- it:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (rb *reportBatcher) run() {
	var carry *reportItem
	for {
		first := carry
		carry = nil
		if first == nil {
			it := <-rb.in
			first = &it
		}
		batch := []reportItem{*first}
		size := first.size
	more:
		for len(batch) < maxReportBatch && size < maxReportBatchBytes {
			select {
			case it := <-rb.in:
				if size+it.size > maxReportBatchBytes {
					carry = &it
					break more
				}
				size += it.size
				batch = append(batch, it)
			default:
				break more
			}
		}
		rb.commit(batch)
	}
}

func (rb *reportBatcher) commit(batch []reportItem) {
	msgs := make([]*pb.RunnerMessage, len(batch))
	for i, it := range batch {
		msgs[i] = it.msg
	}
	ctx, cancel := context.WithTimeout(context.Background(), reportCommitTimeout)
	res, _, err := rb.b.Commit(ctx, fsm.RunnerReportsType, &pb.RunnerReportsEntry{Reports: msgs, Time: timestamppb.Now()})
	cancel()
	var errs []error
	if r, ok := res.(*fsm.ReportsResult); ok {
		errs = r.Errors
	}
	if err != nil {
		rb.logger.Debug("committing runner reports failed; runners keep results to send again", "reports", len(batch), "error", err)
	}
	for i, it := range batch {
		rerr := err
		if rerr == nil && i < len(errs) {
			rerr = errs[i]
		}
		it.done(rerr)
	}
}

// reportSize is what a report counts against a batch's byte budget.
func reportSize(m *pb.RunnerMessage) int { return proto.Size(m) }

// splitReport returns the reports m is recorded as. A report of lines from
// a runner that does not number them (a log report, or a result carrying
// its last lines) that is too large for one entry becomes log reports of
// those lines, in order, followed by the rest of the report without them;
// their order on the stream keeps them in order in the log. Other reports
// are recorded as they are.
func splitReport(m *pb.RunnerMessage, size int) []*pb.RunnerMessage {
	if size <= maxReportBytes {
		return []*pb.RunnerMessage{m}
	}
	var jobID string
	var lease uint64
	var lines []*pb.LogLine
	var rest *pb.RunnerMessage
	switch r := m.Msg.(type) {
	case *pb.RunnerMessage_Logs:
		if r.Logs.FirstLine != 0 || r.Logs.FinalPiece != 0 {
			return []*pb.RunnerMessage{m}
		}
		jobID, lease, lines = r.Logs.JobId, r.Logs.Lease, r.Logs.Lines
	case *pb.RunnerMessage_Finished:
		if len(r.Finished.Lines) == 0 {
			return []*pb.RunnerMessage{m}
		}
		f := proto.Clone(r.Finished).(*pb.JobFinished)
		jobID, lease, lines, f.Lines = f.JobId, f.Lease, f.Lines, nil
		rest = &pb.RunnerMessage{Msg: &pb.RunnerMessage_Finished{Finished: f}}
	default:
		return []*pb.RunnerMessage{m}
	}
	var out []*pb.RunnerMessage
	for len(lines) > 0 {
		n, size := 0, 0
		for n < len(lines) && (n == 0 || size+logcap.LineSize(lines[n]) <= maxReportBytes/2) {
			size += logcap.LineSize(lines[n])
			n++
		}
		out = append(out, &pb.RunnerMessage{Msg: &pb.RunnerMessage_Logs{Logs: &pb.JobLogs{JobId: jobID, Lease: lease, Lines: lines[:n]}}})
		lines = lines[n:]
	}
	if rest != nil {
		out = append(out, rest)
	}
	return out
}

// byteBudget bounds the bytes of reports one stream has waiting for their
// commit. take waits while they would pass the budget; give returns them.
type byteBudget struct {
	mu    sync.Mutex
	free  int
	total int
	wake  chan struct{} // closed when bytes are given back
}

func newByteBudget(total int) *byteBudget {
	return &byteBudget{free: total, total: total, wake: make(chan struct{})}
}

// take waits for n bytes (at most the whole budget) and returns how many
// it took, for give.
func (b *byteBudget) take(ctx context.Context, n int) (int, error) {
	n = min(n, b.total)
	for {
		b.mu.Lock()
		if b.free >= n {
			b.free -= n
			b.mu.Unlock()
			return n, nil
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (b *byteBudget) give(n int) {
	b.mu.Lock()
	b.free += n
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}
