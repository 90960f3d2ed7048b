package rpc

import "syscall"

var syscallECONNREFUSED = syscall.ECONNREFUSED
