package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/internal/logcap"
	"github.com/outpost-run/outpost/rpc"
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
	// ErrInvalid means a runner's report can never be recorded as it is
	// (log lines past the limit, say): it must not be sent again.
	ErrInvalid = errors.New("invalid report")
	// ErrLogIncomplete means a piece of an attempt's final log is missing:
	// the runner sends the final log and the result again.
	ErrLogIncomplete = errors.New("final log incomplete")
)

// Store is the state store. The zero value is not usable; call New.
type Store struct {
	db *memdb.MemDB
	// maxLogBytes is the limit of one attempt's log: logcap.MaxBytes, the
	// same on every server; tests lower it.
	maxLogBytes uint64
	// writeSeq numbers write transactions (the FSM makes one at a time);
	// see historyRow.
	writeSeq uint64
}

// New returns an empty store.
func New() (*Store, error) {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("state: create memdb: %w", err)
	}
	return &Store{db: db, maxLogBytes: logcap.MaxBytes}, nil
}

// Txn starts a write transaction. Only the FSM and restore use it.
func (s *Store) txn() *memdb.Txn {
	s.writeSeq++
	return s.db.Txn(true)
}

// Snapshot returns a point-in-time read view that later writes do not touch.
func (s *Store) Snapshot() *Snapshot {
	return &Snapshot{txn: s.db.Txn(false)}
}

// Snapshot is an immutable view of the store, used by FSM snapshots.
type Snapshot struct{ txn *memdb.Txn }

// Each table's rows in a stable order, for persisting.
func (sn *Snapshot) Jobs() []*pb.Job                 { return jobsInPlay(sn.txn) }
func (sn *Snapshot) Projects() []*pb.Project         { return projectsFrom(sn.txn, nil) }
func (sn *Snapshot) Runners() []*pb.Runner           { return runnersFrom(sn.txn, nil) }
func (sn *Snapshot) LogChunks() []*pb.LogChunk       { return allChunks(sn.txn) }
func (sn *Snapshot) LatestIndex() uint64             { return latestIndex(sn.txn) }
func (sn *Snapshot) RunnerTokens() []*pb.RunnerToken { return tokensFrom(sn.txn) }
func (sn *Snapshot) Profiles() []*pb.RunnerProfile   { return profilesFrom(sn.txn, nil) }
func (sn *Snapshot) RunnerTombstones() []*pb.RunnerTombstone {
	return all[*pb.RunnerTombstone](sn.txn, nil, TableRunnerTombstones, "id")
}
func (sn *Snapshot) GossipKeyring() *pb.GossipKeyring { return keyringFrom(sn.txn, nil) }

// FinishedJobs calls fn with each finished job's encoded pb.Job, as stored:
// a snapshot writes them without decoding.
// fn gets the job and then each of its log chunks, encoded.
func (sn *Snapshot) FinishedJobs(fn func(job []byte, chunks [][]byte) error) error {
	return finishedRaw(sn.txn, fn)
}

// LogChunkCount is how many log chunks the view holds, of jobs in play
// and finished.
func (sn *Snapshot) LogChunkCount() int {
	n := len(allChunks(sn.txn))
	_ = finishedRaw(sn.txn, func(_ []byte, chunks [][]byte) error {
		n += len(chunks)
		return nil
	})
	return n
}

// JobCount is how many jobs the view holds, in play and finished.
func (sn *Snapshot) JobCount() int {
	h, _ := historyOf(sn.txn)
	return len(jobsInPlay(sn.txn)) + h.byID.Len()
}

// Tombstones calls fn with the tombstones of each entry that deleted jobs,
// in log order.
func (sn *Snapshot) Tombstones(fn func(*pb.Tombstones) error) error {
	h, _ := historyOf(sn.txn)
	var err error
	h.tombBatches.Ascend(func(b *tombBatch) bool {
		err = fn(&pb.Tombstones{Index: b.Index, Time: timestamppb.New(time.Unix(0, b.At)), Keys: b.Keys})
		return err == nil
	})
	return err
}

