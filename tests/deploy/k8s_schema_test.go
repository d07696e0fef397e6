package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// Schema validation without kubectl or a cluster: every document is decoded
// strictly (sigs.k8s.io/yaml.UnmarshalStrict: an unknown or duplicate field
// is an error, and so is a value of the wrong type, an unparsable quantity
// or int-or-string) into the official Go types of its kind from k8s.io/api,
// which are what the API server's OpenAPI schema is generated from. What
// the schema marks required and the Go types cannot express is checked
// below (names, images, ports, one handler per probe, env sources).

// typedKinds gives, for each apiVersion/kind the manifests use, a new
// value of its Go type.
var typedKinds = map[string]func() any{
	"v1/Namespace":                           func() any { return &corev1.Namespace{} },
	"v1/ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                              func() any { return &corev1.Secret{} },
	"v1/Service":                             func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                     func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                    func() any { return &appsv1.StatefulSet{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"policy/v1/PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
}

// manifestDocs returns every YAML document of the manifest files (not the
// kustomization), named file#n.
func manifestDocs(t *testing.T) (names []string, docs [][]byte) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(raw), -1) {
			if strings.TrimSpace(regexp.MustCompile(`(?m)^[ \t]*#.*$`).ReplaceAllString(d, "")) == "" {
				continue
			}
			names = append(names, fmt.Sprintf("%s#%d", filepath.Base(f), i+1))
			docs = append(docs, []byte(d))
		}
	}
	if len(docs) == 0 {
		t.Fatalf("no manifests in %s", k8sDir)
	}
	return names, docs
}

// validateDoc decodes one document strictly into its kind's type and
// checks what the schema requires beyond types; it returns the objects'
// problems.
func validateDoc(doc []byte) (any, []string) {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, []string{err.Error()}
	}
	newObj, ok := typedKinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, []string{fmt.Sprintf("unknown apiVersion/kind %s/%s", tm.APIVersion, tm.Kind)}
	}
	obj := newObj()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", tm.Kind, err)}
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var pod *corev1.PodTemplateSpec
	switch o := obj.(type) {
	case *appsv1.Deployment:
		pod = &o.Spec.Template
	case *appsv1.StatefulSet:
		pod = &o.Spec.Template
		for _, c := range o.Spec.VolumeClaimTemplates {
			if c.Name == "" || len(c.Spec.AccessModes) == 0 || c.Spec.Resources.Requests.Storage().IsZero() {
				bad("volumeClaimTemplate %q needs a name, accessModes and a storage request", c.Name)
			}
		}
	case *corev1.Service:
		for _, p := range o.Spec.Ports {
			if p.Port < 1 || p.Port > 65535 || len(o.Spec.Ports) > 1 && p.Name == "" {
				bad("Service port %q: port %d (and a name when there are several)", p.Name, p.Port)
			}
		}
	}
	if pod != nil {
		if len(pod.Spec.Containers) == 0 {
			bad("a pod template without containers")
		}
		for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
			if c.Name == "" || c.Image == "" {
				bad("container %q: name and image are required", c.Name)
			}
			for _, p := range c.Ports {
				if p.ContainerPort < 1 || p.ContainerPort > 65535 {
					bad("container %s: port %q has containerPort %d", c.Name, p.Name, p.ContainerPort)
				}
			}
			for _, e := range c.Env {
				if e.Name == "" || e.Value != "" && e.ValueFrom != nil {
					bad("container %s: env %q needs a name and either value or valueFrom", c.Name, e.Name)
				}
				if f := e.ValueFrom; f != nil && f.FieldRef != nil && f.FieldRef.FieldPath == "" {
					bad("container %s: env %s: fieldRef without fieldPath", c.Name, e.Name)
				}
			}
			for what, p := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe, "startupProbe": c.StartupProbe} {
				if p == nil {
					continue
				}
				n := 0
				for _, set := range []bool{p.Exec != nil, p.HTTPGet != nil, p.TCPSocket != nil, p.GRPC != nil} {
					if set {
						n++
					}
				}
				if n != 1 {
					bad("container %s: %s has %d handlers, want exactly one", c.Name, what, n)
				}
			}
		}
	}
	return obj, problems
}

// TestK8sSchema validates every manifest against the Kubernetes types.
func TestK8sSchema(t *testing.T) {
	names, docs := manifestDocs(t)
	for i, doc := range docs {
		if _, problems := validateDoc(doc); len(problems) > 0 {
			t.Errorf("%s:\n  %s", names[i], strings.Join(problems, "\n  "))
		}
	}
}

// TestK8sSchemaCanFail proves the validation rejects what a schema does.
func TestK8sSchemaCanFail(t *testing.T) {
	cases := map[string]string{
		"unknown field": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndatta: {a: b}\n",
		"misspelt container field": `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: x, image: x, comand: [x]}]
`,
		"wrong type":       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: http}]}\n",
		"bad quantity":     "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers: [{name: x, image: x, resources: {requests: {cpu: lots}}}]\n",
		"old apiVersion":   "apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: x}\n",
		"no image":         "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers: [{name: x}]\n",
		"two probe checks": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers: [{name: x, image: x, readinessProbe: {grpc: {port: 1}, tcpSocket: {port: 1}}}]\n",
	}
	for name, doc := range cases {
		if _, problems := validateDoc([]byte(doc)); len(problems) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
}

// kustomization is the part of kustomize's Kustomization the file uses;
// decoded strictly, so a field kustomize would not know fails here too.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
	} `json:"labels"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// TestK8sKustomization: kustomization.yaml lists every manifest file once,
// and the images it can retag are the ones the manifests use.
func TestK8sKustomization(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml: %s/%s, want kustomize.config.k8s.io/v1beta1 Kustomization", k.APIVersion, k.Kind)
	}
	if k.Namespace != "shiploop" {
		t.Errorf("kustomization.yaml: namespace %q, want shiploop", k.Namespace)
	}
	files, _ := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	var want []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			want = append(want, b)
		}
	}
	got := slices.Clone(k.Resources)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("kustomization.yaml resources %v, want every manifest once: %v", k.Resources, want)
	}
	all := ""
	for _, f := range want {
		b, _ := os.ReadFile(filepath.Join(k8sDir, f))
		all += string(b)
	}
	for _, img := range k.Images {
		if !regexp.MustCompile(`(?m)^\s*image: ` + regexp.QuoteMeta(img.Name) + `[:@]`).MatchString(all) {
			t.Errorf("kustomization.yaml retags image %s, which no manifest uses", img.Name)
		}
	}
}
