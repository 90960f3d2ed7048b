# Example outpost project: build, test and deploy a web service.
project = "web"

variable "env" {
  default     = "dev"
  description = "target environment (dev, staging, prod)"
}

variable "image_tag" {
  description = "container image tag to deploy; required"
}

variable "replicas" {
  default = 2
}

variable "dry_run" {
  default = false
}

# Every job runs on the Linux runners of its environment unless it says
# otherwise.
runner {
  profile = "${var.env}-linux"
}

job "build" {
  timeout  = "20m"
  priority = 60
  env = {
    CGO_ENABLED = "0"
    GOFLAGS     = "-mod=readonly"
  }

  step "test" {
    command = ["go", "test", "./..."]
    timeout = "10m"
  }

  step "build" {
    command = ["go", "build", "-o", "bin/web", "./cmd/web"]
  }
}

job "deploy" {
  # Deploys go through runners inside the target network.
  runner {
    profile = "${workspace}-deploy"
  }

  timeout       = "10m"
  abort_timeout = "1m"
  priority      = 80
  env = {
    ENVIRONMENT = var.env
    IMAGE       = "registry.example.com/web:${var.image_tag}"
  }

  retry {
    attempts = 2
    delay    = "5s"
    backoff  = 2
  }

  step "migrate" {
    command = ["./bin/migrate", "--env", var.env, "--dry-run=${var.dry_run}"]
  }

  step "ship" {
    script = <<-EOT
      set -eu
      kubectl --context "${var.env}" set image deploy/web web="$IMAGE"
      kubectl --context "${var.env}" scale deploy/web --replicas=${var.replicas}
    EOT
    env = {
      REGION = "eu-west-1"
      JOB_ID = "${project}/${job}"
    }
    timeout = "5m"
  }
}
