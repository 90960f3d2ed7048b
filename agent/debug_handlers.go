package agent

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The agent serves its own profiles rather than importing net/http/pprof:
// that package's init, its HTML index and its templates are linked into
// every role, and the pages they touch at start-up cost an idle runner
// agent 1.1 MB of resident memory. go tool pprof needs only the raw
// profiles, which runtime/pprof writes.

// maxProfileDuration bounds ?seconds= so a typo cannot hold a connection
// (and the process-wide CPU profiler) for hours.
const maxProfileDuration = 5 * time.Minute

func registerDebugHandlers(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/profile", recorder("cpu profile", 30*time.Second, pprof.StartCPUProfile, pprof.StopCPUProfile))
	mux.HandleFunc("/debug/pprof/trace", recorder("trace", time.Second, trace.Start, trace.Stop))
	mux.HandleFunc("/debug/pprof/", serveNamedProfile)
}

// profileSeconds reads ?seconds=N (default def).
func profileSeconds(r *http.Request, def time.Duration) (time.Duration, error) {
	s := r.URL.Query().Get("seconds")
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("seconds=%q: want a positive number", s)
	}
	d := time.Duration(n * float64(time.Second))
	if d > maxProfileDuration {
		return 0, fmt.Errorf("seconds=%q: at most %v", s, maxProfileDuration)
	}
	return d, nil
}

// recorder serves a recording that runs for ?seconds (def when absent)
// and streams as it goes: the CPU profile and the execution trace. Either
// is process-wide, so a second request while one runs gets 409.
func recorder(what string, def time.Duration, start func(io.Writer) error, stop func()) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := profileSeconds(r, def)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if err := start(w); err != nil {
			http.Error(w, what+": "+err.Error(), http.StatusConflict)
			return
		}
		sleepOrDone(r, d)
		stop()
	}
}

func sleepOrDone(r *http.Request, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

// serveNamedProfile serves /debug/pprof/NAME (heap, allocs, goroutine,
// block, mutex, threadcreate) with ?debug=N for text and ?gc=1 to collect
// first, and lists the names at /debug/pprof/.
func serveNamedProfile(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/debug/pprof/")
	if name == "" {
		names := make([]string, 0, 8)
		for _, p := range pprof.Profiles() {
			names = append(names, p.Name())
		}
		names = append(names, "profile", "trace")
		sort.Strings(names)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "profiles (go tool pprof http://%s/debug/pprof/NAME):\n%s\n", r.Host, strings.Join(names, "\n"))
		return
	}
	p := pprof.Lookup(name)
	if p == nil {
		http.Error(w, fmt.Sprintf("no profile %q; see /debug/pprof/", name), http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	debug, _ := strconv.Atoi(q.Get("debug"))
	if q.Get("gc") != "" && name == "heap" {
		runtime.GC()
	}
	if debug > 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	if err := p.WriteTo(w, debug); err != nil {
		// Headers are gone by now; the client sees a short body.
		return
	}
}
