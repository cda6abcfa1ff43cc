// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Empty programs, one per (hook, mechanism). The feature probe loads and
 * attaches each one alone: a symbol in kallsyms or a type in BTF does not
 * prove that the kernel will let us attach (fentry can be refused with EPERM
 * by lockdown or an LSM, and kprobes may be compiled out).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("fentry/tcp_connect")
int BPF_PROG(fentry_tcp_connect, struct sock *sk) { return 0; }

SEC("kprobe/tcp_connect")
int BPF_KPROBE(kprobe_tcp_connect, struct sock *sk) { return 0; }

SEC("fexit/inet_csk_accept")
int BPF_PROG(fexit_inet_csk_accept) { return 0; }

SEC("kretprobe/inet_csk_accept")
int BPF_KRETPROBE(kretprobe_inet_csk_accept) { return 0; }

SEC("fexit/tcp_sendmsg")
int BPF_PROG(fexit_tcp_sendmsg) { return 0; }

SEC("kretprobe/tcp_sendmsg")
int BPF_KRETPROBE(kretprobe_tcp_sendmsg) { return 0; }

SEC("tracepoint/syscalls/sys_exit_accept4")
int tp_accept4(void *ctx) { return 0; }

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(btf_set_state) { return 0; }

SEC("tracepoint/sock/inet_sock_set_state")
int tp_set_state(void *ctx) { return 0; }

SEC("tp_btf/sock_send_length")
int BPF_PROG(btf_send) { return 0; }

SEC("tracepoint/sock/sock_send_length")
int tp_send(void *ctx) { return 0; }

SEC("tp_btf/sock_recv_length")
int BPF_PROG(btf_recv) { return 0; }

SEC("tracepoint/sock/sock_recv_length")
int tp_recv(void *ctx) { return 0; }

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(btf_destroy) { return 0; }

SEC("tracepoint/tcp/tcp_destroy_sock")
int tp_destroy(void *ctx) { return 0; }

SEC("fexit/tcp_recvmsg")
int BPF_PROG(fexit_tcp_recvmsg) { return 0; }

SEC("kretprobe/tcp_recvmsg")
int BPF_KRETPROBE(kretprobe_tcp_recvmsg) { return 0; }

SEC("fentry/tcp_v4_destroy_sock")
int BPF_PROG(fentry_tcp_v4_destroy_sock) { return 0; }

SEC("kprobe/tcp_v4_destroy_sock")
int BPF_KPROBE(kprobe_tcp_v4_destroy_sock) { return 0; }

/* The start-up seed walks TCP sockets with iter/tcp, and every process's
 * files with iter/task_file, which also serves the live refresh. */
SEC("iter/tcp")
int iter_tcp(struct bpf_iter__tcp *ctx) { return 0; }

SEC("iter/task_file")
int iter_task_file(struct bpf_iter__task_file *ctx) { return 0; }
