// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Benchmark-only event producer: one BPF_PROG_TEST_RUN of `produce` writes
 * nr_events lifecycle records into a ring buffer, exactly as the tracer's
 * programs do (reserve, fill, submit without a wakeup), so that
 * bench/ingestbench.cc can time the userspace side of svcmap on records the
 * kernel really wrote. Connection k is connect, accept, close (client), close
 * (server); the templates (one per kind) come from userspace.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "svcmap/bpf_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u32 nr_clients = 64;
const volatile __u32 nr_servers = 16;

/* Written by userspace before each run. The templates are not rodata: clang
 * folds a copy out of a zero-initialised const array into zeroes. */
struct svcmap_event tmpl[4];
volatile __u64 first_conn;
volatile __u32 nr_events;
volatile __u64 drops;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024 * 1024);
} events SEC(".maps");

static long produce_one(u32 i, void *ctx)
{
	u64 conn = first_conn + i / 4;
	u32 kind = i % 4;
	struct svcmap_event *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&drops, 1);
		return 0;
	}
	if (kind == 0)
		__builtin_memcpy(e, &tmpl[0], sizeof(*e));
	else if (kind == 1)
		__builtin_memcpy(e, &tmpl[1], sizeof(*e));
	else if (kind == 2)
		__builtin_memcpy(e, &tmpl[2], sizeof(*e));
	else
		__builtin_memcpy(e, &tmpl[3], sizeof(*e));
	/* Client side (connect, its close) and server side (accept, its close). */
	if (kind == 0 || kind == 2) {
		e->sock_id = conn * 2 + 1;
		e->owner.tgid = 10000 + conn % nr_clients;
		e->tuple.sport = 32768 + conn % 28000;
		e->tuple.dport = 3306 + conn % nr_servers;
	} else {
		e->sock_id = conn * 2 + 2;
		e->owner.tgid = 20000 + conn % nr_servers;
		e->tuple.sport = 3306 + conn % nr_servers;
		e->tuple.dport = 32768 + conn % 28000;
	}
	e->owner.start_ns = (u64)e->owner.tgid * 1000000000ULL;
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->open_ns = e->ts_ns - 1000;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}

SEC("raw_tp")
int produce(void *ctx)
{
	bpf_loop(nr_events, produce_one, NULL, 0);
	return 0;
}