func tokensFrom(txn *memdb.Txn) []*pb.RunnerToken {
	return all[*pb.RunnerToken](txn, nil, TableTokens, "id")
}

// RunnerTokenByHash finds an adoption token by the hash of its secret.
func (s *Store) RunnerTokenByHash(hash []byte) (*pb.RunnerToken, error) {
	raw, err := s.db.Txn(false).First(TableTokens, "hash", hash)
	if err != nil {
		return nil, fmt.Errorf("state: token lookup: %w", err)
	}
	if raw == nil {
		return nil, fmt.Errorf("runner token: %w", ErrNotFound)
	}
	return raw.(*pb.RunnerToken), nil
}

// RunnerTokens lists the adoption tokens.
func (s *Store) RunnerTokens() []*pb.RunnerToken { return tokensFrom(s.db.Txn(false)) }

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
	watch, j, err := jobIn(txn, id)
	if err != nil {
		return nil, err
	}
	if j != nil {
		ws.Add(watch)
		return j, nil
	}
	if id == "" {
		return nil, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	var found []*pb.Job
	it, err := txn.Get(TableJobs, "id_prefix", id)
	if err != nil {
		return nil, fmt.Errorf("state: job prefix lookup: %w", err)
	}
	ws.Add(it.WatchCh())
	for raw := it.Next(); raw != nil && len(found) < 2; raw = it.Next() {
		found = append(found, raw.(*pb.Job))
	}
	hist, hwatch := historyOf(txn)
	ws.Add(hwatch)
	hist.byID.AscendGreaterOrEqual(&finishedJob{Id: id}, func(f *finishedJob) bool {
		if !strings.HasPrefix(f.Id, id) || len(found) == 2 {
			return false
		}
		found = append(found, f.job())
		return true
	})
	switch len(found) {
	case 0:
		if hist.collected(id) {
			return nil, fmt.Errorf("job %s: %w: it finished and was deleted (garbage-collected, or by `outpost job delete`)", id, ErrNotFound)
		}
		return nil, fmt.Errorf("job %q: %w", id, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return nil, ambiguous(id, "jobs", jobIDsWithPrefix(txn, id))
}

// maxListedMatches is how many of the ids an ambiguous prefix matches its
// error lists: enough to pick from, few enough for one line.
const maxListedMatches = 5

// ambiguous says which ids a prefix matches, the first few of them in
// order: prefix "j-" matches 12 jobs: j-0a…, j-1b…, …
func ambiguous(prefix, what string, ids []string) error {
	sort.Strings(ids)
	list := ids
	if len(list) > maxListedMatches {
		list = list[:maxListedMatches]
	}
	more := ""
	if len(ids) > len(list) {
		more = ", …"
	}
	return fmt.Errorf("prefix %q matches %d %s: %s%s: %w",
		prefix, len(ids), what, strings.Join(list, ", "), more, ErrAmbiguous)
}

// jobIDsWithPrefix lists the ids of every job, in play or finished, that
// starts with prefix. Only an ambiguous lookup needs it, so it may walk
// many jobs; it decodes none.
func jobIDsWithPrefix(txn *memdb.Txn, prefix string) []string {
	var ids []string
	if it, err := txn.Get(TableJobs, "id_prefix", prefix); err == nil {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			ids = append(ids, raw.(*pb.Job).Id)
		}
	}
	hist, _ := historyOf(txn)
	hist.byID.AscendGreaterOrEqual(&finishedJob{Id: prefix}, func(f *finishedJob) bool {
		if !strings.HasPrefix(f.Id, prefix) {
			return false
		}
		ids = append(ids, f.Id)
		return true
	})
	return ids
}

// asJob returns the job a row of either table holds.
func asJob(raw any) *pb.Job {
	if f, ok := raw.(*finishedJob); ok {
		return f.job()
	}
	return raw.(*pb.Job)
}

// eachRow calls fn for every job row matching f, from whichever tables can
// hold it and using the narrowest index. A row is a *pb.Job (in play) or a
// *finishedJob, so counting never decodes the history.
func (s *Store) eachRow(ws memdb.WatchSet, f JobFilter, fn func(raw any, status string)) {
	txn := s.db.Txn(false)
	eachInPlay(txn, ws, f, func(j *pb.Job) { fn(j, j.Status) })
	if f.wantsFinished() {
		hist, watch := historyOf(txn)
		ws.Add(watch)
		hist.byID.Ascend(func(r *finishedJob) bool {
			if f.matchRow(r) {
				fn(r, r.Status)
			}
			return true
		})
	}
}

// eachInPlay calls fn for every job in play that matches f, using the
// narrowest index.
func eachInPlay(txn *memdb.Txn, ws memdb.WatchSet, f JobFilter, fn func(*pb.Job)) {
	if f.Status != "" && rpc.JobTerminal(f.Status) {
		return
	}
	scan := func(index string, args ...any) {
		it, err := txn.Get(TableJobs, index, args...)
		if err != nil {
			return
		}
		ws.Add(it.WatchCh())
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if j := raw.(*pb.Job); f.matchJob(j) {
				fn(j)
			}
		}
	}
	switch {
	case f.Status == rpc.JobPending:
		scan("queue_prefix", "")
	case rpc.JobActive(f.Status):
		scan("runner_active_prefix", "")
	default:
		scan("id")
	}
}

