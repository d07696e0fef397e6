package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/shiploop/shiploop/services/agent/backend"
)

// newDockerBackend connects the agent's Docker backend (`--backend docker`)
// and removes what a killed predecessor left: the containers, networks and
// volumes labelled with this agent's identity, which is the host name and
// the data directory, stable across restarts (the agent's event name has
// its pid in it). Two agents must not share a data directory anyway.
func newDockerBackend(ctx context.Context, env *moduleEnv, pc backend.ProcessConfig) (*backend.Docker, error) {
	d, err := backend.NewDocker(ctx, backend.DockerConfig{Process: pc, Agent: dockerAgentID(env.opts.dataDir)})
	if err != nil {
		return nil, fmt.Errorf("--backend docker: %w", err)
	}
	engine, err := d.Engine(ctx)
	if err != nil {
		return nil, fmt.Errorf("--backend docker: %w", err)
	}
	n, err := d.Reap(ctx)
	if err != nil {
		return nil, fmt.Errorf("--backend docker: removing leftovers: %w", err)
	}
	env.log.Info("agent: steps run in containers", "engine", engine, "agent_label", dockerAgentID(env.opts.dataDir), "leftovers_removed", n)
	return d, nil
}

// dockerAgentID is the shiploop.agent label value of this agent.
func dockerAgentID(dataDir string) string {
	host, _ := os.Hostname()
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		abs = dataDir
	}
	sum := sha256.Sum256([]byte(abs))
	return host + "-" + hex.EncodeToString(sum[:6])
}
