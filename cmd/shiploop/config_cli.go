package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/shiploop/shiploop/cmd/shiploop/internal/cliparse"
)

// The CLI config file: defaults for client flags, so a laptop need not
// repeat --server and --token. Command-line flags and SHIPLOOP_* variables
// win over it.
//
//	# ~/.config/shiploop/config.yaml
//	server: shiploop.internal:9090
//	token: slp_...
//	color: auto
//
// The keys and the parser are in internal/cliparse.

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
	return cliparse.Config(path, raw)
}

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
