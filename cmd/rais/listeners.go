package main

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// listenFDsEnv names the listening sockets a supervisor hands to a child
// process: "api,raft,http" means file descriptors 3, 4 and 5, in that order.
// rais dev binds every port itself and passes the sockets on, so a port it
// chose (or reuses from dev.json) cannot be taken by another process before
// the child binds it — picking a free port and closing it left exactly
// that window open.
const listenFDsEnv = "RAIS_LISTEN_FDS"

// inheritedListeners returns the listeners named in RAIS_LISTEN_FDS, by
// name, and clears the variable so that the process's own children do not
// try to reuse the descriptors.
func inheritedListeners() (map[string]net.Listener, error) {
	v := os.Getenv(listenFDsEnv)
	if v == "" {
		return nil, nil
	}
	os.Unsetenv(listenFDsEnv)
	out := map[string]net.Listener{}
	for i, name := range strings.Split(v, ",") {
		f := os.NewFile(uintptr(3+i), name)
		if f == nil {
			return nil, fmt.Errorf("%s: no file descriptor %d for %q", listenFDsEnv, 3+i, name)
		}
		ln, err := net.FileListener(f)
		f.Close() // FileListener dups the descriptor
		if err != nil {
			return nil, fmt.Errorf("%s: descriptor %d for %q: %w", listenFDsEnv, 3+i, name, err)
		}
		out[name] = ln
	}
	return out, nil
}
