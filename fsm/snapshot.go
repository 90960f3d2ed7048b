package fsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-run/outpost/fsm/state"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Snapshot format: the magic line, then records until EOF. A record is a
// kind byte, a uvarint length and that many bytes of protobuf. New kinds may
// be appended; an unknown kind is an error so nothing is dropped silently.
const snapshotMagic = "outpost-snapshot-v1\n"

type recordKind byte

const (
	recordIndex   recordKind = 1 // body: 8 bytes big-endian, the latest index
	recordJob     recordKind = 2
	recordChunk   recordKind = 3
	recordProject recordKind = 4
	recordRunner  recordKind = 5
	recordToken   recordKind = 6
	recordProfile recordKind = 7
	// Tombstones of deleted jobs (see state.MaxTombstones), one record per
	// entry that deleted jobs, oldest first. Snapshots written before
	// garbage collection have none.
	recordTombstones recordKind = 8

	// ACL (20-29 are reserved for it).
	recordACLPolicy    recordKind = 20
	recordACLToken     recordKind = 21
	recordACLUser      recordKind = 22
	recordACLBootstrap recordKind = 23

	// Runner identity and the gossip keyring (issue 15): 30-39.
	recordRunnerTombstone recordKind = 30
	recordGossipKeyring   recordKind = 31
)

type snapshot struct {
	view  *state.Snapshot
	index uint64
}

// Persist implements raft.FSMSnapshot.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := WriteSnapshot(sink, s.view, s.index); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *snapshot) Release() {}

// WriteSnapshot writes every table of view to w. index is the last index
// applied when the view was taken; it is at least the view's table indexes.
func WriteSnapshot(w io.Writer, view *state.Snapshot, index uint64) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	if _, err := bw.WriteString(snapshotMagic); err != nil {
		return fmt.Errorf("fsm: write snapshot: %w", err)
	}
	var scratch []byte
	put := func(k recordKind, body []byte) error {
		scratch = append(scratch[:0], byte(k))
		scratch = binary.AppendUvarint(scratch, uint64(len(body)))
		if _, err := bw.Write(scratch); err != nil {
			return err
		}
		_, err := bw.Write(body)
		return err
	}
	putMsg := func(k recordKind, m proto.Message) error {
		b, err := proto.Marshal(m)
		if err != nil {
			return err
		}
		return put(k, b)
	}
	err := put(recordIndex, binary.BigEndian.AppendUint64(nil, max(index, view.LatestIndex())))
	for _, p := range view.Projects() {
		if err == nil {
			err = putMsg(recordProject, p)
		}
	}
	for _, r := range view.Runners() {
		if err == nil {
			err = putMsg(recordRunner, r)
		}
	}
	for _, t := range view.RunnerTokens() {
		if err == nil {
			err = putMsg(recordToken, t)
		}
	}
	for _, p := range view.Profiles() {
		if err == nil {
			err = putMsg(recordProfile, p)
		}
	}
	for _, p := range view.ACLPolicies() {
		if err == nil {
			err = putMsg(recordACLPolicy, p)
		}
	}
	for _, t := range view.ACLTokens() {
		if err == nil {
			err = putMsg(recordACLToken, t)
		}
	}
	for _, u := range view.ACLUsers() {
		if err == nil {
			err = putMsg(recordACLUser, u)
		}
	}
	if i := view.ACLBootstrap(); i > 0 && err == nil {
		err = putMsg(recordACLBootstrap, &pb.ACLBootstrapState{Index: i})
	}
	for _, t := range view.RunnerTombstones() {
		if err == nil {
			err = putMsg(recordRunnerTombstone, t)
		}
	}
	if k := view.GossipKeyring(); k != nil && err == nil {
		err = putMsg(recordGossipKeyring, k)
	}
	for _, j := range view.Jobs() {
		if err == nil {
			err = putMsg(recordJob, j)
		}
	}
	if err == nil {
		// A finished job's chunks follow it, so restore finds the job.
		err = view.FinishedJobs(func(job []byte, chunks [][]byte) error {
			if err := put(recordJob, job); err != nil {
				return err
			}
			for _, c := range chunks {
				if err := put(recordChunk, c); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for _, c := range view.LogChunks() {
		if err == nil {
			err = putMsg(recordChunk, c)
		}
	}
	if err == nil {
		err = view.Tombstones(func(t *pb.Tombstones) error { return putMsg(recordTombstones, t) })
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("fsm: write snapshot: %w", err)
	}
	return nil
}

// ReadSnapshot builds a new state store from a snapshot stream.
func ReadSnapshot(r io.Reader) (*state.Store, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return nil, fmt.Errorf("fsm: not an outpost snapshot (bad header)")
	}
	st, err := state.New()
	if err != nil {
		return nil, err
	}
	rs := st.Restore()
	defer rs.Abort()
	var buf []byte
	for {
		kind, err := br.ReadByte()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("fsm: read snapshot: %w", err)
		}
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, fmt.Errorf("fsm: read snapshot record length: %w", err)
		}
		if n > 1<<30 {
			return nil, fmt.Errorf("fsm: snapshot record of %d bytes is too large", n)
		}
		if uint64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, fmt.Errorf("fsm: read snapshot record: %w", err)
		}
		if err := restoreRecord(rs, recordKind(kind), buf); err != nil {
			return nil, err
		}
	}
	rs.Commit()
	return st, nil
}

