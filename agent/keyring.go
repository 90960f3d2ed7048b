package agent

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/hashicorp/memberlist"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	rpcserver "github.com/outpost-run/outpost/rpc/server"
)

// The gossip keyring (website/gossip.md): the cluster's keys and its
// primary live in the Raft state (GossipKeyringType). Every server applies
// them to its memberlist keyring as the entry applies; runners get them
// over their stream. Both keep the current keyring in their data dir, so
// a restart after a rotation still speaks the current key whatever
// -encrypt says.

// keyringFile is where an agent keeps the gossip keyring it last applied.
const keyringFile = "gossip-keyring.json"

type savedKeyring struct {
	Keys    []string `json:"keys"`
	Primary string   `json:"primary"`
}

// KeyFingerprint names a key in gossip metadata and listings without
// giving it away: the first 8 hex digits of its SHA-256.
func KeyFingerprint(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:4])
}

// decodeKeys turns base64 keys into memberlist's, primary first.
func decodeKeys(keys []string, primary string) ([][]byte, error) {
	ordered := append([]string{primary}, slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return k == primary })...)
	var out [][]byte
	for _, k := range ordered {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			return nil, fmt.Errorf("gossip: key is not base64: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}

// loadKeyring reads the keyring saved in dir; ok is false when there is
// none (a first start, or an in-memory agent).
func loadKeyring(dir string) (k savedKeyring, ok bool, err error) {
	if dir == "" {
		return k, false, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, keyringFile))
	if errors.Is(err, fs.ErrNotExist) {
		return k, false, nil
	}
	if err != nil {
		return k, false, fmt.Errorf("gossip: read keyring: %w", err)
	}
	if err := json.Unmarshal(b, &k); err != nil || k.Primary == "" || !slices.Contains(k.Keys, k.Primary) {
		return k, false, fmt.Errorf("gossip: %s is damaged; remove it to start with -encrypt's key", filepath.Join(dir, keyringFile))
	}
	return k, true, nil
}

// saveKeyring writes the keyring to dir (0600: the keys are secrets).
func saveKeyring(dir string, keys []string, primary string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("gossip: keyring dir: %w", err)
	}
	b, _ := json.Marshal(savedKeyring{Keys: keys, Primary: primary})
	path := filepath.Join(dir, keyringFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("gossip: write keyring: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("gossip: write keyring: %w", err)
	}
	return nil
}

// newKeyring builds the memberlist keyring an agent starts with: the one
// saved in dataDir if there is one, else -encrypt's key alone; nil when
// gossip is not encrypted (-dev without -encrypt).
func newKeyring(dataDir, key string) (*memberlist.Keyring, []string, error) {
	keys, primary := []string{key}, key
	if saved, ok, err := loadKeyring(dataDir); err != nil {
		return nil, nil, err
	} else if ok {
		keys, primary = saved.Keys, saved.Primary
	}
	if primary == "" {
		return nil, nil, nil
	}
	raw, err := decodeKeys(keys, primary)
	if err != nil {
		return nil, nil, err
	}
	kr, err := memberlist.NewKeyring(raw[1:], raw[0])
	if err != nil {
		return nil, nil, fmt.Errorf("gossip: %w", err)
	}
	return kr, keys, nil
}

// SetKeyring makes the member's keyring exactly keys with primary as the
// key it encrypts with: new keys first, then the primary, then the old
// ones go; then it tells the pool which keys it holds (metadata).
func (g *Gossip) SetKeyring(keys []string, primary string) error {
	if g.keyring == nil {
		return errors.New("gossip: this agent's gossip is not encrypted (started without -encrypt); restart it with the cluster's key")
	}
	raw, err := decodeKeys(keys, primary)
	if err != nil {
		return err
	}
	for _, k := range raw {
		if err := g.keyring.AddKey(k); err != nil {
			return fmt.Errorf("gossip: install key: %w", err)
		}
	}
	if err := g.keyring.UseKey(raw[0]); err != nil {
		return fmt.Errorf("gossip: use key: %w", err)
	}
	for _, have := range g.keyring.GetKeys() {
		if !slices.ContainsFunc(raw, func(k []byte) bool { return string(k) == string(have) }) {
			if err := g.keyring.RemoveKey(have); err != nil {
				return fmt.Errorf("gossip: remove key: %w", err)
			}
		}
	}
	g.mu.Lock()
	g.meta.Keys = fingerprints(keys)
	leaving := g.meta.Leaving
	g.mu.Unlock()
	if !leaving {
		// Published in the background: UpdateNode waits for the
		// broadcast to go out, and the callers (the state watcher, the
		// runner's stream) must not wait on gossip.
		go func() {
			if err := g.list.UpdateNode(5 * time.Second); err != nil {
				g.logger.Warn("publishing metadata", "error", err)
			}
		}()
	}
	return nil
}

func fingerprints(keys []string) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, KeyFingerprint(k))
	}
	slices.Sort(out)
	return out
}

