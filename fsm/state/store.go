package state

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	memdb "github.com/hashicorp/go-memdb"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Errors returned by write methods. The FSM hands them back to the proposer
// (through raft's ApplyFuture.Response), which turns them into API errors.
var (
	ErrNotFound = errors.New("not found")
	// ErrStaleLease means a runner reported on an attempt that is no longer
	// current: the job was requeued, reassigned or finished meanwhile.
	ErrStaleLease = errors.New("stale lease")
	// ErrConflict means the change does not fit the object's current state.
	ErrConflict = errors.New("conflict")
	// ErrAmbiguous means an id prefix matched more than one object.
	ErrAmbiguous = errors.New("ambiguous id prefix")
)

// Job statuses.
const (
	StatusPending   = "pending"
	StatusAssigned  = "assigned"
	StatusRunning   = "running"
	StatusCanceling = "canceling"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusCanceled  = "canceled"
	StatusLost      = "lost"
)

// Terminal reports whether a job in status s will never change again.
func Terminal(s string) bool {
	switch s {
	case StatusSucceeded, StatusFailed, StatusCanceled, StatusLost:
		return true
	}
	return false
}

// Active reports whether a job in status s holds a runner slot.
func Active(s string) bool {
	return s == StatusAssigned || s == StatusRunning || s == StatusCanceling
}

// DefaultMaxLogBytes caps the log text kept per job. It is a constant rather
// than a setting because every server must apply the same cap to stay equal.
const DefaultMaxLogBytes = 4 << 20

// Store is the state store. The zero value is not usable; call New.
type Store struct {
	db          *memdb.MemDB
	maxLogBytes uint64
}

// New returns an empty store.
func New() (*Store, error) {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("state: create memdb: %w", err)
	}
	return &Store{db: db, maxLogBytes: DefaultMaxLogBytes}, nil
}

// Txn starts a write transaction. Only the FSM and restore use it.
func (s *Store) txn() *memdb.Txn { return s.db.Txn(true) }

// Snapshot returns a point-in-time read view that later writes do not touch.
func (s *Store) Snapshot() *Snapshot {
	return &Snapshot{txn: s.db.Txn(false)}
}

// Snapshot is an immutable view of the store, used by FSM snapshots.
type Snapshot struct{ txn *memdb.Txn }

// Each table's rows in a stable order, for persisting.
func (sn *Snapshot) Jobs() []*pb.Job                 { return jobsFrom(sn.txn, nil) }
func (sn *Snapshot) Projects() []*pb.Project         { return projectsFrom(sn.txn, nil) }
func (sn *Snapshot) Runners() []*pb.Runner           { return runnersFrom(sn.txn, nil) }
func (sn *Snapshot) LogChunks() []*pb.LogChunk       { return allChunks(sn.txn) }
func (sn *Snapshot) LatestIndex() uint64             { return latestIndex(sn.txn) }
func (sn *Snapshot) RunnerTokens() []*pb.RunnerToken { return tokensFrom(sn.txn) }
func (sn *Snapshot) Profiles() []*pb.RunnerProfile   { return profilesFrom(sn.txn, nil) }

func tokensFrom(txn *memdb.Txn) []*pb.RunnerToken {
	return all[*pb.RunnerToken](txn, nil, TableTokens, "id")
}

// setIndex records that index last wrote table.
func setIndex(txn *memdb.Txn, table string, index uint64) error {
	if err := txn.Insert(TableIndex, &tableIndex{Key: table, Value: index}); err != nil {
		return fmt.Errorf("state: update index of %s: %w", table, err)
	}
	return nil
}

// Index returns the Raft index that last wrote table.
func (s *Store) Index(table string) uint64 {
	txn := s.db.Txn(false)
	raw, err := txn.First(TableIndex, "id", table)
	if err != nil || raw == nil {
		return 0
	}
	return raw.(*tableIndex).Value
}

// LatestIndex returns the highest index that wrote any table.
func (s *Store) LatestIndex() uint64 { return latestIndex(s.db.Txn(false)) }