// JobFilter selects jobs in Jobs, JobPage and CountJobs. Empty fields match
// everything.
type JobFilter struct {
	Status    string
	Project   string
	Name      string
	Workspace string
	// CreatedAfter and CreatedBefore bound the jobs' creation time: at or
	// after the one, before the other.
	CreatedAfter, CreatedBefore time.Time
	// ProjectAllowed, when set, keeps only the jobs of projects it
	// accepts: the projects the caller's ACL token may read.
	ProjectAllowed func(project string) bool
}

func (f JobFilter) wantsFinished() bool { return f.Status == "" || rpc.JobTerminal(f.Status) }

func (f JobFilter) matchJob(j *pb.Job) bool {
	return (f.Status == "" || j.Status == f.Status) && (f.Project == "" || j.Project == f.Project) &&
		(f.ProjectAllowed == nil || f.ProjectAllowed(j.Project)) &&
		(f.Name == "" || j.Name == f.Name) && (f.Workspace == "" || j.Workspace == f.Workspace) &&
		f.matchCreated(unixNanos(j.CreatedAt))
}

// matchRow is matchJob for a finished job's row, without decoding it: the
// name and workspace are read straight from its encoding.
func (f JobFilter) matchRow(r *finishedJob) bool {
	return (f.Status == "" || r.Status == f.Status) && (f.Project == "" || r.Project == f.Project) &&
		(f.ProjectAllowed == nil || f.ProjectAllowed(r.Project)) &&
		f.matchCreated(r.Created) &&
		(f.Name == "" || string(rawField(r.Raw, jobNameField)) == f.Name) &&
		(f.Workspace == "" || string(rawField(r.Raw, jobWorkspaceField)) == f.Workspace)
}

func (f JobFilter) matchCreated(ns int64) bool {
	return (f.CreatedAfter.IsZero() || ns >= f.CreatedAfter.UnixNano()) &&
		(f.CreatedBefore.IsZero() || ns < f.CreatedBefore.UnixNano())
}

// Field numbers of pb.Job read from encoded finished jobs.
const (
	jobNameField      = 3
	jobWorkspaceField = 4
)

// rawField returns the bytes of length-delimited field num of an encoded
// message, nil when it is absent (or the bytes are not a message: they were
// made by proto.Marshal, so that does not happen). Compared as a string, it
// costs no allocation.
func rawField(b []byte, num protowire.Number) []byte {
	for len(b) > 0 {
		n, typ, w := protowire.ConsumeTag(b)
		if w < 0 {
			return nil
		}
		b = b[w:]
		if n == num && typ == protowire.BytesType {
			v, w := protowire.ConsumeBytes(b)
			if w < 0 {
				return nil
			}
			return v
		}
		w = protowire.ConsumeFieldValue(n, typ, b)
		if w < 0 {
			return nil
		}
		b = b[w:]
	}
	return nil
}