// watchKeyring applies the cluster keyring to this server's gossip each
// time it changes in the state, and saves it; on the leader, a state with
// no keyring yet gets this server's own key (see seedKeyring).
func (s *Server) watchKeyring() {
	defer s.wg.Done()
	ctx, cancel := s.untilShutdown()
	defer cancel()
	var applied *pb.GossipKeyring
	for {
		ws := memdb.NewWatchSet()
		k := s.State().GossipKeyring(ws)
		if k != nil && (applied == nil || !proto.Equal(k, applied)) {
			if err := saveKeyring(s.cfg.DataDir, k.Keys, k.Primary); err != nil {
				s.logger.Error("cannot save the gossip keyring", "error", err)
			} else if err := s.gossip.SetKeyring(k.Keys, k.Primary); err != nil {
				s.logger.Error("cannot apply the cluster's gossip keyring", "error", err)
			} else {
				s.logger.Info("gossip keyring applied", "keys", len(k.Keys), "primary", KeyFingerprint(k.Primary))
			}
			applied = k
		}
		if err := ws.WatchCtx(ctx); err != nil {
			return
		}
	}
}

// untilShutdown is a context that ends when the server shuts down.
func (s *Server) untilShutdown() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-s.shutdownCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// seedKeyring records this server's keyring in a state that has none: a
// cluster started before keyrings, or a new one. Called by the leader.
func (s *Server) seedKeyring(ctx context.Context) {
	if s.State().GossipKeyring(nil) != nil || s.gossip == nil || s.gossip.keyring == nil {
		return
	}
	k := s.gossip.keyring.GetPrimaryKey()
	if k == nil {
		return
	}
	key := base64.StdEncoding.EncodeToString(k)
	if _, err := s.Apply(ctx, fsm.GossipKeyringType, &pb.GossipKeyringEntry{Op: state.KeyringInit, Key: key}); err != nil {
		s.logger.Warn("recording the gossip keyring", "error", err)
	}
}

// GossipKeyHolders implements rpcserver.Backend: how many live members of
// the pool, by role, report each key.
func (s *Server) GossipKeyHolders(keys []string) ([]rpcserver.KeyHolders, rpcserver.KeyHolders) {
	out := make([]rpcserver.KeyHolders, len(keys))
	var members rpcserver.KeyHolders
	if s.gossip == nil {
		return out, members
	}
	for _, m := range s.gossip.Members() {
		if m.Status != "alive" {
			continue
		}
		server := m.Meta.Role == RoleServer
		if server {
			members.Servers++
		} else if m.Meta.Role == RoleRunner {
			members.Runners++
		} else {
			continue
		}
		for i, k := range keys {
			if slices.Contains(m.Meta.Keys, KeyFingerprint(k)) {
				if server {
					out[i].Servers++
				} else {
					out[i].Runners++
				}
			}
		}
	}
	return out, members
}
