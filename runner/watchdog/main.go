package watchdog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outpost-run/outpost/runner/executor"
)

// Command is the outpost subcommand that runs Main.
const Command = "runner-watchdog"

// maxLine bounds one message: a watch line of a job with thousands of
// steps' process groups still fits.
const maxLine = 1 << 20

// Main is the watchdog process: it reads messages from stdin until an
// orderly close (exit 0, nothing killed) or EOF (kill everything, then
// exit 0), and kills every registered container when the deadline
// passes. Log lines go to stderr, which it never blocks on.
func Main(stdin io.Reader, stderr *os.File) int {
	// SIGTERM and SIGINT reach it when its unit or terminal stops: the
	// runner decides how its jobs end then (its own abort timeouts), and
	// the watchdog follows the runner, by stdin. A broken log pipe must
	// not end it either.
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	log := newLogWriter(stderr)
	runner := os.Getppid()

	timer, err := newBootTimer()
	if err != nil {
		log.printf("error", "boottime timer: %v", err)
		return 1
	}

	msgs := make(chan message)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 4096), maxLine)
		for sc.Scan() {
			m, err := decode(sc.Text())
			if err != nil {
				log.printf("error", "bad message from the runner: %v", err)
				continue
			}
			msgs <- m
		}
		readErr <- sc.Err()
	}()
	log.printf("ready", "")

	w := &watcher{log: log, runner: runner, containers: map[string]executor.Container{}}
	var deadline int64
	for {
		select {
		case m := <-msgs:
			switch m.verb {
			case "watch":
				w.containers[m.container.Key] = m.container
			case "forget":
				delete(w.containers, m.key)
			case "deadline":
				deadline = m.deadline
				if err := timer.set(deadline); err != nil {
					log.printf("error", "arming the deadline: %v", err)
				}
			case "close":
				if len(w.containers) > 0 {
					log.printf("info", "closed by the runner with %d job containers registered; leaving them to it", len(w.containers))
				}
				return 0
			}
		case err := <-readErr:
			// EOF without "close": the runner is gone, and nothing else
			// will end its jobs.
			why := "the runner's end of the pipe closed without a shutdown (it died)"
			if err != nil {
				why = "reading from the runner: " + err.Error()
			}
			// The runner's pid may belong to anyone by now, even a
			// process of a job: nothing is spared.
			w.runner = 0
			w.killAll(why).Wait()
			return 0
		case <-timer.fired:
			now := bootNow()
			if deadline == 0 || now < deadline {
				continue // moved or cleared since it was armed
			}
			// Asynchronously: the runner may come back meanwhile, and its
			// messages must not wait behind a slow kill.
			w.killAll(fmt.Sprintf("the runner's fence deadline passed %v ago without being moved", time.Duration(now-deadline).Round(time.Millisecond)))
			deadline = 0
		}
	}
}

// watcher holds the registered containers (owned by Main's loop).
type watcher struct {
	log        *logWriter
	runner     int // the runner's pid; 0 once it is gone
	containers map[string]executor.Container
}

// killAll kills every registered container at once and logs what it did.
func (w *watcher) killAll(why string) *sync.WaitGroup {
	var wg sync.WaitGroup
	if len(w.containers) == 0 {
		w.log.printf("info", "%s; no job containers to kill", why)
		return &wg
	}
	w.log.printf("warn", "%s: killing %d job containers", why, len(w.containers))
	var exclude []int
	if w.runner > 1 {
		// Alive but frozen: a thread of it may sit in a job's v1
		// cgroup, starting a step, and the runner itself must survive.
		exclude = []int{w.runner}
	}
	for _, c := range w.containers {
		wg.Go(func() {
			n, err := executor.KillContainer(c, exclude...)
			if err != nil {
				w.log.printf("error", "job container %s: killed %d processes: %v", c.Key, n, err)
				return
			}
			w.log.printf("warn", "job container %s: killed %d processes", c.Key, n)
		})
	}
	return &wg
}

// bootTimer is a timerfd on CLOCK_BOOTTIME: Go's timers run on
// CLOCK_MONOTONIC, which stops while the host is suspended.
type bootTimer struct {
	fd    int
	fired chan struct{}
}

func newBootTimer() (*bootTimer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_BOOTTIME, unix.TFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	t := &bootTimer{fd: fd, fired: make(chan struct{}, 1)}
	go func() {
		var buf [8]byte
		for {
			// A blocking read: a disarmed timer just waits here.
			if _, err := unix.Read(fd, buf[:]); err != nil && !errors.Is(err, unix.EINTR) {
				return
			}
			select {
			case t.fired <- struct{}{}:
			default:
			}
		}
	}()
	return t, nil
}

// set arms the timer for ns on CLOCK_BOOTTIME, or disarms it for 0.
func (t *bootTimer) set(ns int64) error {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(ns)}
	return unix.TimerfdSettime(t.fd, unix.TFD_TIMER_ABSTIME, &spec, nil)
}

// bootNow reads CLOCK_BOOTTIME in nanoseconds.
func bootNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return ts.Nano()
}

// logWriter writes log lines without ever blocking: on a pipe to a
// frozen runner, a full pipe drops the line rather than hold up a kill.
type logWriter struct {
	mu sync.Mutex
	fd int
}

func newLogWriter(f *os.File) *logWriter {
	fd := int(f.Fd())
	var st unix.Stat_t
	// Only on a pipe of its own (Start makes one); a terminal or a file
	// shared with others keeps its mode.
	if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFIFO {
		_ = unix.SetNonblock(fd, true)
	}
	return &logWriter{fd: fd}
}

func (l *logWriter) printf(level, format string, args ...any) {
	line := level
	if format != "" {
		line += ": " + strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = unix.Write(l.fd, []byte(line+"\n")) // EAGAIN, EPIPE: lost
}