func latestIndex(txn *memdb.Txn) uint64 {
	it, err := txn.Get(TableIndex, "id")
	if err != nil {
		return 0
	}
	var max uint64
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if v := raw.(*tableIndex).Value; v > max {
			max = v
		}
	}
	return max
}

// ---------------------------------------------------------------- reads ----

// JobByID returns the job with this id, or with this unique id prefix.
// ws, when not nil, is added the channels that fire when the answer changes.
func (s *Store) JobByID(ws memdb.WatchSet, id string) (*pb.Job, error) {
	txn := s.db.Txn(false)
	watch, raw, err := txn.FirstWatch(TableJobs, "id", id)
	if err != nil {
		return nil, fmt.Errorf("state: job lookup: %w", err)
	}
	if raw != nil {
		ws.Add(watch)
		return raw.(*pb.Job), nil
	}
	if id == "" {
		return nil, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	it, err := txn.Get(TableJobs, "id_prefix", id)
	if err != nil {
		return nil, fmt.Errorf("state: job prefix lookup: %w", err)
	}
	ws.Add(it.WatchCh())
	var found *pb.Job
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if found != nil {
			return nil, fmt.Errorf("job %q: %w", id, ErrAmbiguous)
		}
		found = raw.(*pb.Job)
	}
	if found == nil {
		return nil, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	return found, nil
}

// eachJob calls fn for every job matching f, using the narrowest index.
func (s *Store) eachJob(ws memdb.WatchSet, f JobFilter, fn func(*pb.Job)) {
	txn := s.db.Txn(false)
	var (
		it  memdb.ResultIterator
		err error
	)
	switch {
	case f.Status != "":
		it, err = txn.Get(TableJobs, "status", f.Status)
	case f.Project != "":
		it, err = txn.Get(TableJobs, "project", f.Project)
	default:
		it, err = txn.Get(TableJobs, "id")
	}
	if err != nil {
		return
	}
	ws.Add(it.WatchCh())
	for raw := it.Next(); raw != nil; raw = it.Next() {
		j := raw.(*pb.Job)
		if (f.Status == "" || j.Status == f.Status) && (f.Project == "" || j.Project == f.Project) {
			fn(j)
		}
	}
}

// JobFilter selects jobs in Jobs. Empty fields match everything.
type JobFilter struct {
	Status  string
	Project string
}

// Jobs returns the jobs matching f, oldest first.
func (s *Store) Jobs(ws memdb.WatchSet, f JobFilter) []*pb.Job {
	var out []*pb.Job
	s.eachJob(ws, f, func(j *pb.Job) { out = append(out, j) })
	sortJobs(out)
	return out
}

func jobsFrom(txn *memdb.Txn, ws memdb.WatchSet) []*pb.Job {
	it, err := txn.Get(TableJobs, "id")
	if err != nil {
		return nil
	}
	ws.Add(it.WatchCh())
	var out []*pb.Job
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*pb.Job))
	}
	sortJobs(out)
	return out
}

func sortJobs(js []*pb.Job) {
	sort.Slice(js, func(a, b int) bool {
		if js[a].CreateIndex != js[b].CreateIndex {
			return js[a].CreateIndex < js[b].CreateIndex
		}
		return js[a].Id < js[b].Id
	})
}

// Queue calls fn for each pending job in dispatch order (priority, then
// submission) until fn returns false.
func (s *Store) Queue(ws memdb.WatchSet, fn func(*pb.Job) bool) {
	it, err := s.db.Txn(false).Get(TableJobs, "queue_prefix", "")
	if err != nil {
		return
	}
	ws.Add(it.WatchCh())
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !fn(raw.(*pb.Job)) {
			return
		}
	}
}

// CountJobs counts the jobs matching f, without building a sorted list.
func (s *Store) CountJobs(f JobFilter) int {
	n := 0
	s.eachJob(nil, f, func(*pb.Job) { n++ })
	return n
}

