// A Go program as Go builds them by default with CGO_ENABLED=0: statically linked,
// making its own system calls (no libc) and reading the clock from the vDSO.
//
// usage: probe NOTE FILE DIR [PROG ARGS...]
//
// Prints KEY=VALUE lines: what os.Hostname, os.Getuid/Geteuid and time.Now report,
// the content of NOTE, the content FILE has after the probe wrote "go wrote\n" to it
// (and its size by os.Stat), the sorted names in DIR (after FILE was written), and
// with PROG, what PROG ARGS printed when the probe ran it (os/exec: fork and execve).
// The harness (tests/backstop.rs) compares them with the capsule's settings.
// Exits 1 after printing FAIL: lines when a call failed.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: probe NOTE FILE DIR [PROG ARGS...]")
		os.Exit(2)
	}
	note, file, dir := os.Args[1], os.Args[2], os.Args[3]
	failed := false
	fail := func(what string, err error) {
		fmt.Printf("FAIL: %s: %v\n", what, err)
		failed = true
	}

	if name, err := os.Hostname(); err != nil {
		fail("os.Hostname", err)
	} else {
		fmt.Printf("hostname=%s\n", name)
	}
	fmt.Printf("uid=%d\neuid=%d\n", os.Getuid(), os.Geteuid())
	now := time.Now().UTC()
	fmt.Printf("year=%d\ndate=%s\n", now.Year(), now.Format("2006-01-02"))

	if text, err := os.ReadFile(note); err != nil {
		fail("read "+note, err)
	} else {
		fmt.Printf("note=%s\n", strings.TrimSpace(string(text)))
	}
	if err := os.WriteFile(file, []byte("go wrote\n"), 0o644); err != nil {
		fail("write "+file, err)
	}
	if text, err := os.ReadFile(file); err != nil {
		fail("read back "+file, err)
	} else {
		fmt.Printf("readback=%s\n", strings.TrimSpace(string(text)))
	}
	if info, err := os.Stat(file); err != nil {
		fail("stat "+file, err)
	} else {
		fmt.Printf("size=%d\n", info.Size())
	}
	if entries, err := os.ReadDir(dir); err != nil {
		fail("list "+dir, err)
	} else {
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		fmt.Printf("list=%s\n", strings.Join(names, ","))
	}
	if len(os.Args) > 4 {
		out, err := exec.Command(os.Args[4], os.Args[5:]...).Output()
		if err != nil {
			fail("run "+os.Args[4], err)
		} else {
			fmt.Printf("exec=%s\n", strings.TrimSpace(string(out)))
		}
	}
	if failed {
		os.Exit(1)
	}
	fmt.Println("OK")
}
