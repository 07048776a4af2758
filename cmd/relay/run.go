package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/chatrelay/chatrelay/relay/sched"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runEnv(ctx, args, stdout, stderr, os.LookupEnv)
}

// runEnv is run with the environment read through env (RELAY_*).
func runEnv(ctx context.Context, args []string, stdout, stderr io.Writer, env envFunc) int {
	if len(args) > 0 {
		switch args[0] {
		case "config":
			return runConfig(args[1:], stdout, stderr, env)
		case "version":
			fmt.Fprintf(stdout, "relay %s (%s)\n", version, runtime.Version())
			return 0
		case "admin":
			return runAdmin(args[1:], stdout, stderr)
		case "health":
			return runHealth(args[1:], stdout, stderr)
		}
	}
	c, err := loadConfig(flag.NewFlagSet("relay", flag.ContinueOnError), args, stderr, env)
	if errors.Is(err, errHelp) {
		return 0
	}
	if err != nil {
		printErr(stderr, "relay: ", err)
		return 2
	}
	log, level := newLeveledLogger(c.opts, zapcore.AddSync(stderr))
	defer log.Sync()
	if tuneProcs {
		procs, adjusted := adjustProcs(c.opts.Readers, os.LookupEnv)
		log.Info("go runtime", zap.Int("gomaxprocs", procs), zap.Int("cpus", runtime.NumCPU()), zap.Bool("from_environment", !adjusted), zap.String("sched", c.opts.Sched))
		if _, err := sched.Set(c.opts.Sched); err != nil {
			// Not fatal: the relay works in any policy (a container's
			// seccomp profile may refuse sched_setattr).
			log.Warn("scheduling policy not set on every thread", zap.String("sched", c.opts.Sched), zap.Error(err))
		}
	}
	if c.file != "" {
		log.Info("config file read", zap.String("file", c.file))
	}
	// SIGHUP re-reads the config file, the environment and the same flags.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	rl := &reloader{signals: hup, level: level, current: c, load: func() (*config, error) {
		return loadConfig(flag.NewFlagSet("relay", flag.ContinueOnError), args, io.Discard, env)
	}}
	if err := serveReloading(ctx, c.opts, log, nil, rl); err != nil {
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return 1
	}
	return 0
}
