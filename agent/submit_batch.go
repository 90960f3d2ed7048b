package agent

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/outpost-run/outpost/fsm"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Concurrent submits are committed together: a few workers each take what
// has queued up (group commit) and apply it as one SubmitJobs entry. Under
// load this turns one log entry, fsync and FSM transaction per job into one
// per batch; alone, a submit waits for nobody.
const (
	submitWorkers  = 4
	maxSubmitBatch = 512
	// maxSubmitBytes keeps entries as small as the runners' report
	// batches (rpc/server/report_batch.go): the Raft log's bound in bytes counts
	// on it. A single submit larger than this is an entry of its own.
	maxSubmitBytes  = 256 << 10
	submitQueueSize = 4 * maxSubmitBatch
)

type submitReq struct {
	jobs []*pb.Job
	size int
	ctx  context.Context
	done chan submitRes
}

type submitRes struct {
	index uint64
	err   error
}

// submitBatcher is the group commit for submits. On the leader a batch is
// one Raft entry; on a follower, one call forwarding it to the leader,
// whose own batcher may join it with others.
type submitBatcher struct {
	s  *Server
	in chan *submitReq
}

func newSubmitBatcher(s *Server) *submitBatcher {
	b := &submitBatcher{s: s, in: make(chan *submitReq, submitQueueSize)}
	// Not in the server's wait group: a worker can sit in a Raft apply
	// that only resolves when Raft shuts down, which comes after the wait.
	for range submitWorkers {
		go b.work()
	}
	return b
}

// submit commits the jobs of an encoded SubmitJobs entry with whatever
// else is queued.
func (b *submitBatcher) submit(ctx context.Context, entry *pb.SubmitJobsEntry, size int) (uint64, error) {
	req := &submitReq{jobs: entry.Jobs, size: size, ctx: ctx, done: make(chan submitRes, 1)}
	select {
	case b.in <- req:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-b.s.shutdownCh:
		return 0, fmt.Errorf("server shutting down")
	}
	select {
	case res := <-req.done:
		return res.index, res.err
	case <-ctx.Done():
		// The batch may still commit; the client's retry with the same job
		// id then finds the job instead of making a second one.
		return 0, ctx.Err()
	}
}

func (b *submitBatcher) work() {
	for {
		var first *submitReq
		select {
		case <-b.s.shutdownCh:
			return
		case first = <-b.in:
		}
		batch := []*submitReq{first}
		n, size := len(first.jobs), first.size
	more:
		for n < maxSubmitBatch && size < maxSubmitBytes {
			select {
			case r := <-b.in:
				batch = append(batch, r)
				n, size = n+len(r.jobs), size+r.size
			default:
				break more
			}
		}
		entry := &pb.SubmitJobsEntry{}
		for _, r := range batch {
			if r.ctx.Err() == nil {
				entry.Jobs = append(entry.Jobs, r.jobs...)
			}
		}
		var res submitRes
		if len(entry.Jobs) > 0 {
			data, err := fsm.Encode(fsm.SubmitJobsType, entry)
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
				_, res.index, err = b.s.commitEncoded(ctx, fsm.SubmitJobsType, nil, data)
				cancel()
			}
			res.err = err
		}
		for _, r := range batch {
			r.done <- res
		}
	}
}

// submitEntry decodes data if it is a SubmitJobs entry.
func submitEntry(data []byte) (*pb.SubmitJobsEntry, bool) {
	if len(data) == 0 || fsm.MessageType(data[0]) != fsm.SubmitJobsType {
		return nil, false
	}
	e := &pb.SubmitJobsEntry{}
	if err := proto.Unmarshal(data[1:], e); err != nil {
		return nil, false
	}
	return e, true
}