// Jobs returns the jobs matching f, oldest first.
func (s *Store) Jobs(ws memdb.WatchSet, f JobFilter) []*pb.Job {
	var out []*pb.Job
	s.eachRow(ws, f, func(raw any, _ string) { out = append(out, asJob(raw)) })
	sortJobs(out)
	return out
}

// jobsInPlay returns the jobs not finished yet, oldest first.
func jobsInPlay(txn *memdb.Txn) []*pb.Job {
	out := all[*pb.Job](txn, nil, TableJobs, "id")
	sortJobs(out)
	return out
}

// finishedRaw calls fn with every finished job's encoded message and log
// chunks.
func finishedRaw(txn *memdb.Txn, fn func(job []byte, chunks [][]byte) error) error {
	hist, _ := historyOf(txn)
	var chunks [][]byte
	var err error
	hist.byID.Ascend(func(row *finishedJob) bool {
		chunks = chunks[:0]
		for b := row.Logs; len(b) > 0; {
			n, w := binary.Uvarint(b)
			if w <= 0 || uint64(len(b)-w) < n {
				err = fmt.Errorf("state: log chunks of finished job %s are corrupt", row.Id)
				return false
			}
			chunks = append(chunks, b[w:w+int(n)])
			b = b[w+int(n):]
		}
		err = fn(row.Raw, chunks)
		return err == nil
	})
	return err
}

// JobCursor is a position in the newest-first order of jobs (by create
// index, then id, both descending): a page goes on after it. New jobs
// have higher create indexes and so come before any cursor; a retried job
// keeps its create index, so no job moves across a cursor.
type JobCursor struct {
	CreateIndex uint64
	ID          string
}

// after reports whether a job at (ci, id) comes after c in newest-first
// order; every job does when c is nil.
func (c *JobCursor) after(ci uint64, id string) bool {
	return c == nil || newer(c.CreateIndex, c.ID, ci, id)
}

// newer reports whether a job at (ciA, idA) comes before one at (ciB, idB)
// in newest-first order.
func newer(ciA uint64, idA string, ciB uint64, idB string) bool {
	return ciA > ciB || (ciA == ciB && idA > idB)
}

// JobPage returns up to size jobs matching f, newest first, that come after
// the cursor (nil: from the newest), and whether more match. Finished jobs
// are walked in order from the cursor, and only those returned decoded;
// jobs in play are scanned (there are few, next to the history) and sorted.
func (s *Store) JobPage(f JobFilter, after *JobCursor, size int) ([]*pb.Job, bool) {
	if size <= 0 {
		return nil, false
	}
	txn := s.db.Txn(false)
	var play []*pb.Job
	eachInPlay(txn, nil, f, func(j *pb.Job) {
		if after.after(j.CreateIndex, j.Id) {
			play = append(play, j)
		}
	})
	sortJobs(play)
	slices.Reverse(play)
	var done []*finishedJob
	if f.wantsFinished() {
		hist, _ := historyOf(txn)
		visit := func(r *finishedJob) bool {
			if after.after(r.CreateIndex, r.Id) && f.matchRow(r) {
				done = append(done, r)
			}
			return len(done) <= size
		}
		if after == nil {
			hist.byCreate.Descend(visit)
		} else {
			hist.byCreate.DescendLessOrEqual(&finishedJob{CreateIndex: after.CreateIndex, Id: after.ID}, visit)
		}
	}
	out := make([]*pb.Job, 0, min(size, len(play)+len(done)))
	for len(out) < size && (len(play) > 0 || len(done) > 0) {
		if len(done) == 0 || (len(play) > 0 && newer(play[0].CreateIndex, play[0].Id, done[0].CreateIndex, done[0].Id)) {
			out, play = append(out, play[0]), play[1:]
		} else {
			out, done = append(out, done[0].job()), done[1:]
		}
	}
	return out, len(play)+len(done) > 0
}

