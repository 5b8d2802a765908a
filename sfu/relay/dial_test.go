package relay

import (
	"context"
	"net"
	"testing"
	"time"
)

// A peer that is not listening yet (starting, or its DNS name not yet
// published) is dialled again until the open's deadline, so a pull made
// right after the fleet came up still finds the track.
func TestRelayDialWaitsForAPeerThatStartsLate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nobody listens: the first dials are refused
	go func() {
		time.Sleep(300 * time.Millisecond)
		late, err := net.Listen("tcp", addr)
		if err != nil {
			return // the port was taken meanwhile; the dial below then fails the test
		}
		t.Cleanup(func() { _ = late.Close() })
		if c, err := late.Accept(); err == nil {
			_ = c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	conn, err := dialRetrying(ctx, addr)
	if err != nil {
		t.Fatalf("dial of a peer listening after 300 ms: %v", err)
	}
	_ = conn.Close()
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Fatalf("connected after %v, before the peer listened", took)
	}

	// A peer that never comes: the dial gives up with the open's deadline.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel2()
	if _, err := dialRetrying(ctx2, "127.0.0.1:1"); err == nil {
		t.Fatal("dial of a closed port succeeded")
	}
}
