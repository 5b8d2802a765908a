package main

import (
	"errors"
	"testing"
)

func TestDevListensOnLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:8080": true,
		"127.0.0.2:0":    true,
		"[::1]:8080":     true,
		"localhost:8080": true,
		"0.0.0.0:8080":   false,
		":8080":          false,
		"192.0.2.7:8080": false,
		"[::]:8080":      false,
	} {
		err := loopbackListen(addr)
		if ok && err != nil {
			t.Errorf("%s refused: %v", addr, err)
		}
		if !ok && !errors.Is(err, errNotLoopback) {
			t.Errorf("%s: got %v, want errNotLoopback", addr, err)
		}
	}
}

func TestDevFlagsDefaultsAndErrors(t *testing.T) {
	f, err := parseDevFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.listen != "127.0.0.1:8080" || f.apps != "config/samples/" || f.stateDir != ".switchboard-dev/" {
		t.Errorf("defaults = %+v", f)
	}
	for _, args := range [][]string{{"--udp-port", "70000"}, {"extra"}, {"--nope"}} {
		if _, err := parseDevFlags(args); err == nil {
			t.Errorf("parseDevFlags(%q) accepted", args)
		}
	}
}
