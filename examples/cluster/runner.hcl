# A runner agent for the loopback cluster of server1.hcl .. server3.hcl:
#   outpost runner agent -config examples/cluster/runner.hcl
# It connects out to the servers (any of them will do) and waits to be
# adopted: outpost runner adopt -address 127.0.0.1:1801 \
#   -ca-cert /tmp/outpost-cluster/tls/outpost-agent-ca.pem <id> (with a token
# that has runner admin, e.g. the management token in OUTPOST_TOKEN).
# Gossip is encrypted outside -dev: make one key with `outpost operator
# keygen` and export it as OUTPOST_ENCRYPT in the shell of every agent.
data_dir  = "/tmp/outpost-cluster/r1"
bind_addr = "127.0.0.1"

runner {
  servers  = ["127.0.0.1:1801", "127.0.0.1:1802", "127.0.0.1:1803"]
  labels   = { env = "prod", os = "linux" }
  capacity = 2
}

tls {
  ca_file   = "/tmp/outpost-cluster/tls/outpost-agent-ca.pem"
  cert_file = "/tmp/outpost-cluster/tls/outpost-runner-0.pem"
  key_file  = "/tmp/outpost-cluster/tls/outpost-runner-0-key.pem"
}
