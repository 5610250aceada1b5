// Package localstate is what the agent remembers on its own machine about
// a repository, outside the repository, so that the store cannot make it
// forget: the newest snapshot it wrote under each name. A store or vault
// that hides the newest snapshots (a rollback) would otherwise make
// "restore latest" silently return an older one; with this memory the
// agent notices and warns. It lives in the agent's state directory,
// $XDG_STATE_HOME/coffer/<repository ID>/ (default ~/.local/state), and
// losing it only loses the warning.
package localstate
