package agent

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

// gossipTransport is memberlist's UDP and TCP plumbing with one change:
// memberlist's own transport allocates a fresh 64 KiB buffer for every
// packet it receives, however small. Probes and acks are a few hundred
// bytes, arriving several times a second from every member, so an idle
// runner in an eight-member pool made about 0.7 MB of garbage a second,
// collected every second and a half, and its heap (and RSS) cycled by a
// megabyte and a half. This transport reads into one buffer and hands on
// a copy of exactly the bytes received; memberlist may keep that copy.
type gossipTransport struct {
	logger  hclog.Logger
	tcp     *net.TCPListener
	udp     *net.UDPConn
	packets chan *memberlist.Packet
	streams chan net.Conn

	// done is closed by Shutdown. Readers also wait on it when handing
	// memberlist a packet or stream, so a transport whose memberlist
	// never started reading (Create failed) still shuts down.
	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*gossipTransport)(nil)

// maxGossipPacket is the largest UDP payload memberlist sends.
const maxGossipPacket = 65536

// gossipRecvBuffer is the socket receive buffer asked for, so a burst of
// packets is not dropped while the reader is busy; the kernel may grant
// less.
const gossipRecvBuffer = 2 << 20

// newGossipTransport listens on bind:port, TCP and UDP on the same port
// (port 0 picks a free one for both).
func newGossipTransport(bind string, port int, logger hclog.Logger) (*gossipTransport, error) {
	ip := net.ParseIP(bind)
	if ip == nil {
		return nil, fmt.Errorf("gossip bind address %q is not an IP address", bind)
	}
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: port})
	if err != nil {
		return nil, fmt.Errorf("gossip TCP listener: %w", err)
	}
	if port == 0 {
		port = tcp.Addr().(*net.TCPAddr).Port
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port})
	if err != nil {
		_ = tcp.Close()
		return nil, fmt.Errorf("gossip UDP listener: %w", err)
	}
	for size := gossipRecvBuffer; size > 0; size /= 2 {
		if udp.SetReadBuffer(size) == nil {
			break
		}
	}
	t := &gossipTransport{
		logger:  logger,
		tcp:     tcp,
		udp:     udp,
		packets: make(chan *memberlist.Packet),
		streams: make(chan net.Conn),
		done:    make(chan struct{}),
	}
	t.wg.Add(2)
	go t.acceptStreams()
	go t.readPackets()
	return t, nil
}

// port is the port both listeners are bound to.
func (t *gossipTransport) port() int { return t.tcp.Addr().(*net.TCPAddr).Port }

// FinalAdvertiseAddr is what other members reach this one at: the
// configured address, else the bound one, else (bound to every
// interface) the host's private IP.
func (t *gossipTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		addr := net.ParseIP(ip)
		if addr == nil {
			return nil, 0, fmt.Errorf("gossip advertise address %q is not an IP address", ip)
		}
		if v4 := addr.To4(); v4 != nil {
			addr = v4
		}
		return addr, port, nil
	}
	bound := t.tcp.Addr().(*net.TCPAddr).IP
	if !bound.IsUnspecified() {
		return bound, t.port(), nil
	}
	private, err := sockaddr.GetPrivateIP()
	if err != nil {
		return nil, 0, fmt.Errorf("gossip: finding a private IP to advertise: %w", err)
	}
	if private == "" {
		return nil, 0, errors.New("gossip: no private IP address found; set an advertise address")
	}
	return net.ParseIP(private), t.port(), nil
}

func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *gossipTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	to, err := net.ResolveUDPAddr("udp", a.Addr)
	if err != nil {
		return time.Time{}, err
	}
	_, err = t.udp.WriteTo(b, to)
	return time.Now(), err
}

func (t *gossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *gossipTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", a.Addr)
}

func (t *gossipTransport) StreamCh() <-chan net.Conn { return t.streams }

// Shutdown closes both listeners and waits for their readers.
func (t *gossipTransport) Shutdown() error {
	t.stopOnce.Do(func() {
		close(t.done)
		_ = t.tcp.Close()
		_ = t.udp.Close()
	})
	t.wg.Wait()
	return nil
}

func (t *gossipTransport) closed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

func (t *gossipTransport) acceptStreams() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		conn, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.closed() {
				return
			}
			// Out of file descriptors, say: back off instead of spinning.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.logger.Error("accepting a gossip stream", "error", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		select {
		case t.streams <- conn:
		case <-t.done:
			_ = conn.Close()
			return
		}
	}
}

func (t *gossipTransport) readPackets() {
	defer t.wg.Done()
	buf := make([]byte, maxGossipPacket)
	for {
		n, from, err := t.udp.ReadFrom(buf)
		now := time.Now()
		if err != nil {
			if t.closed() {
				return
			}
			t.logger.Error("reading a gossip packet", "error", err)
			continue
		}
		if n == 0 {
			continue
		}
		p := &memberlist.Packet{Buf: append([]byte(nil), buf[:n]...), From: from, Timestamp: now}
		select {
		case t.packets <- p:
		case <-t.done:
			return
		}
	}
}
