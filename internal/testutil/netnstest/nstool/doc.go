// Command nstool is the helper netnstest builds and runs inside a test's
// network namespace, so that the test process never talks to namespace
// addresses itself:
//
//	nstool get URL          exit 0 when URL answers 200 within 5 s, else 1
//	nstool ls HOST:PORT BUCKET PREFIX
//	                        one "SIZE NAME" line per object under PREFIX
//	                        (plain HTTP; keys from AWS_ACCESS_KEY_ID and
//	                        AWS_SECRET_ACCESS_KEY)
package main
