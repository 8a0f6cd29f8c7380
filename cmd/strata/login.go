package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/strata-build/strata/registry"
)

// runLogin checks credentials against a registry and stores them in the
// docker config (or its credential helper), as docker login does.
func runLogin(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("login", pflag.ContinueOnError)
	user := fs.StringP("username", "u", "", "user name")
	pass := fs.StringP("password", "p", "", "password (visible to other users of the machine; prefer --password-stdin)")
	passStdin := fs.Bool("password-stdin", false, "read the password from standard input")
	insecure := fs.StringArray("insecure-registry", nil, "use plain HTTP for this HOST:PORT")
	fs.StringVar(&g.root, "root", g.root, "state directory")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 1 {
		return usagef("login takes exactly one REGISTRY")
	}
	server := fs.Arg(0)
	if _, _, err := registry.ParseRegistry(server, *insecure); err != nil {
		return usageError{err}
	}
	if *pass != "" && *passStdin {
		return usagef("--password and --password-stdin cannot be used together")
	}
	if *passStdin && *user == "" {
		return usagef("--password-stdin needs --username")
	}
	stdin := bufio.NewReader(os.Stdin)
	interactive := term.IsTerminal(int(os.Stdin.Fd()))
	if *user == "" {
		if !interactive {
			return usagef("no --username given and standard input is not a terminal")
		}
		fmt.Fprint(os.Stderr, "Username: ")
		line, err := stdin.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading user name: %w", err)
		}
		*user = strings.TrimSpace(line)
	}
	password := *pass
	switch {
	case *passStdin:
		b, err := io.ReadAll(stdin)
		if err != nil {
			return fmt.Errorf("reading password from standard input: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	case password != "":
		fmt.Fprintln(os.Stderr, "WARNING! Using --password on the command line is insecure. Use --password-stdin.")
	case interactive:
		fmt.Fprint(os.Stderr, "Password: ")
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return fmt.Errorf("reading password: %w", err)
		}
		password = string(b)
	default:
		return usagef("no password given and standard input is not a terminal (use --password-stdin)")
	}
	if *user == "" || password == "" {
		return usagef("user name and password must not be empty")
	}
	if err := registry.Login(ctx, server, *user, password, registry.Options{Insecure: *insecure}); err != nil {
		return err
	}
	dir, err := registry.DockerConfigDir()
	if err != nil {
		return err
	}
	if err := registry.SaveCredentials(dir, server, *user, password); err != nil {
		return err
	}
	fmt.Println("Login Succeeded")
	return nil
}

// runLogout forgets a registry's credentials.
func runLogout(ctx context.Context, g *globals, args []string) error {
	fs := pflag.NewFlagSet("logout", pflag.ContinueOnError)
	fs.StringVar(&g.root, "root", g.root, "state directory")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 1 {
		return usagef("logout takes exactly one REGISTRY")
	}
	server := fs.Arg(0)
	if _, _, err := registry.ParseRegistry(server, nil); err != nil {
		return usageError{err}
	}
	dir, err := registry.DockerConfigDir()
	if err != nil {
		return err
	}
	removed, err := registry.RemoveCredentials(dir, server)
	if err != nil {
		return err
	}
	if removed {
		fmt.Printf("Removing login credentials for %s\n", server)
	} else {
		fmt.Printf("Not logged in to %s\n", server)
	}
	return nil
}
