package executor

import (
	"maps"
	"slices"
	"strings"
)

// defaultPath is used when a step's environment has no PATH, so that common
// tools still resolve with a deliberately empty BaseEnv.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// mergeEnv layers the job's and the step's variables over base (later layers
// win) and returns the environment list together with its PATH. BaseEnv
// entries keep their order and new names follow sorted, so the result is
// deterministic. Malformed base entries (no '=') are dropped.
func mergeEnv(base []string, layers ...map[string]string) (env []string, path string) {
	var names []string
	values := make(map[string]string, len(base))
	set := func(k, v string) {
		if _, ok := values[k]; !ok {
			names = append(names, k)
		}
		values[k] = v
	}
	for _, kv := range base {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			set(k, v)
		}
	}
	for _, layer := range layers {
		for _, k := range slices.Sorted(maps.Keys(layer)) {
			set(k, layer[k])
		}
	}
	if values["PATH"] == "" {
		set("PATH", defaultPath)
	}

	env = make([]string, len(names))
	for i, k := range names {
		env[i] = k + "=" + values[k]
	}
	return env, values["PATH"]
}
