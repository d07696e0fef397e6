package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// k8sDir holds the Kubernetes manifests.
const k8sDir = "../../deploy/k8s"

// apiVersions are the kinds the manifests may use, with their apiVersion.
var apiVersions = map[string]string{
	"Namespace":               "v1",
	"ConfigMap":               "v1",
	"Secret":                  "v1",
	"Service":                 "v1",
	"Deployment":              "apps/v1",
	"StatefulSet":             "apps/v1",
	"HorizontalPodAutoscaler": "autoscaling/v2",
	"PodDisruptionBudget":     "policy/v1",
}

// object is one YAML document, generically.
type object map[string]any

func (o object) str(path ...string) string {
	v, _ := o.get(path...).(string)
	return v
}

func (o object) get(path ...string) any {
	var cur any = map[string]any(o)
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func (o object) id() string { return o.str("kind") + "/" + o.str("metadata", "name") }

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }
func asList(v any) []any         { l, _ := v.([]any); return l }

// loadManifests parses every document of every YAML file in deploy/k8s.
func loadManifests(t *testing.T) []object {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if len(files) == 0 {
		t.Fatalf("no manifests in %s", k8sDir)
	}
	var objs []object
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue // not an object; TestK8sKustomization checks it
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for i := 0; ; i++ {
			var m map[string]any // nested maps then decode as map[string]any too
			err := dec.Decode(&m)
			o := object(m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			if o == nil {
				continue
			}
			objs = append(objs, o)
		}
	}
	return objs
}

