// A static Go server with a hard-coded port, as Go builds them with CGO_ENABLED=0: its
// bind, getsockname and connect are Go's own system calls.
//
// usage: server PORT [COUNT]
//
// Listens on TCP :PORT (every address) and answers each connection with its host name
// (os.Hostname) and a newline. Prints "addr=ADDR" (the listener's address, as
// getsockname reports it), then dials 127.0.0.1:PORT itself and prints "self=ANSWER",
// then "ready"; serves COUNT (default 1) more connections (from outside), printing
// "served" after each, then OK (or FAIL and exit 1 when 20 seconds pass without one).
// The harness (tests/backstop.rs) runs it in capsules that publish PORT.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) != 2 && len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: server PORT [COUNT]")
		os.Exit(2)
	}
	port := os.Args[1]
	count := 1
	if len(os.Args) == 3 {
		if _, err := fmt.Sscan(os.Args[2], &count); err != nil || count < 1 {
			fmt.Fprintf(os.Stderr, "server: COUNT must be a positive number, not %q\n", os.Args[2])
			os.Exit(2)
		}
	}
	name, err := os.Hostname()
	if err != nil {
		fmt.Printf("FAIL: os.Hostname: %v\n", err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Printf("FAIL: listen :%s: %v\n", port, err)
		os.Exit(1)
	}
	fmt.Printf("addr=%s\n", ln.Addr())
	served := make(chan struct{})
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				fmt.Printf("FAIL: accept: %v\n", err)
				os.Exit(1)
			}
			fmt.Fprintf(conn, "%s\n", name)
			conn.Close()
			served <- struct{}{}
		}
	}()

	conn, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Printf("FAIL: dial 127.0.0.1:%s: %v\n", port, err)
		os.Exit(1)
	}
	answer, err := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if err != nil {
		fmt.Printf("FAIL: read from 127.0.0.1:%s: %v\n", port, err)
		os.Exit(1)
	}
	<-served
	fmt.Printf("self=%s\nready\n", strings.TrimSpace(answer))
	for i := 0; i < count; i++ {
		select {
		case <-served:
			fmt.Println("served")
		case <-time.After(20 * time.Second):
			fmt.Printf("FAIL: %d of %d connections after 20 s\n", i, count)
			os.Exit(1)
		}
	}
	fmt.Println("OK")
}
