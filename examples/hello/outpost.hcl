# An example project: `make dev` runs its "hello" job on the dev agent.
project = "hello"

variable "greeting" {
  default     = "Hello"
  description = "How to greet"
}

job "hello" {
  timeout = "1m"

  step "greet" {
    command = ["echo", "${var.greeting} from outpost, workspace ${workspace}"]
  }

  step "where" {
    script = "echo \"running in $(pwd) as $(id -un)\"; uname -sm"
  }
}

job "fail" {
  step "boom" {
    script = "echo about to fail >&2; exit 3"
  }
}

job "sleepy" {
  timeout = "2s"
  step "nap" {
    command = ["sleep", "30"]
  }
}
