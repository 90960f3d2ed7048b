package rpc

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/fsm"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// A batch of reports committed as one log entry holds at most this many
// reports and about this many bytes: entries stay quick to replicate and
// well under the size a forwarding server may send the leader.
const (
	maxReportBatch      = 256
	maxReportBatchBytes = 2 << 20
	// maxOutstandingReports bounds the reports one stream may have waiting
	// for their commit, so a runner that stops reading its acks stalls
	// only itself.
	maxOutstandingReports = 4 * maxReportBatch
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
