package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// startPprof serves Go's runtime profiles on SHIPLOOP_PPROF_LISTEN (for
// example 127.0.0.1:6060) when it is set: memory and CPU profiles of a
// running process, for operators and benchmarks. It is never on by
// default, and it listens on its own address, not the API's.
func startPprof(log *slog.Logger) {
	addr := os.Getenv("SHIPLOOP_PPROF_LISTEN")
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("SHIPLOOP_PPROF_LISTEN: cannot listen", "addr", addr, "err", err)
		return
	}
	log.Info("profiles served", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	go func() { _ = http.Serve(ln, mux) }()
}
