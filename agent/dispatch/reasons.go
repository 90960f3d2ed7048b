package dispatch

import (
	"fmt"
	"sort"
	"strings"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// explain says, in words a person can act on, why no runner can take j now.
// slots are the runners that match j's targets.
func explain(j *pb.Job, slots []*slot) string {
	if len(slots) == 0 {
		switch {
		case j.TargetRunnerId != "":
			return fmt.Sprintf("no runner %s is known: check the profile's target_runner_id, or start that runner", j.TargetRunnerId)
		case len(j.TargetLabels) > 0:
			return fmt.Sprintf("no adopted runner matches labels %s: start one with `outpost runner agent %s`", labelSet(j.TargetLabels), labelFlags(j.TargetLabels))
		default:
			return "no runner is registered: start one with `outpost runner agent -server=ADDR`"
		}
	}
	var full, pending, rejected, draining, down []string
	for _, s := range slots {
		r := s.runner
		switch {
		case r.Status == rpc.RunnerPending:
			pending = append(pending, r.Id)
		case r.Status == rpc.RunnerRejected:
			rejected = append(rejected, r.Id)
		case r.Draining:
			draining = append(draining, r.Id)
		case !s.usable:
			down = append(down, r.Id)
		default:
			full = append(full, r.Id)
		}
	}
	if len(full) > 0 {
		if len(full) == 1 {
			return fmt.Sprintf("matching runner %s is at capacity (%d jobs)", full[0], slots[0].runner.Capacity)
		}
		return fmt.Sprintf("%d matching runners, all at capacity", len(full))
	}
	if len(slots) == 1 {
		id := slots[0].runner.Id
		switch {
		case len(pending) == 1:
			return fmt.Sprintf("matching runner %s is pending adoption: run `outpost runner adopt %s`", id, id)
		case len(rejected) == 1:
			return fmt.Sprintf("matching runner %s was rejected", id)
		case len(draining) == 1:
			return fmt.Sprintf("matching runner %s is draining", id)
		default:
			return fmt.Sprintf("matching runner %s is down", id)
		}
	}
	var parts []string
	for _, c := range []struct {
		ids  []string
		what string
	}{{pending, "pending adoption"}, {draining, "draining"}, {down, "down"}, {rejected, "rejected"}} {
		if len(c.ids) > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", len(c.ids), c.what))
		}
	}
	return fmt.Sprintf("%d matching runners, none can take jobs: %s", len(slots), strings.Join(parts, ", "))
}

func sortedPairs(m map[string]string, sep string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+sep+v)
	}
	sort.Strings(out)
	return out
}

func labelSet(m map[string]string) string { return "{" + strings.Join(sortedPairs(m, "="), ",") + "}" }

func labelFlags(m map[string]string) string {
	pairs := sortedPairs(m, "=")
	for i := range pairs {
		pairs[i] = "-label " + pairs[i]
	}
	return strings.Join(pairs, " ")
}
