package state

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
)

// write runs fn in a write transaction and, unless it failed, records
// index as the index of each table it names and commits.
func (s *Store) write(index uint64, fn func(*memdb.Txn) error, tables ...string) error {
	txn := s.txn()
	defer txn.Abort()
	if err := fn(txn); err != nil {
		return err
	}
	for _, t := range tables {
		if err := setIndex(txn, t, index); err != nil {
			return err
		}
	}
	txn.Commit()
	return nil
}

// deleteNamed removes the row of table whose id is name; what names the
// kind of row in the not-found error.
func (s *Store) deleteNamed(index uint64, table, what, name string) error {
	return s.write(index, func(txn *memdb.Txn) error {
		n, err := txn.DeleteAll(table, "id", name)
		if err != nil {
			return fmt.Errorf("state: delete %s: %w", what, err)
		}
		if n == 0 {
			return fmt.Errorf("%s %q: %w", what, name, ErrNotFound)
		}
		return nil
	}, table)
}
