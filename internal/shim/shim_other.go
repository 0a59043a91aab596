//go:build !linux

package shim

import "errors"

// Run fails: external workers need Linux.
func Run() error { return errors.New("exec shim: external workers need Linux") }
