// Command dbtgen writes synthetic dbt projects and manifests (see package
// internal/projgen).
//
//	go run ./internal/cmd/dbtgen -models 200 -out /tmp/gen        # a dbt project
//	go run ./internal/cmd/dbtgen -models 10000 -manifest m.json   # a manifest.json
//
// Both may be given at once; they describe the same DAG.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/dbtorch/dbtorch/internal/projgen"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "dbtgen:", err)
		os.Exit(2)
	}
}

// run parses args and writes what they ask for; usage goes to stderr.
func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("dbtgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	models := fs.Int("models", 100, "number of models")
	seed := fs.Int64("seed", 1, "random seed (same seed, same output)")
	name := fs.String("name", "", "dbt project name (default gen)")
	out := fs.String("out", "", "directory to write a dbt project into")
	manifest := fs.String("manifest", "", "file to write a synthetic manifest.json to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *out == "" && *manifest == "" {
		fs.Usage()
		return errors.New("give -out DIR, -manifest FILE or both")
	}
	if *out != "" {
		if err := projgen.Write(*out, projgen.Options{Models: *models, Seed: *seed, Name: *name}); err != nil {
			return err
		}
	}
	if *manifest != "" {
		return writeManifest(*manifest, projgen.ManifestOptions{Models: *models, Seed: *seed, Name: *name})
	}
	return nil
}

// writeManifest writes the synthetic manifest to path.
func writeManifest(path string, opts projgen.ManifestOptions) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	if err := projgen.WriteManifest(w, opts); err != nil {
		return err
	}
	return w.Flush()
}
