package state

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// UpsertRunner creates or replaces a runner's record.
func (s *Store) UpsertRunner(index uint64, r *pb.Runner) error {
	txn := s.txn()
	defer txn.Abort()
	r = proto.Clone(r).(*pb.Runner)
	if raw, _ := txn.First(TableRunners, "id", r.Id); raw != nil {
		old := raw.(*pb.Runner)
		r.CreateIndex = old.CreateIndex
		if r.FirstSeen == nil {
			r.FirstSeen = old.FirstSeen
		}
	} else {
		r.CreateIndex = index
	}
	r.ModifyIndex = index
	if err := txn.Insert(TableRunners, r); err != nil {
		return fmt.Errorf("state: insert runner %s: %w", r.Id, err)
	}
	if err := setIndex(txn, TableRunners, index); err != nil {
		return err
	}
	txn.Commit()
	return nil
}

// UpsertProject creates or replaces a stored project.
func (s *Store) UpsertProject(index uint64, p *pb.Project) error {
	txn := s.txn()
	defer txn.Abort()
	p = proto.Clone(p).(*pb.Project)
	if raw, _ := txn.First(TableProjects, "id", p.Name); raw != nil {
		p.CreateIndex = raw.(*pb.Project).CreateIndex
	} else {
		p.CreateIndex = index
	}
	p.ModifyIndex = index
	if err := txn.Insert(TableProjects, p); err != nil {
		return fmt.Errorf("state: insert project %s: %w", p.Name, err)
	}
	if err := setIndex(txn, TableProjects, index); err != nil {
		return err
	}
	txn.Commit()
	return nil
}
