package runner

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/outpost-run/outpost/rpc"
)

// Identity is who a runner is: an id and its own secret, made at first
// start and kept in the data dir. The server binds the secret's hash to the
// id at first contact, so no one else can speak as this runner.
type Identity struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
	// Life counts the starts of the runner on this data dir. The servers
	// tell the attempts of a life that is over (the runner restarted, so
	// they are gone) from those of the current one by it, whatever order
	// a slow network delivers registrations in.
	Life uint64 `json:"life"`
}

const identityFile = "identity.json"

// LoadIdentity reads the identity in dir, creating one if there is none,
// and counts this start as a new life. An empty dir gives a new identity
// that lives only in memory.
func LoadIdentity(dir, wantID string) (*Identity, error) {
	if dir == "" {
		return newIdentity(wantID), nil
	}
	path := filepath.Join(dir, identityFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		var id Identity
		if err := json.Unmarshal(b, &id); err != nil || id.ID == "" || id.Secret == "" {
			return nil, fmt.Errorf("runner: %s is damaged; remove it to start as a new runner (and `outpost runner forget` the old one)", path)
		}
		if wantID != "" && wantID != id.ID {
			return nil, fmt.Errorf("runner: %s belongs to runner %s, not %s", path, id.ID, wantID)
		}
		id.Life++
		if err := saveIdentity(dir, &id); err != nil {
			return nil, err
		}
		return &id, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("runner: read identity: %w", err)
	}
	id := newIdentity(wantID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("runner: data dir: %w", err)
	}
	if err := saveIdentity(dir, id); err != nil {
		return nil, err
	}
	return id, nil
}

// saveIdentity writes the identity durably: a life counted must never be
// counted again after a crash of the host.
func saveIdentity(dir string, id *Identity) error {
	path := filepath.Join(dir, identityFile)
	b, _ := json.Marshal(id)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("runner: write identity: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("runner: write identity: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func newIdentity(id string) *Identity {
	if id == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		id = "r-" + hex.EncodeToString(b[:])
	}
	return &Identity{ID: id, Secret: rpc.NewSecret("rs_"), Life: 1}
}
