// Package guest holds the tests test/vm runs inside a VM booted with Debian's kernel, where
// IPVS exists: the ipvsfallback data plane against the real kernel, `sluice run --dataplane
// ipvs` forwarding HTTP between network namespaces, `--dataplane auto` falling back to IPVS
// when bpf() is denied, VRRP ownership of the IPVS services, and the conformance suite
// (test/conformance) against IPVS. Outside that VM (without SLUICE_VM_GUEST=1) its tests do
// nothing.
package guest
