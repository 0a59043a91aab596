// Package deploy holds the tests of the deployment assets beside it: the
// systemd units (run under a real systemd in a container), the Kubernetes
// manifests (decoded strictly with the Kubernetes API types), the
// Prometheus rules and Grafana dashboard (checked with promtool and the
// Prometheus query parser), and the static build the container image
// ships. It is a module of its own, so that the library's go.mod does not
// carry the Kubernetes and Prometheus server modules.
package deploy