func restoreRecord(rs *state.Restore, kind recordKind, b []byte) error {
	var err error
	switch kind {
	case recordIndex:
		if len(b) != 8 {
			return fmt.Errorf("fsm: snapshot index record has %d bytes", len(b))
		}
		err = rs.Index(binary.BigEndian.Uint64(b))
	case recordJob:
		m := &pb.Job{}
		if err = proto.Unmarshal(b, m); err == nil {
			err = rs.Job(m, b)
		}
	case recordChunk:
		m := &pb.LogChunk{}
		if err = proto.Unmarshal(b, m); err == nil {
			err = rs.LogChunk(m, b)
		}
	case recordProject:
		m := &pb.Project{}
		if err = proto.Unmarshal(b, m); err == nil {
			err = rs.Project(m)
		}
	case recordRunner:
		m := &pb.Runner{}
		if err = proto.Unmarshal(b, m); err == nil {
			err = rs.Runner(m)
		}
	case recordToken:
		m := &pb.RunnerToken{}
		if err = proto.Unmarshal(b, m); err == nil {
			err = rs.RunnerToken(m)
		}
	case recordProfile:
		m := &pb.RunnerProfile{}
		if err = proto.Unmarshal(b, m); err == nil {
			err = rs.Profile(m)
		}
	case recordTombstones:
		m := &pb.Tombstones{}
		if err = proto.Unmarshal(b, m); err == nil {
			err = rs.Tombstones(m)
		}
	case recordACLPolicy:
		m := &pb.ACLPolicy{}
		if err = proto.Unmarshal(b, m); err == nil {
			err = rs.ACLPolicy(m)
		}
	case recordACLToken:
		m := &pb.ACLToken{}
		if err = proto.Unmarshal(b, m); err == nil {
			err = rs.ACLToken(m)
		}
	case recordACLUser:
		m := &pb.ACLUser{}
		if err = proto.Unmarshal(b, m); err == nil {
			err = rs.ACLUser(m)
		}
	case recordACLBootstrap:
		m := &pb.ACLBootstrapState{}
		if err = proto.Unmarshal(b, m); err == nil {
			err = rs.ACLBootstrap(m)
		}
	case recordRunnerTombstone:
		m := &pb.RunnerTombstone{}
		if err = proto.Unmarshal(b, m); err == nil {
			err = rs.RunnerTombstone(m)
		}
	case recordGossipKeyring:
		m := &pb.GossipKeyring{}
		if err = proto.Unmarshal(b, m); err == nil {
			err = rs.GossipKeyring(m)
		}
	default:
		return fmt.Errorf("fsm: unknown snapshot record kind %d", kind)
	}
	if err != nil {
		return fmt.Errorf("fsm: restore record kind %d: %w", kind, err)
	}
	return nil
}
