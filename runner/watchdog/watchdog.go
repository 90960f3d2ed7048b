package watchdog

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/outpost-run/outpost/runner/executor"
)

// writeTimeout bounds one message to the watchdog: it reads at once, so a
// pipe that stays full means it is stuck, and the runner must not be.
const writeTimeout = 2 * time.Second

// Watchdog is the runner's handle on its watchdog process. It implements
// executor.Watchdog; its methods are safe for concurrent use.
type Watchdog struct {
	cmd    *exec.Cmd
	logger hclog.Logger

	mu     sync.Mutex
	stdin  *os.File
	closed bool

	done    chan struct{} // closed when the process has exited
	waitErr error
}

var _ executor.Watchdog = (*Watchdog)(nil)

// Start starts the watchdog process, argv being the command that runs Main
// (such as [os.Executable(), "runner-watchdog"]), and returns once it is
// reading its stdin. logger receives the watchdog's own log lines.
func Start(argv []string, logger hclog.Logger) (*Watchdog, error) {
	if len(argv) == 0 {
		return nil, errors.New("watchdog: no command")
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	logR, logW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:   argv[0],
		Args:   argv,
		Stdin:  inR,
		Stdout: nil, // /dev/null: nothing of the runner's stays open in it
		Stderr: logW,
		Env:    watchdogEnv(),
		Dir:    "/",
		// A session of its own: a SIGSTOP or ^C aimed at the runner's
		// process group does not reach it. No Pdeathsig: it must outlive
		// the runner, that is what it is for.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err = cmd.Start()
	inR.Close()
	logW.Close()
	if err != nil {
		inW.Close()
		logR.Close()
		return nil, fmt.Errorf("starting the watchdog: %w", err)
	}
	w := &Watchdog{cmd: cmd, logger: logger.Named("watchdog"), stdin: inW, done: make(chan struct{})}
	go func() {
		w.waitErr = cmd.Wait()
		close(w.done)
	}()

	ready := make(chan struct{})
	go w.readLog(logR, ready)
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-ready:
		w.logger.Debug("started", "pid", cmd.Process.Pid)
		return w, nil
	case <-w.done:
		inW.Close()
		return nil, fmt.Errorf("the watchdog (%s) exited at once: %v", strings.Join(argv, " "), w.waitErr)
	case <-t.C:
		_ = cmd.Process.Kill()
		inW.Close()
		return nil, errors.New("the watchdog did not start within 30s")
	}
}

// watchdogEnv is the runner's environment without a job's marker: the
// process sweep must never take the watchdog for a job's process.
func watchdogEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OUTPOST_JOB_ID=") {
			env = append(env, kv)
		}
	}
	return env
}

// readLog turns the watchdog's stderr into log entries until it closes.
func (w *Watchdog) readLog(r *os.File, ready chan struct{}) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		level, text, _ := strings.Cut(sc.Text(), ": ")
		switch level {
		case "ready":
			if ready != nil {
				close(ready)
				ready = nil
			}
		case "warn":
			w.logger.Warn(text)
		case "error":
			w.logger.Error(text)
		default:
			w.logger.Info(text)
		}
	}
}

// Pid is the watchdog process's id.
func (w *Watchdog) Pid() int { return w.cmd.Process.Pid }

// Done is closed when the watchdog process has exited (after Close, or
// because it died: then the runner's jobs are unguarded).
func (w *Watchdog) Done() <-chan struct{} { return w.done }

// Watch registers a job container, or replaces its description.
func (w *Watchdog) Watch(c executor.Container) error { return w.send(encodeWatch(c)) }

// Forget drops a job container.
func (w *Watchdog) Forget(key string) error { return w.send("forget " + escape(key)) }

// SetDeadline sets the time by which the runner must move the deadline
// again, or the watchdog kills every registered container; the zero time
// clears it. t is a wall-clock reading (time.Now plus the lease period);
// what counts is how far ahead it is now, which becomes a CLOCK_BOOTTIME
// instant, the clock the watchdog waits on, so that both processes agree
// and time the host spends suspended counts.
func (w *Watchdog) SetDeadline(t time.Time) error {
	if t.IsZero() {
		return w.send("deadline 0")
	}
	at := max(bootNow()+int64(time.Until(t)), 1)
	return w.send("deadline " + strconv.FormatInt(at, 10))
}

// Close shuts the watchdog down in order: it exits without killing
// anything. It waits (a few seconds at most) for the process to exit.
func (w *Watchdog) Close() error {
	err := w.send("close")
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		w.stdin.Close()
	}
	w.mu.Unlock()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
		_ = w.cmd.Process.Kill()
		<-w.done
	}
	if errors.Is(err, errClosed) {
		err = nil
	}
	return err
}

var errClosed = errors.New("watchdog: closed")

func (w *Watchdog) send(line string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errClosed
	}
	select {
	case <-w.done:
		return fmt.Errorf("watchdog: the process has exited (%v)", w.waitErr)
	default:
	}
	_ = w.stdin.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := w.stdin.WriteString(line + "\n"); err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	return nil
}
