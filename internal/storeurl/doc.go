// Package storeurl owns turning a repository URL into a store: parsing
// file://, s3:// and vault https:// URLs, opening the provider they name
// (the local directory, the S3 bucket with keys from the environment, or
// the vault client with its credential and CA), and the decorators every
// binary wraps it in. It is the one place a store is assembled from a URL.
package storeurl
