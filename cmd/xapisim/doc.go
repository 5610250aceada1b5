// Command xapisim is the XenAPI simulator's command line: it makes a state
// folder, adds VMs and disks, writes into them as a guest would, turns
// field failures on and off, and serves xapi's JSON-RPC, HTTP and NBD
// interfaces over the folder. The logic lives in internal/xenapi/xapisim;
// this package only parses flags. See README.md ("The XenAPI simulator").
package main