// ActiveCounts returns how many jobs each runner holds a slot for, from
// one pass over the slot index and with one watch for all of it: the
// dispatcher needs every runner's load on every pass, and a query (and a
// watch channel) per runner made passes slow with thousands of runners.
func (s *Store) ActiveCounts(ws memdb.WatchSet) map[string]int {
	it, err := s.db.Txn(false).Get(TableJobs, "runner_active_prefix", "")
	if err != nil {
		return nil
	}
	ws.Add(it.WatchCh())
	counts := map[string]int{}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		counts[raw.(*pb.Job).RunnerId]++
	}
	return counts
}

// ActiveJobs returns the jobs a runner holds a slot for (assigned, running,
// canceling), oldest first.
func (s *Store) ActiveJobs(ws memdb.WatchSet, runnerID string) []*pb.Job {
	it, err := s.db.Txn(false).Get(TableJobs, "runner_active", runnerID)
	if err != nil {
		return nil
	}
	ws.Add(it.WatchCh())
	var out []*pb.Job
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*pb.Job))
	}
	sortJobs(out)
	return out
}

// LogChunks returns the chunks of a job with seq above afterSeq, in order.
func (s *Store) LogChunks(ws memdb.WatchSet, jobID string, afterSeq uint64) []*pb.LogChunk {
	txn := s.db.Txn(false)
	it, err := txn.LowerBound(TableJobLogs, "id", jobID, afterSeq+1)
	if err != nil {
		return nil
	}
	ws.Add(it.WatchCh())
	var out []*pb.LogChunk
	for raw := it.Next(); raw != nil; raw = it.Next() {
		c := raw.(*pb.LogChunk)
		if c.JobId != jobID {
			break
		}
		out = append(out, c)
	}
	return out
}

func allChunks(txn *memdb.Txn) []*pb.LogChunk {
	return all[*pb.LogChunk](txn, nil, TableJobLogs, "id")
}

// Projects returns every project by name.
func (s *Store) Projects(ws memdb.WatchSet) []*pb.Project { return projectsFrom(s.db.Txn(false), ws) }

func projectsFrom(txn *memdb.Txn, ws memdb.WatchSet) []*pb.Project {
	return all[*pb.Project](txn, ws, TableProjects, "id")
}

// ProjectByName returns one project.
func (s *Store) ProjectByName(ws memdb.WatchSet, name string) (*pb.Project, error) {
	watch, raw, err := s.db.Txn(false).FirstWatch(TableProjects, "id", name)
	if err != nil {
		return nil, fmt.Errorf("state: project lookup: %w", err)
	}
	ws.Add(watch)
	if raw == nil {
		return nil, fmt.Errorf("project %q: %w", name, ErrNotFound)
	}
	return raw.(*pb.Project), nil
}

// Runners returns every runner by id.
func (s *Store) Runners(ws memdb.WatchSet) []*pb.Runner { return runnersFrom(s.db.Txn(false), ws) }

func runnersFrom(txn *memdb.Txn, ws memdb.WatchSet) []*pb.Runner {
	return all[*pb.Runner](txn, ws, TableRunners, "id")
}

// RunnerByID returns one runner, or a unique id prefix of one.
func (s *Store) RunnerByID(ws memdb.WatchSet, id string) (*pb.Runner, error) {
	txn := s.db.Txn(false)
	watch, raw, err := txn.FirstWatch(TableRunners, "id", id)
	if err != nil {
		return nil, fmt.Errorf("state: runner lookup: %w", err)
	}
	ws.Add(watch)
	if raw != nil {
		return raw.(*pb.Runner), nil
	}
	var found *pb.Runner
	for _, r := range runnersFrom(txn, nil) {
		if id != "" && strings.HasPrefix(r.Id, id) {
			if found != nil {
				return nil, fmt.Errorf("runner %q: %w", id, ErrAmbiguous)
			}
			found = r
		}
	}
	if found == nil {
		return nil, fmt.Errorf("runner %q: %w", id, ErrNotFound)
	}
	return found, nil
}

// all returns every row of a table in the order of one of its indexes,
// adding the table's watch channel to ws.
func all[T any](txn *memdb.Txn, ws memdb.WatchSet, table, index string) []T {
	it, err := txn.Get(table, index)
	if err != nil {
		return nil
	}
	ws.Add(it.WatchCh())
	var out []T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(T))
	}
	return out
}
