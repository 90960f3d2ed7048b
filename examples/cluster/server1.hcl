# Server 1 of a 3-server cluster on one machine (loopback), for trying
# failover. Make the certificates once (website/security.md):
#   mkdir -p /tmp/outpost-cluster/tls && cd /tmp/outpost-cluster/tls
#   outpost tls ca create && outpost tls cert create -server
#   outpost tls cert create -runner && outpost tls cert create -client
# Start all three, each in its own shell:
#   outpost agent -config examples/cluster/server1.hcl
# On real machines, give each server its own address in bind_addr and keep
# the same ports everywhere. ACLs are on: once the three agree on a leader,
#   outpost acl bootstrap -address 127.0.0.1:1801
# prints the management token; export OUTPOST_TOKEN=<its secret>.
# Gossip is encrypted outside -dev: make one key with `outpost operator
# keygen` and export it as OUTPOST_ENCRYPT in the shell of every agent.
name      = "s1"
data_dir  = "/tmp/outpost-cluster/s1"
bind_addr = "127.0.0.1"
log_level = "info"

server {
  enabled          = true
  bootstrap_expect = 3
  # Every server's gossip address, this one's included: a server that
  # restarts finds the others through any of them.
  retry_join       = ["127.0.0.1:1821", "127.0.0.1:1822", "127.0.0.1:1823"]
  # Loopback is quiet: detect a dead leader fast. Keep the default (5) on
  # real networks.
  raft_multiplier  = 1
}

ports {
  http   = 1801
  raft   = 1811
  gossip = 1821
}

# The three servers on this machine share one server certificate; on
# separate machines give each its own (outpost tls cert create -server).
tls {
  ca_file   = "/tmp/outpost-cluster/tls/outpost-agent-ca.pem"
  cert_file = "/tmp/outpost-cluster/tls/outpost-server-0.pem"
  key_file  = "/tmp/outpost-cluster/tls/outpost-server-0-key.pem"
}
