package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/dustin/go-humanize"
)

const usage = `usage:
  diskgen gen    --size 4GiB --seed 1 [--zeros] OUT
  diskgen sparse --size 4GiB --data 200MiB --seed 1 OUT
  diskgen mutate --seed 2 [--changed 0.01] [--insert 32MiB] [--zeros] SRC DST
`

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	var ue usageError
	switch {
	case err == nil:
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "diskgen: %v\n%s", err, usage)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "diskgen: %v\n", err)
		os.Exit(1)
	}
}

type usageError struct{ error }

// sizeFlag is a byte count written like 4GiB, 512MiB or 1000.
type sizeFlag int64

func (s *sizeFlag) String() string { return humanize.IBytes(uint64(*s)) }

func (s *sizeFlag) Set(v string) error {
	n, err := humanize.ParseBytes(v)
	if err != nil || n > 1<<62 {
		return fmt.Errorf("bad size %q", v)
	}
	*s = sizeFlag(n)
	return nil
}

// parse parses flags placed before, between or after the n positional
// arguments, and returns those arguments.
func parse(fs *flag.FlagSet, args []string, n int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{err}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) != n {
		return nil, usageError{fmt.Errorf("%s takes %d file arguments, got %d", fs.Name(), n, len(pos))}
	}
	return pos, nil
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{errors.New("no command")}
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Uint64("seed", 1, "PRNG seed: the same seed gives the same bytes")
	zeros := fs.Bool("zeros", false, "write zero regions as real zeros instead of holes")
	start := time.Now()
	switch args[0] {
	case "gen":
		size := sizeFlag(4 << 30)
		fs.Var(&size, "size", "image size")
		pos, err := parse(fs, args[1:], 1)
		if err != nil {
			return err
		}
		if err := diskgen.Generate(pos[0], int64(size), *seed, diskgen.Options{NonSparse: *zeros}); err != nil {
			return err
		}
		var count [3]int
		for _, k := range diskgen.Layout(int64(size), *seed, diskgen.Reference) {
			count[k]++
		}
		fmt.Fprintf(stdout, "gen %s: %s, seed %d, 1 MiB regions: %d zero, %d random, %d text, in %.1fs\n",
			pos[0], humanize.IBytes(uint64(size)), *seed, count[diskgen.Zero], count[diskgen.Random],
			count[diskgen.Text], time.Since(start).Seconds())
	case "sparse":
		size, data := sizeFlag(4<<30), sizeFlag(200<<20)
		fs.Var(&size, "size", "image size")
		fs.Var(&data, "data", "bytes of data among the holes")
		pos, err := parse(fs, args[1:], 1)
		if err != nil {
			return err
		}
		if err := diskgen.GenerateSparse(pos[0], int64(size), int64(data), *seed); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "sparse %s: %s with %s of data, seed %d, in %.1fs\n",
			pos[0], humanize.IBytes(uint64(size)), humanize.IBytes(uint64(data)), *seed, time.Since(start).Seconds())
	case "mutate":
		insert := sizeFlag(diskgen.NextNight.InsertBytes)
		changed := fs.Float64("changed", diskgen.NextNight.ChangedFraction, "share of 64 KiB blocks to overwrite")
		fs.Var(&insert, "insert", "bytes of new text inserted at the middle (0 for none)")
		pos, err := parse(fs, args[1:], 2)
		if err != nil {
			return err
		}
		st, err := diskgen.Mutate(pos[0], pos[1], *seed, diskgen.MutateOptions{
			ChangedFraction: *changed, InsertBytes: int64(insert), NonSparse: *zeros,
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "mutate %s -> %s: seed %d, %d of %d 64 KiB blocks changed (%d in holes), %s inserted at %d, %s, in %.1fs\n",
			pos[0], pos[1], *seed, st.ChangedBlocks, st.Blocks, st.ChangedInHoles,
			humanize.IBytes(uint64(st.InsertBytes)), st.InsertOffset, humanize.IBytes(uint64(st.DstSize)),
			time.Since(start).Seconds())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		return usageError{fmt.Errorf("unknown command %q", args[0])}
	}
	return nil
}
