//go:build !linux

package netx

import "syscall"

func controlUnacked(_, _ string, _ syscall.RawConn) error { return nil }
