package state

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// UpsertProject creates or replaces a stored project.
func (s *Store) UpsertProject(index uint64, p *pb.Project) error {
	return s.write(index, func(txn *memdb.Txn) error {
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
		return nil
	}, TableProjects)
}

// DeleteProject removes a stored project. Its jobs stay.
func (s *Store) DeleteProject(index uint64, name string) error {
	return s.deleteNamed(index, TableProjects, "project", name)
}
