// A static Go program (CGO_ENABLED=0) with a unix socket at a path: bind, connect,
// accept, and what getsockname and getpeername report, from Go's own system calls.
//
// usage: unix PATH
//
// Listens on the unix socket PATH, connects to it, and prints "addr=" (the
// listener's address), "peer=" (the connection's peer, by getpeername), "accepted="
// (the accepted connection's own address, by getsockname), "got=" (what the server
// wrote), "socket=yes" when os.Stat(PATH) is a socket; then OK.
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: unix PATH")
		os.Exit(2)
	}
	path := os.Args[1]
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Printf("FAIL: listen %s: %v\n", path, err)
		os.Exit(1)
	}
	fmt.Printf("addr=%s\n", ln.Addr())
	accepted := make(chan string)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			fmt.Printf("FAIL: accept: %v\n", err)
			os.Exit(1)
		}
		accepted <- conn.LocalAddr().String()
		conn.Write([]byte("hello-unix"))
		conn.Close()
	}()
	conn, err := net.Dial("unix", path)
	if err != nil {
		fmt.Printf("FAIL: dial %s: %v\n", path, err)
		os.Exit(1)
	}
	fmt.Printf("peer=%s\naccepted=%s\n", conn.RemoteAddr(), <-accepted)
	buf := make([]byte, 64)
	n, _ := conn.Read(buf)
	fmt.Printf("got=%s\n", buf[:n])
	if info, err := os.Stat(path); err == nil && info.Mode()&os.ModeSocket != 0 {
		fmt.Println("socket=yes")
	}
	fmt.Println("OK")
}
