package project_test

import (
	"fmt"
	"os"

	"github.com/outpost-run/outpost/jobspec/project"
)

func ExampleProject_Resolve() {
	src, err := os.ReadFile("testdata/example.hcl")
	if err != nil {
		panic(err)
	}
	p, err := project.Parse("outpost.hcl", src)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Name, p.JobNames())

	// A required variable is missing: the error points at its declaration.
	_, err = p.Resolve("deploy", nil, "prod")
	fmt.Println(err)

	job, err := p.Resolve("deploy", map[string]string{"image_tag": "v1.2.3", "env": "prod"}, "prod")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(job.Profile, job.Timeout, job.Retry.Attempts)
	for _, s := range job.Steps {
		fmt.Printf("%s: %q env IMAGE=%s\n", s.Name, s.Command, s.Env["IMAGE"])
	}
	// Output:
	// web [build deploy]
	// outpost.hcl:9:1: variable "image_tag" is required: set it with -var image_tag=VALUE
	// prod-deploy 10m0s 2
	// migrate: ["./bin/migrate" "--env" "prod" "--dry-run=false"] env IMAGE=registry.example.com/web:v1.2.3
	// ship: [] env IMAGE=registry.example.com/web:v1.2.3
}
