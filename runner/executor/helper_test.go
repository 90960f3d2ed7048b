package executor

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// helperFlag makes the test binary a step program (see TestMain): its
// arguments say what to do, in order.
const helperFlag = "-outpost-helper"

// helperCommand is a step Command that runs the test binary as a helper.
func helperCommand(args ...string) []string {
	return append([]string{os.Args[0], helperFlag}, args...)
}

// helperMain does what args say:
//
//	alloc=N   allocate N bytes and touch every page
//	burn=D    use D of CPU time
//	leave=NAME:CONTAINMENT
//	          be a runner that dies with a job running: make a host NAME,
//	          start a job process into a container of its, print the
//	          process's pid and the container's cgroups, and exit without
//	          cleaning up
func helperMain(args []string) int {
	var keep [][]byte
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "alloc":
			n, err := strconv.Atoi(v)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			b := make([]byte, n)
			for i := 0; i < n; i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
		case "leave":
			name, c, _ := strings.Cut(v, ":")
			return leaveJob(name, Containment(c))
		case "burn":
			d, err := time.ParseDuration(v)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
			x := 0
			for cpuTime() < d {
				for i := range 1_000_000 {
					x += i
				}
			}
			runtime.KeepAlive(x)
		default:
			fmt.Fprintln(os.Stderr, "unknown helper action", a)
			return 2
		}
	}
	runtime.KeepAlive(keep)
	fmt.Println("helper done")
	return 0
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func leaveJob(name string, c Containment) int {
	h, err := NewHost(HostOptions{Name: name, Containment: c})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctr, err := h.contain("stale-job", "j-stale", Limits{}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var pid int
	runProcess(context.Background(), procSpec{
		path: shellPath, args: []string{shellPath, "-c", "setsid sleep 1000 >/dev/null 2>&1 & echo $!"},
		env: testEnv, emit: func(_ Stream, l string) { pid, _ = strconv.Atoi(l) },
		abortTimeout: func() time.Duration { return time.Second }, onSignal: func(syscall.Signal, time.Duration) {},
		attr: (*Isolation)(nil).sysProcAttr(), start: ctr.start,
	})
	fmt.Printf("pid=%d\n", pid)
	for _, d := range ctr.describe().Cgroups {
		fmt.Printf("cgroup=%s\n", d)
	}
	return 0
}
