package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"
)

// The CLI config file: defaults for client flags, so a laptop need not
// repeat --server and --token. Command-line flags and SHIPLOOP_* variables
// win over it.
//
//	# ~/.config/shiploop/config.yaml
//	server: shiploop.internal:9090
//	token: slp_...
//	color: auto
var configKeys = map[string]bool{"server": true, "token": true, "color": true}

// configPath is $SHIPLOOP_CONFIG, else <user config dir>/shiploop/config.yaml
// (~/.config/shiploop/config.yaml on Linux).
func configPath() string {
	if p := os.Getenv("SHIPLOOP_CONFIG"); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "shiploop", "config.yaml")
}

// loadConfig reads the config file; a missing file is no config.
func loadConfig(path string) (map[string]string, error) {
	if path == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return parseConfig(path, raw)
}

// parseConfig parses the config file's contents; errors name path and line.
func parseConfig(path string, raw []byte) (map[string]string, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(raw)).Decode(&doc); err != nil {
		if errors.Is(err, errEOF()) {
			return nil, nil
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config %s:%d: want a mapping like \"server: host:9090\"", path, m.Line)
	}
	out := map[string]string{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if !configKeys[k.Value] {
			return nil, fmt.Errorf("config %s:%d: unknown key %q (known: server, token, color)", path, k.Line, k.Value)
		}
		if v.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("config %s:%d: %s wants a plain value", path, v.Line, k.Value)
		}
		out[k.Value] = v.Value
	}
	return out, nil
}

func errEOF() error { return io.EOF }

// applyConfig fills flags neither given nor set by a SHIPLOOP_* variable
// from the config file.
// Only client commands (those with --server) read it: `up --token` is the
// server's admin token and must never come from a client's file.
func applyConfig(fs *flag.FlagSet, set map[string]bool) error {
	if fs.Lookup("server") == nil {
		return nil
	}
	cfg, err := loadConfig(configPath())
	if err != nil || len(cfg) == 0 {
		return err
	}
	for k, v := range cfg {
		f := fs.Lookup(k)
		if f == nil || set[k] {
			continue
		}
		if err := f.Value.Set(v); err != nil {
			return fmt.Errorf("config %s: %s: %v", configPath(), k, err)
		}
	}
	return nil
}
