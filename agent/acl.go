package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-run/outpost/fsm"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	rpcserver "github.com/outpost-run/outpost/rpc/server"
)

// ACL implements rpcserver.Backend.
func (s *Server) ACL() rpcserver.ACLSettings {
	return rpcserver.ACLSettings{Enabled: s.cfg.ACLEnabled, LoginTokenTTL: s.cfg.LoginTokenTTL}
}

// aclBootstrapResetFile is where an operator writes the reset index that
// a refused bootstrap names, to allow one more (website/acl.md).
const aclBootstrapResetFile = "acl-bootstrap-reset"

// ACLBootstrapReset implements rpcserver.Backend.
func (s *Server) ACLBootstrapReset() (uint64, error) {
	if s.cfg.DataDir == "" {
		return 0, nil
	}
	path := filepath.Join(s.cfg.DataDir, aclBootstrapResetFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s holds %q, not a reset index; write the index the refused bootstrap gave", path, strings.TrimSpace(string(b)))
	}
	return n, nil
}

// ClearACLBootstrapReset implements rpcserver.Backend: a reset file
// allows one bootstrap.
func (s *Server) ClearACLBootstrapReset() {
	path := filepath.Join(s.cfg.DataDir, aclBootstrapResetFile)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.logger.Warn("could not remove the used ACL bootstrap reset file; remove it by hand", "path", path, "error", err)
	}
}

// tokenGCInterval is how often the leader deletes expired ACL tokens.
// They are refused from the moment they expire; this only bounds state.
const tokenGCInterval = 10 * time.Second

// tokenGCLoop deletes expired ACL tokens through the log, as the leader.
func (s *Server) tokenGCLoop(ctx context.Context) {
	t := time.NewTicker(tokenGCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ids := s.State().ExpiredACLTokens(time.Now(), gcBatch)
		if len(ids) == 0 {
			continue
		}
		if _, err := s.Apply(ctx, fsm.ACLTokenDeleteType, &pb.ACLTokenDeleteEntry{AccessorIds: ids}); err != nil {
			if ctx.Err() == nil {
				s.logger.Warn("deleting expired ACL tokens failed; retrying later", "tokens", len(ids), "error", err)
			}
			continue
		}
		s.logger.Debug("deleted expired ACL tokens", "tokens", len(ids))
	}
}
