package agent

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"

	"github.com/hashicorp/raft"

	"github.com/outpost-run/outpost/fsm"
)

// maxSnapshotUpload bounds a restore upload.
const maxSnapshotUpload = 4 << 30

// snapshotHandler serves /v1/operator/snapshot: GET streams a snapshot of
// the state (after a read barrier, so it holds every acknowledged write);
// PUT restores one, on the leader, replicated to every server by Raft.
// Plain HTTP, so `curl -o backup.snap` works.
func (s *Server) snapshotHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			s.saveSnapshot(w, r)
		case http.MethodPut, http.MethodPost:
			s.restoreSnapshot(w, r)
		default:
			w.Header().Set("Allow", "GET, PUT")
			http.Error(w, "use GET to save a snapshot or PUT to restore one", http.StatusMethodNotAllowed)
		}
	})
}

func (s *Server) saveSnapshot(w http.ResponseWriter, r *http.Request) {
	if err := s.ReadBarrier(r.Context(), r.URL.Query().Has("stale")); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	view := s.fsm.State().Snapshot()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="outpost.snap"`)
	if err := fsm.WriteSnapshot(w, view, s.fsm.AppliedIndex()); err != nil {
		s.logger.Warn("writing snapshot to client", "error", err)
	}
}

func (s *Server) restoreSnapshot(w http.ResponseWriter, r *http.Request) {
	leader, err := s.leaderHTTP(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if leader != "" {
		target, _ := url.Parse(s.PeerURL(leader))
		proxy := httputil.NewSingleHostReverseProxy(target)
		proxy.Transport = s.peers.hc.Transport
		proxy.ServeHTTP(w, r)
		return
	}
	// Spool to disk: Raft needs the size up front, and the whole file must
	// parse before anything is replaced.
	tmp, err := os.CreateTemp("", "outpost-restore-*.snap")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	size, err := io.Copy(tmp, io.LimitReader(r.Body, maxSnapshotUpload))
	if err != nil {
		http.Error(w, "reading upload: "+err.Error(), http.StatusBadRequest)
		return
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	info, err := InspectSnapshot(tmp)
	if err != nil {
		http.Error(w, "not a valid outpost snapshot: "+err.Error(), http.StatusBadRequest)
		return
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// Raft continues numbering above the snapshot's index, so leases
	// handed out from now on are above every lease in the restored jobs.
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: info.Index, Size: size}
	if err := s.raft.Restore(meta, tmp, 5*time.Minute); err != nil {
		http.Error(w, "restore: "+err.Error(), http.StatusInternalServerError)
		return
	}
	s.logger.Info("restored snapshot", "jobs", info.Jobs, "index", info.Index)
	fmt.Fprintf(w, "restored %d jobs, %d log chunks, %d projects, %d runners (snapshot index %d)\n",
		info.Jobs, info.LogChunks, info.Projects, info.Runners, info.Index)
}

// SnapshotInfo summarises a snapshot file.
type SnapshotInfo struct {
	Index     uint64
	Jobs      int
	LogChunks int
	Projects  int
	Runners   int
	Size      int64
}

// InspectSnapshot reads a whole snapshot, checking that it restores, and
// counts what is in it.
func InspectSnapshot(r io.Reader) (*SnapshotInfo, error) {
	cr := &countingReader{r: r}
	st, err := fsm.ReadSnapshot(cr)
	if err != nil {
		return nil, err
	}
	view := st.Snapshot()
	return &SnapshotInfo{
		Index:     view.LatestIndex(),
		Jobs:      view.JobCount(),
		LogChunks: view.LogChunkCount(),
		Projects:  len(view.Projects()),
		Runners:   len(view.Runners()),
		Size:      cr.n,
	}, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