// TestK8sManifests checks the manifests without a cluster: every document
// has a known kind with its apiVersion and a name in the shiploop
// namespace; workloads' selectors match their pod labels; every reference
// (Service selectors, envFrom, volumes, StatefulSet serviceName, HPA target)
// resolves to an object defined here; every shiploop container runs a
// command `shiploop <command> --dry-run` accepts with the environment the
// pod would get; every service the binary knows is deployed; and the NATS
// cluster and the stream replicas agree.
func TestK8sManifests(t *testing.T) {
	objs := loadManifests(t)
	byID := map[string]object{}
	for _, o := range objs {
		kind, api, name := o.str("kind"), o.str("apiVersion"), o.str("metadata", "name")
		want, known := apiVersions[kind]
		switch {
		case !known:
			t.Errorf("%s: unknown kind %q", o.id(), kind)
			continue
		case api != want:
			t.Errorf("%s: apiVersion %q, want %q", o.id(), api, want)
		case name == "":
			t.Errorf("a %s without metadata.name", kind)
		case kind != "Namespace" && o.str("metadata", "namespace") != "shiploop":
			t.Errorf("%s: namespace %q, want shiploop", o.id(), o.str("metadata", "namespace"))
		}
		if _, dup := byID[o.id()]; dup {
			t.Errorf("%s defined twice", o.id())
		}
		byID[o.id()] = o
	}
	if _, ok := byID["Namespace/shiploop"]; !ok {
		t.Error("no Namespace shiploop")
	}
	// data of ConfigMaps and Secrets, for envFrom.
	envOf := map[string]map[string]string{}
	for _, o := range objs {
		field := map[string]string{"ConfigMap": "data", "Secret": "stringData"}[o.str("kind")]
		if field == "" {
			continue
		}
		m := map[string]string{}
		for k, v := range asMap(o.get(field)) {
			s, ok := v.(string)
			if !ok {
				t.Errorf("%s: %s.%s is not a string (quote it)", o.id(), field, k)
			}
			m[k] = s
		}
		envOf[o.id()] = m
	}

	bin := shiploopBin(t)
	deployed := map[string]bool{}
	var podLabels []map[string]any
	for _, o := range objs {
		kind := o.str("kind")
		if kind != "Deployment" && kind != "StatefulSet" {
			continue
		}
		sel := asMap(o.get("spec", "selector", "matchLabels"))
		labels := asMap(o.get("spec", "template", "metadata", "labels"))
		if len(sel) == 0 {
			t.Errorf("%s: no spec.selector.matchLabels", o.id())
		}
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("%s: selector %s=%v does not match the pod template's labels %v", o.id(), k, v, labels)
			}
		}
		podLabels = append(podLabels, labels)
		if kind == "StatefulSet" {
			if _, ok := byID["Service/"+o.str("spec", "serviceName")]; !ok {
				t.Errorf("%s: serviceName %q is no Service here", o.id(), o.str("spec", "serviceName"))
			}
		}
		volumes := map[string]bool{}
		for _, v := range asList(o.get("spec", "template", "spec", "volumes")) {
			vm := object(asMap(v))
			volumes[vm.str("name")] = true
			if cm := vm.str("configMap", "name"); cm != "" && byID["ConfigMap/"+cm] == nil {
				t.Errorf("%s: volume %s uses ConfigMap %s, which is not defined", o.id(), vm.str("name"), cm)
			}
		}
		for _, v := range asList(o.get("spec", "volumeClaimTemplates")) {
			volumes[object(asMap(v)).str("metadata", "name")] = true
		}
		containers := asList(o.get("spec", "template", "spec", "containers"))
		if len(containers) == 0 {
			t.Errorf("%s: no containers", o.id())
		}
		for _, c := range containers {
			co := object(asMap(c))
			if co.str("name") == "" || co.str("image") == "" {
				t.Errorf("%s: a container without name or image", o.id())
			}
			for _, m := range asList(co.get("volumeMounts")) {
				if n := object(asMap(m)).str("name"); !volumes[n] {
					t.Errorf("%s: container %s mounts volume %q, which the pod does not have", o.id(), co.str("name"), n)
				}
			}
			env := map[string]string{}
			for _, ef := range asList(co.get("envFrom")) {
				efo := object(asMap(ef))
				ref := ""
				switch {
				case efo.str("configMapRef", "name") != "":
					ref = "ConfigMap/" + efo.str("configMapRef", "name")
				case efo.str("secretRef", "name") != "":
					ref = "Secret/" + efo.str("secretRef", "name")
				}
				data, ok := envOf[ref]
				if !ok {
					t.Errorf("%s: envFrom %q is not defined here", o.id(), ref)
				}
				maps.Copy(env, data)
			}
			// env overrides envFrom; the downward API's pod IP is a
			// placeholder here.
			fieldRefs := map[string]string{}
			for _, e := range asList(co.get("env")) {
				eo := object(asMap(e))
				if fp := eo.str("valueFrom", "fieldRef", "fieldPath"); fp != "" {
					fieldRefs[eo.str("name")] = fp
					env[eo.str("name")] = map[string]string{"status.podIP": "10.1.2.3"}[fp]
				} else {
					env[eo.str("name")] = eo.str("value")
				}
			}
			if !strings.Contains(co.str("image"), "shiploop") {
				continue
			}
			args := argv(t, o, co)
			if len(args) == 0 {
				continue
			}
			if args[0] == "serve" {
				deployed[args[len(args)-1]] = true
				// Discovery: others dial the address this pod advertises.
				if fieldRefs["SHIPLOOP_ADVERTISE_HOST"] != "status.podIP" && flagValue(args, "advertise-host") == "" {
					t.Errorf("%s: no SHIPLOOP_ADVERTISE_HOST from the downward API (status.podIP); other services could not dial this one", o.id())
				}
			} else if args[0] == "agent" {
				deployed["agent"] = true
			}
			full := append([]string{args[0], "--dry-run"}, args[1:]...)
			cmd := exec.Command(bin, full...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
			for k, v := range env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "would ") {
				t.Errorf("%s: `shiploop %s` rejects the container's command: %v\n%s", o.id(), strings.Join(full, " "), err, out)
			}
			if env["SHIPLOOP_ALLOWED_TRANSPORTS"] == "" {
				t.Errorf("%s: SHIPLOOP_ALLOWED_TRANSPORTS is not set", o.id())
			}
			if env["SHIPLOOP_REPLICAS"] != natsReplicas(byID) {
				t.Errorf("%s: SHIPLOOP_REPLICAS=%q, but the NATS cluster has %s nodes: streams must be R%s", o.id(), env["SHIPLOOP_REPLICAS"], natsReplicas(byID), natsReplicas(byID))
			}
		}
	}

	// Every Service selects some pod.
	for _, o := range objs {
		if o.str("kind") != "Service" {
			continue
		}
		sel := asMap(o.get("spec", "selector"))
		if !slices.ContainsFunc(podLabels, func(l map[string]any) bool {
			for k, v := range sel {
				if l[k] != v {
					return false
				}
			}
			return len(sel) > 0
		}) {
			t.Errorf("%s: selector %v matches no pod template", o.id(), sel)
		}
	}
	// The agents scale with an HPA on their Deployment.
	hpa := byID["HorizontalPodAutoscaler/shiploop-agent"]
	if hpa == nil {
		t.Error("no HorizontalPodAutoscaler for the agents")
	} else if target := "Deployment/" + hpa.str("spec", "scaleTargetRef", "name"); byID[target] == nil || hpa.str("spec", "scaleTargetRef", "kind") != "Deployment" {
		t.Errorf("HPA targets %s, which is not defined", target)
	}

	// Every service the binary knows runs somewhere.
	for _, s := range servicesOf(t, bin) {
		if !deployed[s] {
			t.Errorf("service %s is not deployed by any manifest", s)
		}
	}
}

