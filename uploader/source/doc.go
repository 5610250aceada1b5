// Package source owns what a backup reads: the Source interface (a disk as
// an io.ReaderAt with its size, its data ranges and a last check that it did
// not change), the SourceError that fails one disk without stopping the
// others, and its implementations: raw image files and block devices
// (ImageSource), and XenServer VDIs read over NBD (NBDSource). It imports
// nothing of the pipeline, so a source is written without an import cycle.
package source
