package executor

import "github.com/dbtorch/dbtorch/internal/dbtargv"

// settings are the fields of CoreConfig and WarmConfig that become the
// arguments of every dbt invocation; both executors build their command
// lines from them, so the two cannot drift apart.
type settings struct {
	projectDir, profilesDir, target string
	vars                            map[string]any
	threads                         int
	state, deferState               string
	deferToState, favorState        bool
}

func (c CoreConfig) settings() settings {
	return settings{projectDir: c.ProjectDir, profilesDir: c.ProfilesDir, target: c.Target, vars: c.Vars, threads: c.Threads,
		state: c.State, deferState: c.DeferState, deferToState: c.Defer, favorState: c.FavorState}
}

func (c WarmConfig) settings() settings {
	return settings{projectDir: c.ProjectDir, profilesDir: c.ProfilesDir, target: c.Target, vars: c.Vars, threads: c.Threads,
		state: c.State, deferState: c.DeferState, deferToState: c.Defer, favorState: c.FavorState}
}

// options returns the dbtargv options of req: its command and nodes, the
// request's vars merged over the executor's, and the executor's target,
// threads and state. `dbt test` runs without filling the relation cache
// (see dbtargv.Options.TestsWithoutRelationCache).
func (s settings) options(req Request) dbtargv.Options {
	return dbtargv.Options{
		Command: string(req.Command), Nodes: req.Nodes, FullRefresh: req.FullRefresh,
		Vars: dbtargv.MergeVars(s.vars, req.Vars), Target: s.target, Threads: s.threads,
		State: s.state, Defer: s.deferToState, DeferState: s.deferState, FavorState: s.favorState,
		TestsWithoutRelationCache: true,
	}
}

// dirArgs returns the project, profiles, target and log path flags of an
// invocation writing into targetDir and logDir, with --no-use-colors and
// --cache-selected-only (dbt's relation cache is filled for the schemas
// of the invocation's nodes only, not for every schema of the project).
func (s settings) dirArgs(targetDir, logDir string) []string {
	args := []string{"--project-dir", s.projectDir, "--target-path", targetDir, "--log-path", logDir,
		"--no-use-colors", "--cache-selected-only"}
	if s.profilesDir != "" {
		args = append(args, "--profiles-dir", s.profilesDir)
	}
	return args
}
