// Package deploy holds no code: it is the home of chatrelay's deployment
// files (systemd unit, Dockerfile, compose stacks for one relay and for
// three on a NATS cluster, Kubernetes manifests with a reference NATS
// cluster, Prometheus rules, Grafana dashboard) and of the tests that check
// them with the real tools: systemd-analyze, promtool and a Prometheus
// server scraping a running relay. Tests whose tool is missing skip, unless
// CHATRELAY_REQUIRE_TOOLS=1 (as in CI) makes that a failure. Docker cannot
// pull images here: the compose files and manifests are checked statically,
// NATS servers' command lines against nats-server's own flags.
package deploy