// argv is the container's command line after "shiploop".
func argv(t *testing.T, o object, c object) []string {
	t.Helper()
	var cmd []string
	for _, v := range append(asList(c.get("command")), asList(c.get("args"))...) {
		s, ok := v.(string)
		if !ok {
			t.Errorf("%s: container %s: argument %v is not a string", o.id(), c.str("name"), v)
			return nil
		}
		cmd = append(cmd, s)
	}
	if len(cmd) < 2 || cmd[0] != "shiploop" || (cmd[1] != "serve" && cmd[1] != "agent") {
		t.Errorf("%s: container %s runs %q, want `shiploop serve <service>` or `shiploop agent`", o.id(), c.str("name"), cmd)
		return nil
	}
	return cmd[1:]
}

// natsReplicas is the NATS StatefulSet's replica count, checked against the
// routes in its config.
func natsReplicas(byID map[string]object) string {
	n := byID["StatefulSet/nats"]
	if n == nil {
		return "?"
	}
	return fmt.Sprint(n.get("spec", "replicas"))
}

// TestK8sNATSCluster: the NATS config routes to each StatefulSet pod
// through the headless Service, and JetStream is on.
func TestK8sNATSCluster(t *testing.T) {
	byID := map[string]object{}
	for _, o := range loadManifests(t) {
		byID[o.id()] = o
	}
	conf := byID["ConfigMap/nats-config"].str("data", "nats.conf")
	if !strings.Contains(conf, "jetstream") {
		t.Error("nats.conf does not enable JetStream")
	}
	n := byID["StatefulSet/nats"]
	if n == nil {
		t.Fatal("no StatefulSet nats")
	}
	// The NATS the code embeds and is tested with (pkg/go.mod).
	for _, c := range asList(n.get("spec", "template", "spec", "containers")) {
		img := object(asMap(c)).str("image")
		if tag, ok := strings.CutPrefix(img, "nats:"); ok && !strings.HasPrefix("v"+tag, natsServerVersion(t)+"-") && "v"+tag != natsServerVersion(t) {
			t.Errorf("StatefulSet/nats runs %s, but pkg/go.mod embeds nats-server %s", img, natsServerVersion(t))
		}
	}
	replicas, _ := n.get("spec", "replicas").(int)
	if replicas < 3 {
		t.Errorf("NATS has %d nodes, want at least 3 for R3 streams", replicas)
	}
	svc := n.str("spec", "serviceName")
	for i := range replicas {
		route := fmt.Sprintf("nats-route://nats-%d.%s.shiploop.svc.cluster.local:6222", i, svc)
		if !strings.Contains(conf, route) {
			t.Errorf("nats.conf lacks the route %s", route)
		}
	}
}

// TestK8sCheckCanFail proves the manifest check rejects what it should.
func TestK8sCheckCanFail(t *testing.T) {
	var o object
	if err := yaml.Unmarshal([]byte("kind: Deployment\napiVersion: apps/v1beta1\n"), &o); err != nil {
		t.Fatal(err)
	}
	if apiVersions[o.str("kind")] == o.str("apiVersion") {
		t.Error("apps/v1beta1 Deployment accepted")
	}
}
