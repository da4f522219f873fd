package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// stopSignals are the signals that end long work cleanly: Ctrl-C, and what
// Docker, systemd, Kubernetes and timeout(1) send.
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

// exit ends the process; tests replace it.
var exit = os.Exit

// stopContext returns a context that ends at the first SIGINT or SIGTERM,
// after which what is running finishes its step and saves. A second
// signal ends the process at once with 128 + its number (130 for SIGINT,
// 143 for SIGTERM). what is the work being done, for the message.
func stopContext(stderr io.Writer, what string) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, stopSignals...)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			fmt.Fprintf(stderr, "\n%v: %s; send it again to quit at once\n", sig, what)
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-ch:
			fmt.Fprintf(stderr, "\n%v again: quitting now\n", sig)
			code := 1
			if s, ok := sig.(syscall.Signal); ok {
				code = 128 + int(s)
			}
			exit(code)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel()
	}
}
