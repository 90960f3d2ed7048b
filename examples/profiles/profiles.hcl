# Runner profiles for the examples. Store them with:
#   outpost runner profile set -file examples/profiles/profiles.hcl
#
# examples/pipeline/outpost.hcl picks "<workspace>-linux", so
# `-workspace dev` lands on the dev agent's runner (label dev=true) and
# `-workspace prod` on runners started with -label env=prod -label os=linux
# (such as examples/cluster/runner.hcl).

runner_profile "dev-linux" {
  target_labels = { dev = "true" }
  env           = { LOG_LEVEL = "debug" }
}

runner_profile "prod-linux" {
  target_labels = { env = "prod", os = "linux" }
  env           = { LOG_LEVEL = "info" }
}

# A fresh, isolated executor per job: its own session and private
# directory, a clean environment, resource limits, and a user id of the
# job's own when the runner runs as root.
runner_profile "sandbox" {
  target_labels = { dev = "true" }
  mode          = "on_demand"

  limits {
    memory     = "512MiB"
    processes  = 256
    open_files = 1024
    cpu        = "60s"
    file_size  = "100MiB"
  }
}
