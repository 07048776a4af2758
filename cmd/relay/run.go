package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"

	"go.uber.org/zap/zapcore"
)

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Fprintf(stdout, "relay %s (%s)\n", version, runtime.Version())
			return 0
		case "admin":
			return runAdmin(args[1:], stdout, stderr)
		case "health":
			return runHealth(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	o, err := parseFlags(fs, args, stderr)
	if errors.Is(err, errHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return 2
	}
	log := newLogger(o, zapcore.AddSync(stderr))
	defer log.Sync()
	if err := serve(ctx, o, log, nil); err != nil {
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return 1
	}
	return 0
}
