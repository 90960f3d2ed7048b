package agent

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/outpost-run/outpost/internal/testwait"
)

// Packets handed to memberlist must stay intact after later packets
// arrive: the transport reads every packet into one buffer.
func TestGossipTransportPacketsAreCopies(t *testing.T) {
	tr, err := newGossipTransport("127.0.0.1", 0, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown()

	to := net.JoinHostPort("127.0.0.1", fmt.Sprint(tr.port()))
	sent := [][]byte{bytes.Repeat([]byte("a"), 1400), []byte("bb"), bytes.Repeat([]byte("c"), 300)}
	for _, b := range sent {
		if _, err := tr.WriteTo(b, to); err != nil {
			t.Fatal(err)
		}
	}
	var got [][]byte
	for range sent {
		select {
		case p := <-tr.PacketCh():
			got = append(got, p.Buf)
		case <-time.After(10 * time.Second):
			t.Fatalf("received %d of %d packets", len(got), len(sent))
		}
	}
	for i := range sent {
		if !bytes.Equal(got[i], sent[i]) {
			t.Errorf("packet %d: got %d bytes %.10q…, want %d bytes %.10q…", i, len(got[i]), got[i], len(sent[i]), sent[i])
		}
		if cap(got[i]) >= maxGossipPacket {
			t.Errorf("packet %d holds a %d-byte buffer for %d bytes", i, cap(got[i]), len(got[i]))
		}
	}
}

func TestGossipTransportStreamsAndAdvertise(t *testing.T) {
	tr, err := newGossipTransport("127.0.0.1", 0, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown()

	ip, port, err := tr.FinalAdvertiseAddr("", 0)
	if err != nil || !ip.Equal(net.ParseIP("127.0.0.1")) || port != tr.port() {
		t.Fatalf("advertise without an address: %v:%d, %v; want the bound 127.0.0.1:%d", ip, port, err, tr.port())
	}
	ip, port, err = tr.FinalAdvertiseAddr("10.1.2.3", 7702)
	if err != nil || !ip.Equal(net.ParseIP("10.1.2.3")) || port != 7702 {
		t.Fatalf("advertise 10.1.2.3:7702: got %v:%d, %v", ip, port, err)
	}
	if _, _, err := tr.FinalAdvertiseAddr("not-an-ip", 1); err == nil {
		t.Fatal("advertise not-an-ip: no error")
	}

	c, err := tr.DialTimeout(net.JoinHostPort("127.0.0.1", fmt.Sprint(tr.port())), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case s := <-tr.StreamCh():
		s.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("no stream accepted")
	}
}

// Two pool members over the transport see each other, and a member
// that shuts down leaves no listener behind.
func TestGossipOverTransport(t *testing.T) {
	start := func(name string) *Gossip {
		g, err := StartGossip(GossipConfig{Name: name, BindAddr: "127.0.0.1", Fast: true, Logger: hclog.NewNullLogger(),
			Meta: NodeMeta{Role: RoleRunner}})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	a, b := start("a"), start("b")
	defer a.Shutdown()
	if _, err := b.Join([]string{a.list.LocalNode().Address()}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 20*time.Second, func() (bool, error) {
		na, nb := a.Alive(), b.Alive()
		return na == 2 && nb == 2, fmt.Errorf("members alive: a sees %d, b sees %d; want 2", na, nb)
	})
	addr := b.list.LocalNode().Address()
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("after shutdown, %s is still taken: %v", addr, err)
	}
	ln.Close()
}

// A transport nobody reads from (memberlist.Create failed) still shuts
// down, with a packet and a stream waiting to be handed on.
func TestGossipTransportShutdownUnread(t *testing.T) {
	tr, err := newGossipTransport("127.0.0.1", 0, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	to := net.JoinHostPort("127.0.0.1", fmt.Sprint(tr.port()))
	if _, err := tr.WriteTo([]byte("ping"), to); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan struct{})
	go func() { _ = tr.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown hung on an unread packet or stream")
	}
	_ = tr.Shutdown() // twice is fine
}
