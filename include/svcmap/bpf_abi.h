/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The one header shared by the BPF programs (bpf/) and userspace (src/).
 * Fixed-width types, explicit padding, event type first. The C++ side
 * static_asserts every size and offset it relies on (src/kernel/abi.cc), so
 * a change here that is not mirrored there fails the build.
 */
#ifndef SVCMAP_BPF_ABI_H_
#define SVCMAP_BPF_ABI_H_

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define SVCMAP_COMM_LEN 16
#define SVCMAP_ADDR_LEN 16

/* Lifecycle events carried by the ring buffer. */
enum svcmap_event_type {
	SVCMAP_EV_LISTEN = 1,
	SVCMAP_EV_CONNECT = 2,
	SVCMAP_EV_ACCEPT = 3,
	SVCMAP_EV_CLOSE = 4,
	/* A new process (not a thread). `owner` is the child; the parent's
	 * tgid is in sock_id and its start_ns in open_ns; the rest is unused. */
	SVCMAP_EV_FORK = 5,
};

enum svcmap_role {
	SVCMAP_ROLE_UNKNOWN = 0,  /* socket older than the tracer, seen on I/O */
	SVCMAP_ROLE_CLIENT = 1,   /* this side called connect() */
	SVCMAP_ROLE_SERVER = 2,   /* created by a listener */
	SVCMAP_ROLE_LISTENER = 3,
};

/* svcmap_event.flags (svcmap_sock_state keeps one byte per flag) */
enum svcmap_sock_flag {
	/* The owner was taken in process context (connect, listen, I/O). A
	 * server socket without it carries its listener's owner. */
	SVCMAP_F_OWNED = 1 << 0,
	SVCMAP_F_ACCEPT_SENT = 1 << 1,
	SVCMAP_F_ESTABLISHED = 1 << 2,
	SVCMAP_F_FIN_SENT = 1 << 3,
	/* Close events only: tcp_bytes_sent/received were read. */
	SVCMAP_F_TCP_COUNTERS = 1 << 4,
	/* Found by the start-up seed: it existed before svcmap. */
	SVCMAP_F_SEEDED = 1 << 5,
};

/* How a connect attempt ended, read from sk_err as SYN_SENT goes to CLOSE
 * (svcmap_sock_state.outcome). */
enum svcmap_outcome {
	SVCMAP_OUTCOME_NONE = 0,       /* established, or still trying */
	SVCMAP_OUTCOME_REFUSED = 1,    /* RST in answer to the SYN (ECONNREFUSED) */
	SVCMAP_OUTCOME_TIMED_OUT = 2,  /* SYN retries exhausted (ETIMEDOUT) */
	SVCMAP_OUTCOME_ERROR = 3,      /* any other errno, or given up by its process */
};

/* What the start-up seed did with each socket, counted per verdict in the
 * seed_counts map. */
enum svcmap_seed_result {
	SVCMAP_SEED_SOCK = 1,      /* tracked from now on, totals from TCP */
	SVCMAP_SEED_LISTENER = 2,
	SVCMAP_SEED_KEPT = 3,      /* already tracked (the hooks saw it first) */
	SVCMAP_SEED_UNOWNED = 4,   /* no process holds it: skipped */
	SVCMAP_SEED_FULL = 5,      /* socks map full */
	SVCMAP_SEED_RESCUED = 6,   /* tracked by the file walk: iter/tcp skipped it */
	SVCMAP_SEED_MAX = 8,
};

/* What the next walk of the iter/task_file program does (its walk_mode). */
enum svcmap_walk_mode {
	SVCMAP_WALK_REFRESH = 0,   /* TCP's counters into every tracked entry */
	SVCMAP_WALK_SEED = 1,      /* track every process-held socket not yet tracked */
};

struct svcmap_owner {
	__u32 tgid;
	__u32 _pad0;
	__u64 start_ns;   /* group leader's start_boottime, ns since boot */
	__u64 cgroup_id;
	char comm[SVCMAP_COMM_LEN]; /* group leader's comm */
};

/* Addresses in network byte order; IPv4 in the first 4 bytes. Ports in host
 * byte order. "s" is always the local side. */
struct svcmap_tuple {
	__u8 saddr[SVCMAP_ADDR_LEN];
	__u8 daddr[SVCMAP_ADDR_LEN];
	__u16 sport;
	__u16 dport;
	__u16 family;     /* AF_INET or AF_INET6 */
	__u16 _pad0;
};

