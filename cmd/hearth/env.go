package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// envPrefix starts the environment variable of each flag of hearth serve.
const envPrefix = "HEARTH_"

// envName is the environment variable that sets the flag named name:
// HEARTH_ and the name in upper case, '-' as '_' (--kv-budget:
// HEARTH_KV_BUDGET, --api-key-file: HEARTH_API_KEY_FILE).
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// documentEnv adds "(env HEARTH_NAME)" to the usage of every flag of fs
// that does not already name its variable, so --help lists them all.
func documentEnv(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if v := envName(f.Name); !strings.Contains(f.Usage, v) {
			f.Usage += " (env " + v + ")"
		}
	})
}

// applyEnv sets every flag of fs that the command line did not set from
// its environment variable (envName), when that is set and not empty:
// the command line wins over the environment, which wins over the
// default. Values are parsed as on the command line (a list flag takes
// commas: HEARTH_PRELOAD=a,b; a boolean true or false). getenv is
// os.Getenv but in tests.
func applyEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		name := envName(f.Name)
		v := getenv(name)
		if v == "" {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = usageError{fmt.Sprintf("%s=%q: %v", name, v, e)}
		}
	})
	return err
}
