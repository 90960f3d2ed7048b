// Package acl holds outpost's access control: who a request comes from
// (Identity) and what it may do.
package acl
