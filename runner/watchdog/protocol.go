package watchdog

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/outpost-run/outpost/runner/executor"
)

// The wire format, runner → watchdog, one message per line:
//
//	watch KEY [cgroup=PATH]... [group=PGID]... [job=ID]
//	forget KEY
//	deadline NS      CLOCK_BOOTTIME nanoseconds; 0 clears it
//	close            orderly shutdown: exit without killing
//
// Fields are separated by single spaces; in KEY, PATH and ID the bytes
// '%', '=' and everything up to ' ' are written as %XX.
//
// And watchdog → runner, on its stderr: "ready" once it reads its stdin,
// then log lines "LEVEL: text" (LEVEL is info, warn or error).

// message is one decoded line.
type message struct {
	verb      string // watch, forget, deadline, close
	container executor.Container
	key       string
	deadline  int64
}

func encodeWatch(c executor.Container) string {
	var b strings.Builder
	b.WriteString("watch ")
	b.WriteString(escape(c.Key))
	for _, d := range c.Cgroups {
		b.WriteString(" cgroup=" + escape(d))
	}
	for _, g := range c.Groups {
		b.WriteString(" group=" + strconv.Itoa(g))
	}
	if c.JobID != "" {
		b.WriteString(" job=" + escape(c.JobID))
	}
	return b.String()
}

func decode(line string) (message, error) {
	f := strings.Split(line, " ")
	m := message{verb: f[0]}
	switch {
	case m.verb == "close" && len(f) == 1:
		return m, nil
	case m.verb == "forget" && len(f) == 2:
		key, err := unescape(f[1])
		m.key = key
		return m, err
	case m.verb == "deadline" && len(f) == 2:
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || ns < 0 {
			return m, fmt.Errorf("deadline %q", f[1])
		}
		m.deadline = ns
		return m, nil
	case m.verb == "watch" && len(f) >= 2:
		key, err := unescape(f[1])
		if err != nil || key == "" {
			return m, fmt.Errorf("watch: key %q", f[1])
		}
		c := executor.Container{Key: key}
		for _, field := range f[2:] {
			k, v, _ := strings.Cut(field, "=")
			switch k {
			case "cgroup":
				d, err := unescape(v)
				if err != nil || !strings.HasPrefix(d, "/") {
					return m, fmt.Errorf("watch: cgroup %q", v)
				}
				c.Cgroups = append(c.Cgroups, d)
			case "group":
				g, err := strconv.Atoi(v)
				if err != nil || g <= 1 {
					return m, fmt.Errorf("watch: group %q", v)
				}
				c.Groups = append(c.Groups, g)
			case "job":
				if c.JobID, err = unescape(v); err != nil {
					return m, fmt.Errorf("watch: job %q", v)
				}
			default:
				return m, fmt.Errorf("watch: unknown field %q", field)
			}
		}
		m.container = c
		return m, nil
	}
	return m, fmt.Errorf("unknown message %q", line)
}

func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == '%' || c == '=' || c == 0x7f {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func unescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("truncated escape")
		}
		n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", err
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), nil
}
