package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/xenapi/xapisim"
)

func newDiskCmd(g *globals) *cobra.Command {
	disk := &cobra.Command{Use: "disk", Short: "Work on a VM's disk N (userdevice N); VM is a name or uuid"}
	disk.AddCommand(
		diskCmd(g, "import --state DIR VM N IMAGE", "Write an image onto the disk as a guest would (recorded by CBT)", 3,
			func(s *xapisim.Sim, d xapisim.DiskRef, args []string) error { return s.Import(d, args[2]) }),
		diskCmd(g, "export --state DIR VM N FILE", "Write the disk as it is now into a sparse file of exactly its size", 3,
			func(s *xapisim.Sim, d xapisim.DiskRef, args []string) error { return s.Export(d, args[2]) }),
		diskCmd(g, "resize --state DIR VM N SIZE", "Grow the disk to SIZE (like 64M, 1G, 16G)", 3,
			func(s *xapisim.Sim, d xapisim.DiskRef, args []string) error {
				size, err := xapisim.ParseSize(args[2])
				if err != nil {
					return err
				}
				return s.Resize(d, size)
			}),
		diskCmd(g, "cbt --state DIR VM N on|off", "Turn changed-block tracking on or off (VDI.enable_cbt / disable_cbt)", 3,
			func(s *xapisim.Sim, d xapisim.DiskRef, args []string) error {
				if args[2] != "on" && args[2] != "off" {
					return fmt.Errorf("cbt %q: want on or off", args[2])
				}
				return s.SetCBT(d, args[2] == "on")
			}),
		diskCmd(g, "migrate --state DIR VM N", "Storage-migrate the disk: new VDI uuid and ref, CBT restarted on a new chain; prints the new uuid", 2,
			func(s *xapisim.Sim, d xapisim.DiskRef, _ []string) error {
				uuid, err := s.Migrate(d)
				if err == nil {
					fmt.Fprintln(g.stdout, uuid)
				}
				return err
			}),
		newDiskWriteCmd(g),
	)
	return disk
}

// diskCmd builds a disk subcommand taking VM N and nargs-2 more arguments.
func diskCmd(g *globals, use, short string, nargs int, fn func(*xapisim.Sim, xapisim.DiskRef, []string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(nargs),
		RunE: func(_ *cobra.Command, args []string) error {
			sim, err := g.open()
			if err != nil {
				return err
			}
			d, err := diskArgs(args)
			if err != nil {
				return err
			}
			return fn(sim, d, args)
		},
	}
}

func newDiskWriteCmd(g *globals) *cobra.Command {
	var percent float64
	var seed uint64
	var blocks []int64
	c := &cobra.Command{
		Use:   "write --state DIR VM N (--random-blocks PERCENT | --block B ...) --seed S",
		Short: "Guest writes: seeded random bytes into that share of the 64 KiB blocks (chosen by the seed) or into the given blocks",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			sim, err := g.open()
			if err != nil {
				return err
			}
			d, err := diskArgs(args)
			if err != nil {
				return err
			}
			random := cmd.Flags().Changed("random-blocks")
			if random == (len(blocks) > 0) {
				return errors.New("give either --random-blocks PERCENT or --block B (repeatable)")
			}
			if random {
				size, err := sim.DiskSize(d)
				if err != nil {
					return err
				}
				if blocks, err = xapisim.RandomBlocks(size, percent, seed); err != nil {
					return err
				}
			}
			return sim.WriteBlocks(d, blocks, seed)
		},
	}
	c.Flags().Float64Var(&percent, "random-blocks", 0, "share of the disk's 64 KiB blocks to write, in percent")
	c.Flags().Int64SliceVar(&blocks, "block", nil, "write this block number (repeatable)")
	c.Flags().Uint64Var(&seed, "seed", 1, "seed for the choice of blocks and their bytes")
	return c
}
