package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// health runs `relay health ARGS` the way main does.
func health(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"health"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

func TestHealthAgainstRunningRelay(t *testing.T) {
	d := startDaemon(t, testOptions(t))
	addr := d.l.Metrics.String()
	_, port, _ := net.SplitHostPort(addr)

	t.Run("metrics-listen flag", func(t *testing.T) {
		out, errs, code := health(t, "--metrics-listen", addr)
		if code != 0 || !strings.Contains(out, "ok") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and ok", code, out, errs)
		}
	})
	t.Run("wildcard host dials loopback", func(t *testing.T) {
		// The relay listens on 127.0.0.1 only: the check can pass only
		// if 0.0.0.0 was turned into loopback.
		if _, errs, code := health(t, "--metrics-listen", "0.0.0.0:"+port); code != 0 {
			t.Fatalf("exit %d (%s), want 0", code, errs)
		}
		if _, errs, code := health(t, "--metrics-listen", ":"+port); code != 0 {
			t.Fatalf("empty host: exit %d (%s), want 0", code, errs)
		}
	})
	t.Run("environment", func(t *testing.T) {
		t.Setenv(metricsListenEnv, "0.0.0.0:"+port)
		if _, errs, code := health(t); code != 0 {
			t.Fatalf("exit %d (%s), want 0", code, errs)
		}
	})
	t.Run("url", func(t *testing.T) {
		if _, errs, code := health(t, "--url", "http://"+addr+"/healthz"); code != 0 {
			t.Fatalf("exit %d (%s), want 0", code, errs)
		}
		// /metrics answers 200 too, but a path that does not exist is a
		// failed check.
		_, errs, code := health(t, "--url", "http://"+addr+"/nothing")
		if code != 1 || !strings.Contains(errs, "404") {
			t.Fatalf("exit %d, stderr %q; want 1 naming 404", code, errs)
		}
	})

	// Once the relay has stopped, the same check fails.
	d.stop(t)
	_, errs, code := health(t, "--metrics-listen", addr)
	if code != 1 || !strings.Contains(errs, "refused") {
		t.Fatalf("after stop: exit %d, stderr %q; want 1 and connection refused", code, errs)
	}
}

// freeLoopbackPort returns a loopback TCP address nothing listens on now.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestHealthClosedPort(t *testing.T) {
	addr := freeLoopbackPort(t)
	out, errs, code := health(t, "--metrics-listen", addr)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if out != "" || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "relay health: http://"+addr+"/healthz: ") || !strings.Contains(errs, "connection refused") {
		t.Fatalf("stdout %q, stderr %q: want one line naming the URL and the refusal", out, errs)
	}
	// The environment is read when no flag is given; the flag wins.
	t.Setenv(metricsListenEnv, addr)
	if _, errs, code := health(t); code != 1 || !strings.Contains(errs, addr) {
		t.Fatalf("from env: exit %d, stderr %q; want 1 naming %s", code, errs, addr)
	}
}

func TestHealthUnhealthyAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "draining", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	_, errs, code := health(t, "--url", srv.URL+"/healthz")
	if code != 1 || !strings.Contains(errs, "503") || !strings.Contains(errs, "draining") {
		t.Fatalf("exit %d, stderr %q; want 1 naming 503 and the body", code, errs)
	}
}

func TestHealthTimesOut(t *testing.T) {
	// A listener that accepts and never answers: a hung relay.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer func() { ln.Close(); <-done }()
	go func() {
		defer close(done)
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	start := time.Now()
	_, errs, code := health(t, "--metrics-listen", ln.Addr().String())
	took := time.Since(start)
	if code != 1 || !strings.Contains(errs, "no answer within 2s") {
		t.Fatalf("exit %d, stderr %q; want 1 and a timeout", code, errs)
	}
	if took < healthTimeout-100*time.Millisecond || took > healthTimeout+2*time.Second {
		t.Fatalf("took %v, want about %v", took, healthTimeout)
	}
}

func TestHealthUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"stray argument", []string{"now"}, 2, "unexpected argument"},
		{"unknown flag", []string{"--port", "1"}, 2, "flag provided but not defined"},
		{"not a url", []string{"--url", "127.0.0.1:9101/healthz"}, 2, "--url"},
		{"metrics disabled", []string{"--metrics-listen", ""}, 1, "metrics are disabled"},
		{"no port", []string{"--metrics-listen", "127.0.0.1"}, 1, "missing port"},
		{"port zero", []string{"--metrics-listen", "127.0.0.1:0"}, 1, "fixed port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs, code := health(t, tt.args...)
			if code != tt.code || !strings.Contains(errs, tt.want) {
				t.Fatalf("exit %d, stderr %q; want %d mentioning %q", code, errs, tt.code, tt.want)
			}
		})
	}
	if _, errs, code := health(t, "--help"); code != 0 || !strings.Contains(errs, "relay health") {
		t.Fatalf("--help: exit %d, %q", code, errs)
	}
}

func TestHealthURL(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:9101":   "http://127.0.0.1:9101/healthz",
		":9101":          "http://127.0.0.1:9101/healthz",
		"[::]:9101":      "http://[::1]:9101/healthz",
		"127.0.0.1:9101": "http://127.0.0.1:9101/healthz",
		"relay:9101":     "http://relay:9101/healthz",
		"[::1]:9200":     "http://[::1]:9200/healthz",
	} {
		if got, err := healthURL(in); err != nil || got != want {
			t.Errorf("healthURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
