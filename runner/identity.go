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
}

const identityFile = "identity.json"

// LoadIdentity reads the identity in dir, creating one if there is none.
// An empty dir gives a new identity that lives only in memory.
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
		return &id, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("runner: read identity: %w", err)
	}
	id := newIdentity(wantID)
	b, _ = json.Marshal(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("runner: data dir: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return nil, fmt.Errorf("runner: write identity: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("runner: write identity: %w", err)
	}
	return id, nil
}

func newIdentity(id string) *Identity {
	if id == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		id = "r-" + hex.EncodeToString(b[:])
	}
	return &Identity{ID: id, Secret: rpc.NewSecret("rs_")}
}
