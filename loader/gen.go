package loader

// The Makefile exports BPF_CLANG=clang-14, BPF2GO_STRIP=llvm-strip-14 and BPF_CFLAGS. bpf2go maps the
// source directory out of the debug info and strips DWARF, so regenerating gives identical files.
// The C enums are unused in BTF, so consts.go mirrors them and consts_test.go checks it against
// bpf/consts.h.
//go:generate go tool bpf2go -cc $BPF_CLANG -cflags $BPF_CFLAGS -target bpfel -type svc_key -type svc_value -type backend_value -type flow_key -type flow_value -type svc_conf -type persist_key -type lb_stats -type unconf_set lb ../bpf/lb.bpf.c -- -I/usr/include/x86_64-linux-gnu
