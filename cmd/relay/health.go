package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// healthTimeout bounds one `relay health` check, connection and answer
// together, so a hung relay fails the check instead of hanging the probe.
const healthTimeout = 2 * time.Second

// metricsListenEnv is the environment variable that names the metrics
// address, as the daemon's configuration reads it.
const metricsListenEnv = "RELAY_METRICS_LISTEN"

// runHealth is `relay health [--url URL | --metrics-listen ADDR]`: it GETs
// the relay's /healthz and exits 0 on status 200, 1 with one line on stderr
// otherwise (refused, timed out, other status), 2 on a usage error. The
// address is --url, else --metrics-listen, else $RELAY_METRICS_LISTEN, else
// the daemon's default; a wildcard host (0.0.0.0, [::], empty) is dialled on
// loopback, since that is where a relay listening on all addresses answers
// its own container's or host's probe.
func runHealth(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relay health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rawURL := fs.String("url", "", "`URL` to GET instead of the metrics address's /healthz")
	listen := fs.String("metrics-listen", "", "the relay's --metrics-listen `address` (default $"+metricsListenEnv+", else "+defaultOptions().MetricsListen+")")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: relay health [--url URL | --metrics-listen ADDR]\n\nExits 0 when the relay's /healthz answers 200 within %s, 1 otherwise.\n\n", healthTimeout)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "relay health: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	target := *rawURL
	if target == "" {
		addr := *listen
		if !flagSet(fs, "metrics-listen") {
			if v, ok := os.LookupEnv(metricsListenEnv); ok {
				addr = v
			} else {
				addr = defaultOptions().MetricsListen
			}
		}
		var err error
		if target, err = healthURL(addr); err != nil {
			fmt.Fprintf(stderr, "relay health: %v\n", err)
			return 1
		}
	} else if u, err := url.Parse(target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "relay health: --url %q: want http://HOST:PORT/PATH\n", target)
		return 2
	}
	if err := checkHealth(target); err != nil {
		fmt.Fprintf(stderr, "relay health: %s: %v\n", target, err)
		return 1
	}
	fmt.Fprintf(stdout, "relay health: %s: ok\n", target)
	return 0
}

// flagSet reports whether the flag called name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// healthURL turns a --metrics-listen address into the /healthz URL a local
// probe should GET: a wildcard or empty host becomes loopback of the same
// family. An empty address means metrics (and so health) are disabled.
func healthURL(listen string) (string, error) {
	if listen == "" {
		return "", errors.New("metrics are disabled (--metrics-listen is empty), so there is no /healthz to check")
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("metrics address %q: %v", listen, err)
	}
	if port == "" || port == "0" {
		return "", fmt.Errorf("metrics address %q: needs a fixed port", listen)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}

// checkHealth GETs target once within healthTimeout and returns nil only
// for status 200. Redirects are not followed: /healthz never redirects.
func checkHealth(target string) error {
	c := &http.Client{
		Timeout:       healthTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	resp, err := c.Get(target)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			if ue.Timeout() {
				return fmt.Errorf("no answer within %s", healthTimeout)
			}
			err = ue.Err
		}
		return unwrapOp(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode != http.StatusOK {
		text := strings.TrimSpace(string(body))
		if len(text) > 80 || strings.ContainsAny(text, "\n\r") {
			text = ""
		}
		if text != "" {
			return fmt.Errorf("status %s: %q", resp.Status, text)
		}
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}