// FinishedStats counts the finished jobs garbage collection may take, the
// pinned finished ones, and the tombstones of deleted jobs.
func (s *Store) FinishedStats() (collectable, pinned, tombstones int) {
	h, _ := historyOf(s.db.Txn(false))
	return h.byDone.Len(), h.byID.Len() - h.byDone.Len(), h.tombCount
}

// Collectable returns up to limit ids of finished jobs to garbage-collect,
// oldest done first: while more than maxFinished are not pinned, the
// oldest of them; then those done before cutoff. A zero maxFinished or
// cutoff turns that bound off. Pinned jobs are never returned.
func (s *Store) Collectable(cutoff time.Time, maxFinished, limit int) []string {
	h, _ := historyOf(s.db.Txn(false))
	excess := 0
	if maxFinished > 0 {
		excess = h.byDone.Len() - maxFinished
	}
	var ids []string
	h.byDone.Ascend(func(r *finishedJob) bool {
		if len(ids) >= limit {
			return false
		}
		switch {
		case excess > 0:
			excess--
		case !cutoff.IsZero() && r.Done < cutoff.UnixNano():
		default:
			return false
		}
		ids = append(ids, r.Id)
		return true
	})
	return ids
}

// Collected reports whether id is the id of a deleted job (within the
// bounds of MaxTombstones and TombstoneTTL): a submit must not reuse it.
func (s *Store) Collected(id string) bool {
	h, _ := historyOf(s.db.Txn(false))
	return h.collected(id)
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

// CountJobs counts the jobs matching f, without building a list or
// decoding finished jobs.
func (s *Store) CountJobs(f JobFilter) int {
	n := 0
	s.eachRow(nil, f, func(any, string) { n++ })
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

// LogChunks returns the chunks of a job with seq above afterSeq, in order:
// from the log table while the job is in play, from its history row once
// it finished.
func (s *Store) LogChunks(ws memdb.WatchSet, jobID string, afterSeq uint64) []*pb.LogChunk {
	txn := s.db.Txn(false)
	if out, err := tableChunks(txn, ws, jobID, afterSeq); err != nil || len(out) > 0 {
		return out
	}
	f, watch := finishedByID(txn, jobID)
	ws.Add(watch)
	if f == nil {
		return nil
	}
	return f.chunks(afterSeq)
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
	var found []*pb.Runner
	for _, r := range runnersFrom(txn, nil) {
		if id != "" && strings.HasPrefix(r.Id, id) {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("runner %q: %w", id, ErrNotFound)
	case 1:
		return found[0], nil
	}
	ids := make([]string, len(found))
	for i, r := range found {
		ids[i] = r.Id
	}
	return nil, ambiguous(id, "runners", ids)
}

// Profiles lists runner profiles by name.
func (s *Store) Profiles(ws memdb.WatchSet) []*pb.RunnerProfile {
	return profilesFrom(s.db.Txn(false), ws)
}

func profilesFrom(txn *memdb.Txn, ws memdb.WatchSet) []*pb.RunnerProfile {
	return all[*pb.RunnerProfile](txn, ws, TableProfiles, "id")
}

// ProfileByName returns one profile.
func (s *Store) ProfileByName(name string) (*pb.RunnerProfile, error) {
	raw, err := s.db.Txn(false).First(TableProfiles, "id", name)
	if err != nil {
		return nil, fmt.Errorf("state: profile lookup: %w", err)
	}
	if raw == nil {
		return nil, fmt.Errorf("runner profile %q: %w", name, ErrNotFound)
	}
	return raw.(*pb.RunnerProfile), nil
}

// DefaultProfile returns the default profile, or nil when none is set.
func (s *Store) DefaultProfile() *pb.RunnerProfile {
	for _, p := range s.Profiles(nil) {
		if p.Default {
			return p
		}
	}
	return nil
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
