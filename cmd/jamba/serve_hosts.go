package main

import (
	"net"
	"strconv"
)

// loopbackHosts are the Host header values a server bound to the loopback
// address a accepts: localhost, 127.0.0.1, [::1] and the bound address
// itself (127.0.0.2, say), each with the port, and without it on port 80.
func loopbackHosts(a *net.TCPAddr) []string {
	port := strconv.Itoa(a.Port)
	names := []string{"localhost", "127.0.0.1", "[::1]"}
	if bound := a.IP.String(); a.IP.To4() != nil {
		names = append(names, bound)
	} else if a.IP != nil && !a.IP.IsUnspecified() {
		names = append(names, "["+bound+"]")
	}
	var out []string
	for _, h := range names {
		out = append(out, h+":"+port)
		if a.Port == 80 {
			out = append(out, h)
		}
	}
	return out
}
