// A static Go client (CGO_ENABLED=0: Go's own resolver, reading /etc/hosts and
// asking DNS itself, and its own connect) that reaches servers by name.
//
// usage: dial HOST:PORT...
//
// Connects to each HOST:PORT in turn (retrying for up to 10 seconds while the server
// starts), reads one line and prints "HOST=LINE"; a HOST it cannot reach prints
// "FAIL: HOST: ERROR" and the program exits 1 after the others. Prints OK at the end.
// The harness (tests/backstop.rs) runs it in a capsule beside capsules it names.
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
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dial HOST:PORT...")
		os.Exit(2)
	}
	failed := false
	for _, target := range os.Args[1:] {
		host := strings.Split(target, ":")[0]
		var last error
		answered := false
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			conn, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				last = err
				continue
			}
			line, err := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if err != nil {
				last = err
				continue
			}
			fmt.Printf("%s=%s\n", host, strings.TrimSpace(line))
			answered = true
			break
		}
		if !answered {
			fmt.Printf("FAIL: %s: %v\n", host, last)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
	fmt.Println("OK")
}
