package kubernetes

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/preforkd/preforkd/internal/cli"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// manifests are every object of the directory's YAML files, decoded
// strictly into the Kubernetes (and prometheus-operator) API types.
type manifests struct {
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	pdbs            []*policyv1.PodDisruptionBudget
	serviceMonitors []*monitoringv1.ServiceMonitor
}

// decode decodes one document strictly: an unknown or duplicated field, or
// a value of the wrong type, is an error.
func (ms *manifests) decode(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		d := &appsv1.Deployment{}
		ms.deployments, obj = append(ms.deployments, d), d
	case "v1 Service":
		s := &corev1.Service{}
		ms.services, obj = append(ms.services, s), s
	case "policy/v1 PodDisruptionBudget":
		p := &policyv1.PodDisruptionBudget{}
		ms.pdbs, obj = append(ms.pdbs, p), p
	case "monitoring.coreos.com/v1 ServiceMonitor":
		s := &monitoringv1.ServiceMonitor{}
		ms.serviceMonitors, obj = append(ms.serviceMonitors, s), s
	default:
		return fmt.Errorf("unexpected %s %s: add it to the test", tm.APIVersion, tm.Kind)
	}
	return yaml.UnmarshalStrict(doc, obj)
}

func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	ms := &manifests{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(b, []byte("\n---")) {
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			if err := ms.decode(doc); err != nil {
				t.Errorf("%s, document %d: %v", f, i+1, err)
			}
		}
	}
	return ms
}

// The decoder is strict: an unknown field fails (else the test proves
// nothing about the manifests).
func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	ms := &manifests{}
	err := ms.decode([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  selectr: {app: x}\n"))
	if err == nil || !strings.Contains(err.Error(), "selectr") {
		t.Errorf("a misspelt field decoded: %v", err)
	}
	err = ms.decode([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: three\n"))
	if err == nil {
		t.Error("replicas: three decoded")
	}
}

// Every manifest decodes strictly, and the objects agree with each other
// and with preforkd's flags.
func TestManifests(t *testing.T) {
	ms := load(t)
	if len(ms.deployments) != 1 || len(ms.services) != 1 || len(ms.pdbs) != 1 || len(ms.serviceMonitors) != 1 {
		t.Fatalf("want one Deployment, Service, PodDisruptionBudget and ServiceMonitor; have %d, %d, %d, %d",
			len(ms.deployments), len(ms.services), len(ms.pdbs), len(ms.serviceMonitors))
	}
	d, svc, pdb, sm := ms.deployments[0], ms.services[0], ms.pdbs[0], ms.serviceMonitors[0]
	pod := d.Spec.Template
	podLabels := labels.Set(pod.Labels)

	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Errorf("the Deployment's selector %v does not match its pod labels %v (%v)", d.Spec.Selector, pod.Labels, err)
	}
	if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("the Service's selector %v does not match the pod labels %v", svc.Spec.Selector, pod.Labels)
	}
	if sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err != nil || !sel.Matches(podLabels) {
		t.Errorf("the PodDisruptionBudget's selector %v does not match the pod labels %v", pdb.Spec.Selector, pod.Labels)
	}
	if sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector); err != nil || !sel.Matches(labels.Set(svc.Labels)) {
		t.Errorf("the ServiceMonitor's selector %v does not match the Service's labels %v", sm.Spec.Selector, svc.Labels)
	}

	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("want one container, have %d", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	cfg, err := cli.Program{Name: "preforkd"}.Parse(c.Args)
	if err != nil {
		t.Fatalf("the container's args are not a preforkd command line: %v", err)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	// The flags' ports are the container's named ports.
	if len(cfg.Listen) != 1 || !strings.HasSuffix(cfg.Listen[0].Address, fmt.Sprintf(":%d", ports["http"])) {
		t.Errorf("-listen %v is not on the container port named http (%d)", cfg.Listen, ports["http"])
	}
	if !strings.HasPrefix(cfg.MetricsAddr, "0.0.0.0:") || !strings.HasSuffix(cfg.MetricsAddr, fmt.Sprintf(":%d", ports["metrics"])) {
		t.Errorf("-metrics %q: want 0.0.0.0 (reachable by probes and Prometheus) on the port named metrics (%d)", cfg.MetricsAddr, ports["metrics"])
	}
	portOK := func(p intstr.IntOrString) bool {
		if p.Type == intstr.String {
			_, ok := ports[p.StrVal]
			return ok
		}
		for _, v := range ports {
			if v == p.IntVal {
				return true
			}
		}
		return false
	}
	for name, pr := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if pr == nil || pr.HTTPGet == nil {
			t.Errorf("no %s probe with httpGet", name)
			continue
		}
		if !portOK(pr.HTTPGet.Port) || pr.HTTPGet.Path != "/healthz" || pr.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s probe %s on port %s: want /healthz on the metrics port", name, pr.HTTPGet.Path, pr.HTTPGet.Port.String())
		}
	}
	for _, p := range svc.Spec.Ports {
		if !portOK(p.TargetPort) {
			t.Errorf("the Service's port %s targets %s, which the container does not have", p.Name, p.TargetPort.String())
		}
	}
	svcPorts := map[string]bool{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = true
	}
	for _, e := range sm.Spec.Endpoints {
		if !svcPorts[e.Port] {
			t.Errorf("the ServiceMonitor scrapes port %q, which the Service does not name", e.Port)
		}
	}
	if a := pod.Annotations; a["prometheus.io/port"] != fmt.Sprint(ports["metrics"]) || a["prometheus.io/scrape"] != "true" {
		t.Errorf("scrape annotations %v: want prometheus.io/scrape=true and port %d", a, ports["metrics"])
	}

	// The end of a pod: the preStop sleep (native: no binary needed in
	// the image), then SIGTERM and the drain of at most -grace, then the
	// master's exit; the kubelet's SIGKILL must come after all of it.
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Exec != nil {
		t.Fatalf("preStop: want the native sleep action, have %+v", c.Lifecycle)
	}
	preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	const margin = 5 * time.Second
	if pod.Spec.TerminationGracePeriodSeconds == nil {
		t.Fatal("no terminationGracePeriodSeconds")
	}
	if tg := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second; tg <= preStop+cfg.Grace+margin {
		t.Errorf("terminationGracePeriodSeconds %v ≤ preStop %v + -grace %v + %v: the kubelet would SIGKILL a draining master", tg, preStop, cfg.Grace, margin)
	}

	// Non-root, as the image runs.
	if sc := pod.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("the pod does not require runAsNonRoot")
	}
	if d.Spec.Strategy.RollingUpdate == nil || d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Error("the rolling update may take pods down before their replacements are ready (maxUnavailable ≠ 0)")
	}
}
