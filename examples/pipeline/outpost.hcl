# A fuller project file: variables, a runner profile chosen by workspace,
# environment, priorities, timeouts and retries.
#
#   outpost runner profile set -file examples/profiles/profiles.hcl
#   outpost job run -file examples/pipeline/outpost.hcl -workspace dev build
#   outpost job run -file examples/pipeline/outpost.hcl -local build
project = "pipeline"

variable "version" {
  default     = "1.0.0"
  description = "Version to build and ship"
}

variable "region" {
  default = "eu-west-1"
}

# Every job runs on the profile named after its workspace (dev-linux,
# prod-linux, ...) unless it has a runner block of its own.
runner {
  profile = "${workspace}-linux"
}

job "build" {
  timeout  = "10m"
  priority = 60
  env = {
    VERSION = var.version
  }

  step "compile" {
    command = ["sh", "-c", "echo building $VERSION in $(basename $PWD)"]
  }

  # A variable reaches every step as $OUTPOST_VAR_<NAME> too: quoted by
  # the script, its value never becomes shell code (a -var of $(id) is
  # printed, not run). ${var.version} pasted into the script would be.
  step "package" {
    script = <<-EOT
      out=$(mktemp -d)
      echo "${project}-$OUTPOST_VAR_VERSION" > "$out/NAME"
      echo "packaged $(cat "$out/NAME")"
      rm -rf "$out"
    EOT
  }
}

job "deploy" {
  timeout       = "5m"
  abort_timeout = "10s"
  priority      = 80

  retry {
    attempts = 2
    delay    = "2s"
    backoff  = 2
  }

  step "ship" {
    env = {
      REGION = var.region
    }
    # shellquote() makes a value one shell word, whatever it holds.
    # $${...} is a literal ${...} for the shell, not an HCL interpolation.
    script = "echo shipping ${shellquote(var.version)} to \"$REGION\" for ${workspace}, attempt $${OUTPOST_ATTEMPT:-local}"
  }
}

# Runs in an on_demand sandbox whatever the workspace.
job "inspect" {
  runner {
    profile = "sandbox"
  }

  step "whoami" {
    script = "echo \"uid=$(id -u) user=$USER home=$HOME\"; grep -E 'processes|open files' /proc/self/limits"
  }
}
