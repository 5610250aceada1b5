package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/cli"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/xenapi/xapisim"
)

// globals are the flags every command takes.
type globals struct {
	state          string
	stdout, stderr io.Writer
}

func (g *globals) open() (*xapisim.Sim, error) {
	if g.state == "" {
		return nil, errors.New("--state DIR is required: the simulator's state folder")
	}
	return xapisim.Open(g.state, clock.Real)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "xapisim",
		Short:         "XenAPI simulator: xapi's JSON-RPC, HTTP and NBD interfaces over simulated VMs with CBT",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(args)
	root.PersistentFlags().StringVar(&g.state, "state", "", "the simulator's state folder (required)")
	var profile cli.Profile
	profile.AddFlag(root.PersistentFlags())
	root.PersistentPreRunE = func(*cobra.Command, []string) error { return profile.Start() }
	root.AddCommand(newInitCmd(g), newVMCmd(g), newDiskCmd(g), newSwitchCmd(g), newServeCmd(g))
	err := root.ExecuteContext(ctx)
	profile.Stop()
	if err != nil {
		fmt.Fprintf(stderr, "xapisim: %v\n", err)
		return 1
	}
	return 0
}

func newInitCmd(g *globals) *cobra.Command {
	var passwordFile string
	c := &cobra.Command{
		Use:   "init --state DIR --password-file F",
		Short: "Create a state folder: a pool with one host, an SR, an ISO library, a network with NBD, user root",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if g.state == "" || passwordFile == "" {
				return errors.New("init needs --state DIR and --password-file F")
			}
			b, err := os.ReadFile(passwordFile)
			if err != nil {
				return fmt.Errorf("password file: %w", err)
			}
			pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
			_, err = xapisim.Init(g.state, pw, clock.Real)
			return err
		},
	}
	c.Flags().StringVar(&passwordFile, "password-file", "", "file holding root's password (a trailing newline is removed)")
	return c
}

func newVMCmd(g *globals) *cobra.Command {
	vm := &cobra.Command{Use: "vm", Short: "Create and list VMs"}
	var disks []string
	var cd, halted, asJSON bool
	create := &cobra.Command{
		Use:   "create --state DIR NAME --disk SIZE [--disk SIZE ...] [--cd] [--halted]",
		Short: "Add a running VM with empty disks (SIZE like 64M, 1G, 16G) and print its uuid",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			sim, err := g.open()
			if err != nil {
				return err
			}
			var sizes []int64
			for _, d := range disks {
				n, err := xapisim.ParseSize(d)
				if err != nil {
					return err
				}
				sizes = append(sizes, n)
			}
			uuid, err := sim.CreateVMState(args[0], sizes, cd, halted)
			if err == nil {
				fmt.Fprintln(g.stdout, uuid)
			}
			return err
		},
	}
	create.Flags().StringArrayVar(&disks, "disk", nil, "add a disk of this size (repeatable; userdevice 0, 1, ...)")
	create.Flags().BoolVar(&cd, "cd", false, "add a CD drive holding the ISO library's ISO")
	create.Flags().BoolVar(&halted, "halted", false, "make the VM halted (its disks unplugged) instead of running")
	list := &cobra.Command{
		Use:   "list --state DIR [--json]",
		Short: "List VMs, snapshots, VDIs, dom0 attachments and NBD connections",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			sim, err := g.open()
			if err != nil {
				return err
			}
			l, err := sim.List()
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(l)
			}
			printListing(g.stdout, l)
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "JSON output (shape in the xapisim package doc)")
	vm.AddCommand(create, list)
	return vm
}

func printListing(w io.Writer, l *xapisim.Listing) {
	for _, vm := range l.VMs {
		kind := "vm"
		if vm.IsSnapshot {
			kind = "snapshot of " + vm.SnapshotOf
		}
		fmt.Fprintf(w, "%s  %-20s %s %v\n", vm.UUID, vm.NameLabel, kind, vm.Tags)
	}
	for _, v := range l.VDIs {
		fmt.Fprintf(w, "  vdi %s  %-24s %-12s %12d cbt=%v\n", v.UUID, v.NameLabel, v.Type, v.VirtualSize, v.CBTEnabled)
	}
	fmt.Fprintf(w, "dom0 attachments: %d, NBD connections: %d\n", len(l.Dom0Attachments), l.NBDConnections)
}

func newSwitchCmd(g *globals) *cobra.Command {
	var off string
	c := &cobra.Command{
		Use:   "switch --state DIR NAME[=VALUE] | --off NAME",
		Short: "Turn a field failure on or off (a running serve honours it at once): " + strings.Join(xapisim.SwitchNames(), ", "),
		Args:  cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			sim, err := g.open()
			if err != nil {
				return err
			}
			switch {
			case off != "" && len(args) == 0:
				return sim.ClearSwitch(off)
			case off == "" && len(args) == 1:
				return sim.SetSwitch(args[0])
			}
			return errors.New("give one switch to turn on (NAME[=VALUE]) or --off NAME")
		},
	}
	c.Flags().StringVar(&off, "off", "", "turn this switch off")
	return c
}

func newServeCmd(g *globals) *cobra.Command {
	var cfg xapisim.ServeConfig
	c := &cobra.Command{
		Use:   "serve --state DIR --listen ADDR [--nbd-listen ADDR] [--plain]",
		Short: "Serve JSON-RPC and HTTP (HTTPS with a self-signed cert.pem) and NBD; writes DIR/serve.json",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sim, err := g.open()
			if err != nil {
				return err
			}
			if cfg.Listen == "" {
				return errors.New("serve needs --listen ADDR (e.g. 127.0.0.1:0)")
			}
			cfg.Logf = log.New(g.stderr, "", log.LstdFlags).Printf
			return sim.Serve(cmd.Context(), cfg)
		},
	}
	c.Flags().StringVar(&cfg.Listen, "listen", "", "HTTP(S) address, e.g. 127.0.0.1:0")
	c.Flags().StringVar(&cfg.NBDListen, "nbd-listen", "", "NBD address (TLS with the same certificate), e.g. 127.0.0.1:0")
	c.Flags().BoolVar(&cfg.Plain, "plain", false, "plain HTTP instead of HTTPS (loopback addresses only)")
	return c
}

// diskArgs parses "VM N".
func diskArgs(args []string) (xapisim.DiskRef, error) {
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 0 {
		return xapisim.DiskRef{}, fmt.Errorf("disk number %q: want the disk's userdevice (0, 1, ...)", args[1])
	}
	return xapisim.DiskRef{VM: args[0], N: n}, nil
}