/* Per-socket state, the value of the socks map (key: struct sock address). */
struct svcmap_sock_state {
	struct svcmap_owner owner;
	struct svcmap_tuple tuple;
	__u64 bytes_sent;      /* updated with atomic adds */
	__u64 bytes_received;
	__u64 open_ns;         /* bpf_ktime_get_boot_ns() */
	__u32 netns;           /* netns inode */
	__u8 role;             /* enum svcmap_role */
	/* One byte per flag (SVCMAP_F_*), each only ever set, by a plain
	 * store: process context and softirq update one entry at the same
	 * time, and a read-modify-write of a shared flags byte loses the bit
	 * the other side set in between. */
	__u8 owned;
	__u8 accept_sent;
	__u8 established;
	__u8 fin_sent;
	__u8 seeded;
	/* Set as the socket goes to CLOSE, by the state tracepoint (which
	 * runs in softirq for a received reset): enum svcmap_outcome for a
	 * connect that never established, else whether a reset ended it. */
	__u8 outcome;
	__u8 reset_received;
	__u8 reset_sent;
	/* Set with the close_* fields below and tcp_bytes_* as the socket
	 * went to CLOSE (only where a connect failed or a reset ended it):
	 * tcp_disconnect() zeroes bytes_acked, bytes_received, srtt_us and
	 * total_retrans right after that transition, before destroy reads
	 * them (commit c13c48c00a6b for total_retrans, 5.6). */
	__u8 closed;
	/* Set by destroy before it queues the close and deletes the entry: a
	 * live read that copies the entry in between skips it, so no socket
	 * whose close userspace may have taken already is read as open. */
	__u8 destroyed;
	__u8 _pad0;
	/* Payload bytes by the tcp_sock counters, as the last live refresh
	 * (iter/task_file) found them, or as the process closed or shut the
	 * socket down (FIN_WAIT1, LAST_ACK: an orphan is in no fd table for
	 * the refresh to find); 0 until either has run. Wherever accept is
	 * hooked (no send/receive programs), and on kernels before 6.3, they
	 * are the only byte counts of an open connection. */
	__u64 tcp_bytes_sent;
	__u64 tcp_bytes_received;
	/* SYN sent to ESTABLISHED, us, for a client socket opened while we
	 * watched (0: none). */
	__u32 connect_us;
	/* TCP's health as the socket went to CLOSE, when `closed` is set. */
	__u32 close_retrans;
	__u32 close_srtt_us;
	__u32 close_rtt_min_us;
};

struct svcmap_event {
	__u32 type;            /* enum svcmap_event_type */
	__u32 netns;
	__u64 ts_ns;           /* bpf_ktime_get_boot_ns() */
	__u64 sock_id;         /* stable for the socket's lifetime */
	struct svcmap_owner owner;
	struct svcmap_tuple tuple;
	__u8 role;
	__u8 flags;
	__u16 _pad0;
	__u32 _pad1;
	__u64 open_ns;
	/* CLOSE: totals counted at send/receive. */
	__u64 bytes_sent;
	__u64 bytes_received;
	/* CLOSE: payload bytes by the tcp_sock counters (bytes_acked and
	 * bytes_received, less SYN and FIN), for the cross-check. */
	__u64 tcp_bytes_sent;
	__u64 tcp_bytes_received;
	/* CLOSE: TCP's own view of the connection's health, read from the
	 * tcp_sock at destroy (0 when there was none). */
	__u32 total_retrans;   /* segments retransmitted, SYNs included */
	__u32 srtt_us;         /* smoothed RTT; 0: no sample */
	__u32 rtt_min_us;      /* minimum RTT seen; 0: no sample */
	__u32 connect_us;      /* as in svcmap_sock_state */
	__u8 outcome;          /* enum svcmap_outcome */
	__u8 reset_received;
	__u8 reset_sent;
	__u8 _pad2[5];
};

/* Index into the per-CPU stats array. */
enum svcmap_stat {
	SVCMAP_STAT_RINGBUF_DROPS = 0,  /* ring buffer full */
	SVCMAP_STAT_SOCKS_FULL = 1,     /* socks map full: sockets refused, each once */
	SVCMAP_STAT_EVENTS = 2,         /* events submitted */
	SVCMAP_STAT_UNOWNED_CLOSE = 3,  /* server socket closed with no I/O */
	SVCMAP_STAT_TRACK_ERRORS = 4,   /* socks map update failed, not full */
	/* A connect that never established destroyed without its CLOSE
	 * transition seen: how it ended is unknown (counted as an error). */
	SVCMAP_STAT_CONNECT_END_UNSEEN = 5,
	/* A connection (either end) whose ESTABLISHED transition went unseen
	 * though TCP had its SYN or SYN-ACK acked: found at destroy, and
	 * counted as the connection it was, with TCP's counters. */
	SVCMAP_STAT_ESTABLISHED_UNSEEN = 6,
	SVCMAP_STAT_MAX = 7,
};

#endif /* SVCMAP_BPF_ABI_H_ */
