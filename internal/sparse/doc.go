// Package sparse owns the file-system facts about empty space: which ranges
// of a file hold data (SEEK_DATA / SEEK_HOLE) and whether a buffer is all
// zeros. Backup uses it to skip holes without reading them, restore to verify
// a sparse output without reading its holes.
package sparse
