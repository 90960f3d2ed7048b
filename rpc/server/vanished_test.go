package server

import (
	"slices"
	"testing"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// What a registration or heartbeat, perhaps delivered late, lets a server
// take back: attempts of an earlier life, and unlisted attempts of this
// life at or below the lease the runner had seen; never an assignment not
// started, nor an attempt the word could not know of.
func TestVanished(t *testing.T) {
	job := func(id, status string, lease, life uint64) *pb.Job {
		return &pb.Job{Id: id, Status: status, Lease: lease, RunnerLife: life}
	}
	held := func(id string, lease uint64) *pb.RunningJob { return &pb.RunningJob{JobId: id, Lease: lease} }
	cases := []struct {
		name          string
		active        []*pb.Job
		life, seen    uint64
		running, done []*pb.RunningJob
		want          []string
	}{
		{name: "held attempts stay",
			active: []*pb.Job{job("j-1", rpc.JobRunning, 10, 2), job("j-2", rpc.JobCanceling, 11, 2)},
			life:   2, seen: 11, running: []*pb.RunningJob{held("j-1", 10)}, done: []*pb.RunningJob{held("j-2", 11)}},
		{name: "an unlisted attempt at or below the lease seen is gone",
			active: []*pb.Job{job("j-1", rpc.JobRunning, 10, 2)}, life: 2, seen: 10, want: []string{"j-1"}},
		{name: "an attempt above the lease seen may not have arrived when the word was made",
			active: []*pb.Job{job("j-1", rpc.JobRunning, 12, 2)}, life: 2, seen: 11},
		{name: "an attempt of an earlier life is gone whatever the lease",
			active: []*pb.Job{job("j-1", rpc.JobRunning, 50, 1)}, life: 2, seen: 0, want: []string{"j-1"}},
		{name: "a late word from an earlier life leaves the later life's attempts alone",
			active: []*pb.Job{job("j-1", rpc.JobRunning, 5, 3)}, life: 2, seen: 40},
		{name: "assignments not started are not taken here",
			active: []*pb.Job{job("j-1", rpc.JobAssigned, 5, 0)}, life: 2, seen: 40},
		{name: "an older lease held for the job does not cover a newer one",
			active: []*pb.Job{job("j-1", rpc.JobRunning, 20, 2)}, life: 2, seen: 30,
			running: []*pb.RunningJob{held("j-1", 15)}, want: []string{"j-1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, l := range vanished(c.active, c.life, c.seen, c.running, c.done) {
				got = append(got, l.JobId)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("vanished = %v, want %v", got, c.want)
			}
		})
	}
}
