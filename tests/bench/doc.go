// Package bench holds shiploop's benchmarks and load drivers. Run them with
// `make bench` (one at a time: they measure wall-clock time on a shared
// machine); each writes its figures, beside the goal or peer it is compared
// with, into its section of docs/benchmarks.md.
//
// They never fail on speed: a missed goal is reported in the table, not as a
// test failure. They fail only when the system under test misbehaves (a lost
// event, a failed build).
package bench
