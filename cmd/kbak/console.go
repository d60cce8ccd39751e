package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// console is the person at the keyboard, if any; tests replace it.
var console = terminal{in: os.Stdin, tty: func() bool { return term.IsTerminal(int(os.Stdin.Fd())) }}

type terminal struct {
	in  io.Reader
	tty func() bool
}

func (t terminal) isTerminal() bool { return t.tty() }

// confirm asks question on w and reads the answer: only y or yes agrees.
func (t terminal) confirm(w io.Writer, question string) (bool, error) {
	fmt.Fprint(w, question)
	line, err := bufio.NewReader(t.in).ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(w)
		if err == io.EOF {
			return false, nil
		}
		return false, fmt.Errorf("read the answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}
