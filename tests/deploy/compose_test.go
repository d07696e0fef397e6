// Package deploy checks the deployment files without a container engine or
// a cluster: docker-compose.yml runs every service the shiploop binary
// knows, each with a command it accepts, and the Kubernetes manifests do
// too and validate against the Kubernetes API types.
package deploy

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	DependsOn   map[string]any    `yaml:"depends_on"`
	Ports       []string          `yaml:"ports"`
	Labels      map[string]string `yaml:"labels"`
	Deploy      struct {
		Replicas *int `yaml:"replicas"`
	} `yaml:"deploy"`
}

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

// interpolate replaces ${VAR:-default} and ${VAR} as compose does when VAR
// is unset: the file's defaults are what is checked, not this shell's.
func interpolate(s string) string {
	return regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}`).ReplaceAllString(s, "$1")
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal([]byte(interpolate(string(raw))), &cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return cf
}

// flagValue is the value of --name in args ("" when absent).
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// listenFlags are the serve flags that open a port, with their protocols.
var listenFlags = map[string][]string{
	"http-listen":   {"tcp"},
	"grpc-listen":   {"tcp"},
	"carbon-listen": {"tcp", "udp"},
	"pickle-listen": {"tcp"},
}

// checkCompose returns what is wrong with cf: every service in services
// (the binary's list) runs exactly once as `shiploop serve <service>` with
// --advertise-host set to its compose name, at least two agents, every
// shiploop container on one image, every published port one a listen flag
// opens (published under the same number, each host port once), builds on
// the CLI's default gRPC port, NATS with JetStream at natsVersion, and
// PostgreSQL where SHIPLOOP_DATABASE_URL points. dryRun, when not nil,
// runs a container's command with --dry-run and returns an error if the
// binary refuses it.
func checkCompose(cf composeFile, services []string, natsVersion string, dryRun func(args []string, env map[string]string) error) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range cf.Services {
			if !yield(n) {
				return
			}
		}
	})
	runs := map[string][]string{} // shiploop service -> compose services running it
	agents := 0
	images := map[string]bool{}
	hostPorts := map[string]string{}
	var natsSvc, pgSvc []string
	for _, name := range names {
		svc := cf.Services[name]
		for dep := range svc.DependsOn {
			if _, ok := cf.Services[dep]; !ok {
				bad("service %s depends on %s, which the file does not define", name, dep)
			}
		}
		if slices.Contains(svc.Command, "-js") || strings.Contains(svc.Image, "nats") {
			natsSvc = append(natsSvc, name)
		}
		if strings.Contains(svc.Image, "postgres") {
			pgSvc = append(pgSvc, name)
		}
		if !strings.HasPrefix(svc.Image, "shiploop:") && !strings.Contains(svc.Image, "/shiploop:") {
			if len(svc.Ports) > 0 && !slices.Contains(natsSvc, name) {
				bad("service %s publishes ports %v; only shiploop's are checked against flags, so keep others internal", name, svc.Ports)
			}
			continue
		}
		images[svc.Image] = true
		if svc.Build != nil {
			bad("service %s has build:; the images are built by scripts/images.sh (or the Dockerfile) and named by image:", name)
		}
		if len(svc.Command) == 0 || !slices.Contains([]string{"serve", "agent"}, svc.Command[0]) {
			bad("service %s: command %q is not `shiploop serve` or `shiploop agent`", name, svc.Command)
			continue
		}
		replicas := 1
		if svc.Deploy.Replicas != nil {
			replicas = *svc.Deploy.Replicas
		}
		if svc.Command[0] == "agent" {
			agents += replicas
		} else {
			served := svc.Command[len(svc.Command)-1]
			runs[served] = append(runs[served], name)
			if h := flagValue(svc.Command, "advertise-host"); h != name {
				bad("service %s: --advertise-host %q, want its compose name %q (others dial it there)", name, h, name)
			}
			if replicas != 1 {
				bad("service %s: %d replicas would publish the same host ports", name, replicas)
			}
		}
		for _, env := range []string{"SHIPLOOP_NATS_URL", "SHIPLOOP_DATABASE_URL"} {
			v, ok := svc.Environment[env]
			if !ok {
				if env == "SHIPLOOP_NATS_URL" || svc.Command[0] == "serve" {
					bad("service %s: no %s", name, env)
				}
				continue
			}
			u, err := url.Parse(v)
			if err != nil {
				bad("service %s: %s=%q: %v", name, env, v, err)
				continue
			}
			if _, ok := cf.Services[u.Hostname()]; !ok {
				bad("service %s: %s points at %q, which is no service here", name, env, u.Hostname())
			}
		}
		// Published ports against the listen flags.
		opened := map[string]bool{} // "port/proto"
		for f, protos := range listenFlags {
			v := flagValue(svc.Command, f)
			if v == "" {
				continue
			}
			host, port, err := net.SplitHostPort(v)
			if err != nil {
				bad("service %s: --%s %q: %v", name, f, v, err)
				continue
			}
			if ip := net.ParseIP(host); port != "0" && (ip == nil || !ip.IsUnspecified()) {
				bad("service %s: --%s %s listens on %q only; other containers (and published ports) need 0.0.0.0", name, f, v, host)
			}
			for _, p := range protos {
				opened[port+"/"+p] = true
			}
		}
		if svc.Command[0] == "serve" && len(svc.Ports) == 0 {
			bad("service %s publishes no port", name)
		}
		for _, p := range svc.Ports {
			hostPort, ctrPort, proto, err := parsePort(p)
			if err != nil {
				bad("service %s: port %q: %v", name, p, err)
				continue
			}
			if !opened[ctrPort+"/"+proto] {
				bad("service %s publishes %s/%s, which none of its listen flags opens (%v)", name, ctrPort, proto, slices.Sorted(func(y func(string) bool) {
					for k := range opened {
						if !y(k) {
							return
						}
					}
				}))
			}
			if hostPort != ctrPort {
				bad("service %s publishes container port %s on host port %s; keep them equal so the flags name both", name, ctrPort, hostPort)
			}
			if other, dup := hostPorts[hostPort+"/"+proto]; dup {
				bad("host port %s/%s published by both %s and %s", hostPort, proto, other, name)
			}
			hostPorts[hostPort+"/"+proto] = name
		}
		if dryRun != nil {
			if err := dryRun(svc.Command, svc.Environment); err != nil {
				bad("service %s: %v", name, err)
			}
		}
	}
	for _, s := range services {
		if s == "agent" {
			continue
		}
		if len(runs[s]) != 1 {
			bad("service %s runs in %d compose services %v, want exactly one", s, len(runs[s]), runs[s])
		}
	}
	for s, by := range runs {
		if !slices.Contains(services, s) {
			bad("compose services %v run %q, which shiploop does not know", by, s)
		}
	}
	if agents < 2 {
		bad("%d agents, want at least 2", agents)
	}
	if len(images) != 1 {
		bad("shiploop containers use images %v, want one", images)
	}
	if b := hostPorts["9090/tcp"]; len(runs["builds"]) == 1 && b != runs["builds"][0] {
		bad("127.0.0.1:9090 (the CLI's default --server) is published by %q, want builds", b)
	}
	if len(natsSvc) != 1 {
		bad("NATS services %v, want one", natsSvc)
	} else {
		n := cf.Services[natsSvc[0]]
		if !slices.Contains(n.Command, "-js") && !slices.Contains(n.Command, "--jetstream") {
			bad("NATS service %s runs without JetStream (-js): %q", natsSvc[0], n.Command)
		}
		if v := n.Labels["org.shiploop.nats-server.version"]; v != natsVersion {
			bad("NATS service %s: label org.shiploop.nats-server.version %q, but pkg/go.mod embeds nats-server %s", natsSvc[0], v, natsVersion)
		}
		if tag, ok := strings.CutPrefix(n.Image, "nats:"); ok && !strings.HasPrefix("v"+tag, natsVersion) {
			bad("NATS image %s is not nats-server %s", n.Image, natsVersion)
		}
	}
	if len(pgSvc) != 1 {
		bad("PostgreSQL services %v, want one", pgSvc)
	}
	return problems
}

// parsePort splits a short-syntax port ("[ip:]host:container[/proto]").
func parsePort(p string) (host, ctr, proto string, err error) {
	spec, proto, _ := strings.Cut(p, "/")
	if proto == "" {
		proto = "tcp"
	}
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return "", "", "", fmt.Errorf("want [ip:]host:container, a fixed host port")
	}
	host, ctr = parts[len(parts)-2], parts[len(parts)-1]
	for _, n := range []string{host, ctr} {
		if v, err := strconv.Atoi(n); err != nil || v < 1 || v > 65535 {
			return "", "", "", fmt.Errorf("%q is not a port (ranges are not used here)", n)
		}
	}
	return host, ctr, proto, nil
}

// TestCompose checks docker-compose.yml against the binary: see checkCompose.
func TestCompose(t *testing.T) {
	bin := shiploopBin(t)
	cf := loadCompose(t)
	dryRun := func(args []string, env map[string]string) error {
		full := append([]string{args[0], "--dry-run"}, args[1:]...)
		cmd := exec.Command(bin, full...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "would ") {
			return fmt.Errorf("`shiploop %s` rejects the command: %v\n%s", strings.Join(full, " "), err, out)
		}
		return nil
	}
	for _, p := range checkCompose(cf, servicesOf(t, bin), natsServerVersion(t), dryRun) {
		t.Error(p)
	}
}

// TestComposeImagesScript: scripts/images.sh builds the images the compose
// file names by default, reading the NATS version from pkg/go.mod.
func TestComposeImagesScript(t *testing.T) {
	script, err := os.ReadFile("../../scripts/images.sh")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"SHIPLOOP_IMAGE", "NATS_IMAGE", "POSTGRES_IMAGE"} {
		def := regexp.MustCompile(`\$\{` + v + `:-([^}]+)\}`)
		c, s := def.FindSubmatch(raw), def.FindSubmatch(script)
		if c == nil || s == nil || string(c[1]) != string(s[1]) {
			t.Errorf("%s: docker-compose.yml defaults to %q, scripts/images.sh builds %q", v, c, s)
		}
	}
	if !strings.Contains(string(script), "github.com/nats-io/nats-server/v2") || !strings.Contains(string(script), "pkg/go.mod") {
		t.Error("scripts/images.sh does not build nats-server at pkg/go.mod's version")
	}
	for _, pkg := range []string{"git", "mercurial"} {
		if !regexp.MustCompile(`packages=\S*\b` + pkg + `\b`).Match(script) {
			t.Errorf("scripts/images.sh: the image lacks %s", pkg)
		}
	}
}

// TestComposeCheckCanFail proves checkCompose rejects broken files.
func TestComposeCheckCanFail(t *testing.T) {
	services := []string{"builds", "gates", "agent"}
	good := func() composeFile {
		sh := func(cmd ...string) composeService {
			return composeService{Image: "shiploop:local", Command: cmd, Environment: map[string]string{
				"SHIPLOOP_NATS_URL": "nats://nats:4222", "SHIPLOOP_DATABASE_URL": "postgres://u:p@postgres/db"}}
		}
		b := sh("serve", "--http-listen", "0.0.0.0:8080", "--grpc-listen", "0.0.0.0:9090", "--advertise-host", "builds", "builds")
		b.Ports = []string{"127.0.0.1:8080:8080", "9090:9090"}
		g := sh("serve", "--grpc-listen", "0.0.0.0:9092", "--advertise-host", "gates", "gates")
		g.Ports = []string{"9092:9092"}
		return composeFile{Services: map[string]composeService{
			"nats":     {Image: "shiploop-nats:local", Command: []string{"-js"}, Labels: map[string]string{"org.shiploop.nats-server.version": "v2.15.2"}},
			"postgres": {Image: "shiploop-postgres:local"},
			"builds":   b, "gates": g,
			"agent-1": sh("agent"), "agent-2": sh("agent"),
		}}
	}
	if p := checkCompose(good(), services, "v2.15.2", nil); len(p) > 0 {
		t.Fatalf("the good file is refused: %v", p)
	}
	breaks := map[string]func(cf *composeFile){
		"service missing": func(cf *composeFile) { delete(cf.Services, "gates") },
		"service twice": func(cf *composeFile) {
			g := cf.Services["gates"]
			g.Ports = nil
			g.Command = slices.Clone(g.Command)
			g.Command[4] = "gates2"
			cf.Services["gates2"] = g
		},
		"one agent": func(cf *composeFile) { delete(cf.Services, "agent-2") },
		"old nats": func(cf *composeFile) {
			n := cf.Services["nats"]
			n.Labels = map[string]string{"org.shiploop.nats-server.version": "v2.12.0"}
			cf.Services["nats"] = n
		},
		"no jetstream": func(cf *composeFile) { n := cf.Services["nats"]; n.Command = nil; cf.Services["nats"] = n },
		"no postgres":  func(cf *composeFile) { delete(cf.Services, "postgres") },
		"port not a flag": func(cf *composeFile) {
			g := cf.Services["gates"]
			g.Ports = []string{"9093:9093"}
			cf.Services["gates"] = g
		},
		"port remapped": func(cf *composeFile) {
			g := cf.Services["gates"]
			g.Ports = []string{"9999:9092"}
			cf.Services["gates"] = g
		},
		"wrong advertise": func(cf *composeFile) {
			g := cf.Services["gates"]
			g.Command = []string{"serve", "--grpc-listen", "0.0.0.0:9092", "gates"}
			cf.Services["gates"] = g
		},
		"unknown service": func(cf *composeFile) {
			g := cf.Services["gates"]
			g.Command = []string{"serve", "--grpc-listen", "0.0.0.0:9092", "--advertise-host", "gates", "gaets"}
			cf.Services["gates"] = g
		},
		"loopback listener": func(cf *composeFile) {
			g := cf.Services["gates"]
			g.Command = []string{"serve", "--grpc-listen", "127.0.0.1:9092", "--advertise-host", "gates", "gates"}
			cf.Services["gates"] = g
		},
		"two images": func(cf *composeFile) {
			a := cf.Services["agent-2"]
			a.Image = "shiploop:old"
			cf.Services["agent-2"] = a
		},
		"bad nats url": func(cf *composeFile) {
			a := cf.Services["agent-2"]
			a.Environment = map[string]string{"SHIPLOOP_NATS_URL": "nats://natz:4222"}
			cf.Services["agent-2"] = a
		},
	}
	for name, brk := range breaks {
		cf := good()
		brk(&cf)
		if p := checkCompose(cf, services, "v2.15.2", nil); len(p) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestDryRunRejectsUnknownService proves the dry run above can fail.
func TestDryRunRejectsUnknownService(t *testing.T) {
	out, err := exec.Command(shiploopBin(t), "serve", "--dry-run", "--nats-url", "nats://x:4222", "bulids").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `unknown service "bulids"`) {
		t.Errorf("serve bulids: err %v, output %q; want a rejection naming the service", err, out)
	}
}
