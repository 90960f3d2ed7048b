// Package command holds outpost's CLI: one file per command, built on
// mitchellh/cli. Commands parse flags, call the agent or the API, and format
// output; they hold no business logic of their own.
package command
