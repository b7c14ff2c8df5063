// Package guest holds the tests test/vm runs inside a VM booted with Debian's kernel, where
// IPVS exists: the ipvsfallback data plane against the real kernel, and `sluice run
// --dataplane ipvs` forwarding HTTP between network namespaces. Outside that VM (without
// SLUICE_VM_GUEST=1) its tests do nothing.
package guest
