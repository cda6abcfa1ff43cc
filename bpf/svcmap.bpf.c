// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Every backend (fentry/fexit, kprobe/kretprobe, tracepoints): per-socket
 * ownership and byte counts kept in the kernel, lifecycle events out through
 * a ring buffer. Userspace loads, per hook, the entry point of the mechanism
 * its probe chose; the state tracepoint runs under all of them.
 *
 * Ownership is only ever taken in process context: connect (CLOSE->SYN_SENT),
 * listen (CLOSE->LISTEN), accept (inet_csk_accept's return, or the accept
 * syscalls' exit) and, only where no accept hook attached, the first
 * send/receive on a socket. With an accept hook no program runs per send or
 * receive: bytes are TCP's own counters (bytes_acked, bytes_received), read
 * at close and by the live walk. A connection costs one ring-buffer record,
 * its close, unless `trace` asks for every connect and accept. Transitions
 * that run in softirq (LISTEN->SYN_RECV, SYN_RECV->ESTABLISHED, a received
 * FIN) run on whatever task is current, which on loopback and veth is the
 * *client*; they may update the tuple and flags, never the owner.
 *
 * Each hook has one body (on_*); the fentry, kprobe, tp_btf and classic
 * tracepoint entry points only unpack their context. Userspace turns off
 * the ones it does not use with bpf_program__set_autoload().
 *
 * svcmap_sock_state keeps one byte per flag, set with a plain store:
 * process context and softirq update one entry at the same time, and an
 * OR into a shared flags byte lost the bit the other side set meanwhile
 * (an 8-bit atomic OR needs BPF atomics, 5.12, which 5.10 lacks). A flag
 * tested and then set (accept_sent) can still be seen unset by two CPUs at
 * once: the accept event may then go out twice, which userspace tolerates
 * (it counts connections from the socket table, not from accept events).
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "svcmap/bpf_abi.h"
#include "sock.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by userspace before load. */
const volatile __u64 wakeup_bytes = 256 * 1024;
/* Whether the send/receive hooks are attached (sock_send_length and
 * sock_recv_length arrived in 6.3). Without them no I/O ever names the
 * accepting process, so the accept event leaves at ESTABLISHED with the
 * listener's owner. */
const volatile bool io_hooks = true;
/* Whether connect is hooked at tcp_connect (fentry/kprobe); if so the state
 * tracepoint leaves CLOSE->SYN_SENT to it. */
const volatile bool connect_hooked = false;
/* Whether a process-context hook sees each accept (fexit/kretprobe
 * inet_csk_accept, or the accept syscalls' exit tracepoints): it then names
 * the accepting process, and no program needs to run per send or receive. */
const volatile bool accept_hooked = false;
/* Whether every connect and accept crosses the ring buffer (`svcmap trace`
 * prints them). Off for the agent: the close record carries everything and
 * the live table the rest, so a connection costs one record; only a
 * process's first connect or accept goes out, to wake the reader while
 * that process's /proc is still there to name it. */
const volatile bool lifecycle_events = true;
/* Whether to read TCP's health of each connection (sk_err at CLOSE,
 * total_retrans / srtt / rtt_min at destroy, the connect latency); off only
 * for the overhead benchmark's side-by-side run. */
const volatile bool tcp_health = true;
/* Argument counts that changed across kernels, read from BTF by userspace:
 * inet_csk_accept lost (flags, err, kern) for proto_accept_arg in 6.10
 * (commit 92ef0fd55ac8); tcp_recvmsg lost `nonblock` in 5.19 (commit
 * ec095263a965), which moves `flags`. fexit finds the return value after
 * the arguments. */
const volatile __u32 accept_nargs = 2;
const volatile __u32 recvmsg_nargs = 5;

/*
 * Live sockets keyed by struct sock address, which is unique while the
 * socket lives, removed at tcp_destroy_sock, and usable from every program
 * type (socket cookies need 5.12 in tracing programs and are not available
 * to kprobes). Userspace sizes it and only ever reads it.
 *
 * Not socket-local storage: measured on 6.18 (bench, 2 CPUs, 14k conn/s),
 * creating sk_storage at connect/accept cost ~750 ns against ~150 ns for an
 * insert into this preallocated hash, which outweighed its ~15 ns cheaper
 * lookups on send/receive; it is also unavailable to kprobes and before 5.11.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, u64);
	__type(value, struct svcmap_sock_state);
} socks SEC(".maps");

struct listen_key {
	u32 netns;
	u16 port;
	u16 _pad;
};

/* Listening port -> owner, for giving a just-created server socket its
 * listener's owner until the accepting process touches it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct listen_key);
	__type(value, struct svcmap_owner);
} listeners SEC(".maps");

/* Socket inode -> owner, written by userspace from /proc/<pid>/fd just
 * before the seed iterator runs; the only map userspace writes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, u64);
	__type(value, struct svcmap_owner);
} seed_owners SEC(".maps");

/* The seed walks' verdicts, by SVCMAP_SEED_* value. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SVCMAP_SEED_MAX);
	__type(key, u32);
	__type(value, u64);
} seed_counts SEC(".maps");

/*
 * Sockets the socks map refused (it was full), so that their every send and
 * receive does not try again, and each is counted once. LRU: it bounds
 * itself; a socket it forgets is tried (and counted) again. Cleared at
 * destroy, since the kernel reuses a struct sock's address.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, u64);
	__type(value, u8);
} refused SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 1024 * 1024);
} events SEC(".maps");

/*
 * Processes whose first socket event woke the reader, by tgid (the value is
 * the start time: a reused pid is new again). Userspace names a process
 * from its /proc, which a short-lived one (a health check's curl) takes
 * with it when it exits, often long before a batch would have woken the
 * reader. LRU: a process it forgets costs one more wakeup.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, u32);
	__type(value, u64);
} woken SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SVCMAP_STAT_MAX);
	__type(key, u32);
	__type(value, u64);
} stats SEC(".maps");

static __always_inline void stat_inc(u32 idx)
{
	u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += 1;
}

#define E2BIG 7
#define EEXIST 17

static __always_inline u8 state_flags(const struct svcmap_sock_state *st)
{
	return (st->owned ? SVCMAP_F_OWNED : 0) |
	       (st->accept_sent ? SVCMAP_F_ACCEPT_SENT : 0) |
	       (st->established ? SVCMAP_F_ESTABLISHED : 0) |
	       (st->fin_sent ? SVCMAP_F_FIN_SENT : 0) |
	       (st->seeded ? SVCMAP_F_SEEDED : 0);
}

static __always_inline bool first_of_process(const struct svcmap_owner *o)
{
	u64 *start;

	if (!o->tgid)
		return false;
	start = bpf_map_lookup_elem(&woken, &o->tgid);
	if (start && *start == o->start_ns)
		return false;
	bpf_map_update_elem(&woken, &o->tgid, &o->start_ns, BPF_ANY);
	return true;
}

static __always_inline void emit(u32 type, u64 key,
				 const struct svcmap_sock_state *st,
				 u64 tcp_sent, u64 tcp_received, u8 extra_flags,
				 const struct tcp_health *h, bool first)
{
	struct svcmap_event *e;
	u64 wake;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_inc(SVCMAP_STAT_RINGBUF_DROPS);
		return;
	}
	e->type = type;
	e->netns = st->netns;
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->sock_id = key;
	e->owner = st->owner;
	e->tuple = st->tuple;
	e->role = st->role;
	e->flags = state_flags(st) | extra_flags;
	e->_pad0 = 0;
	e->_pad1 = 0;
	e->open_ns = st->open_ns;
	e->bytes_sent = st->bytes_sent;
	e->bytes_received = st->bytes_received;
	e->tcp_bytes_sent = tcp_sent;
	e->tcp_bytes_received = tcp_received;
	e->total_retrans = h ? h->total_retrans : 0;
	e->srtt_us = h ? h->srtt_us : 0;
	e->rtt_min_us = h ? h->rtt_min_us : 0;
	e->connect_us = st->connect_us;
	e->outcome = st->outcome;
	e->reset_received = st->reset_received;
	e->reset_sent = st->reset_sent;
	__builtin_memset(e->_pad2, 0, sizeof(e->_pad2));
	/* Wake the reader only once a batch has built up, or for a process
	 * it has not heard of yet (`first`); it also drains on a 100 ms
	 * timer, so a quiet system still sees its events promptly. */
	wake = first || bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ?
		       BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(e, wake);
	stat_inc(SVCMAP_STAT_EVENTS);
}

/* A connect or accept: out to the reader under `trace`, and otherwise only
 * when it is its process's first. */
static __always_inline void announce(u32 type, u64 key,
				     const struct svcmap_sock_state *st)
{
	bool first = first_of_process(&st->owner);

	if (lifecycle_events || first)
		emit(type, key, st, 0, 0, 0, NULL, first);
}

/* The socks map was full for this socket: counted once, not tried again. */
static __always_inline void refuse(u64 key)
{
	u8 one = 1;

	if (bpf_map_update_elem(&refused, &key, &one, BPF_NOEXIST) == 0)
		stat_inc(SVCMAP_STAT_SOCKS_FULL);
}

/* A new entry for the socket: 0, -EEXIST (BPF_NOEXIST lost to a racing
 * creator, whose entry stays), or an error counted here. */
static __always_inline long
track_insert(u64 key, const struct sock *sk, bool btf, u8 role, u8 flags,
	     const struct svcmap_owner *owner, u64 update_flags)
{
	struct svcmap_sock_state st = {};
	long err;

	st.role = role;
	st.owned = !!(flags & SVCMAP_F_OWNED);
	st.established = !!(flags & SVCMAP_F_ESTABLISHED);
	st.fin_sent = !!(flags & SVCMAP_F_FIN_SENT);
	st.seeded = !!(flags & SVCMAP_F_SEEDED);
	st.netns = sock_netns(sk, btf);
	st.open_ns = bpf_ktime_get_boot_ns();
	sock_read_tuple(sk, btf, &st.tuple);
	if (owner)
		st.owner = *owner;
	else
		current_owner(&st.owner, btf);
	/* -EEXIST (BPF_NOEXIST lost to a racing creator) keeps that entry;
	 * -E2BIG is a full map, whatever the flags. */
	err = bpf_map_update_elem(&socks, &key, &st, update_flags);
	if (err == -E2BIG) {
		refuse(key);
		return err;
	}
	/* A bucket lock that could not be taken (-EBUSY before 6.15, then
	 * rqspinlock's -EDEADLK or -ETIMEDOUT): this socket goes unseen. */
	if (err && err != -EEXIST)
		stat_inc(SVCMAP_STAT_TRACK_ERRORS);
	return err;
}

/* track_insert(), and the entry (the racing creator's after -EEXIST).
 * Connect and the child's clone need no entry back: a lookup saved
 * twice per connection. */
static __always_inline struct svcmap_sock_state *
track(u64 key, const struct sock *sk, bool btf, u8 role, u8 flags,
      const struct svcmap_owner *owner, u64 update_flags)
{
	if (track_insert(key, sk, btf, role, flags, owner, update_flags) == -E2BIG)
		return NULL;
	return bpf_map_lookup_elem(&socks, &key);
}

#define EPIPE 32
#define ECONNABORTED 103
#define ECONNRESET 104
#define ETIMEDOUT 110
#define ECONNREFUSED 111

/*
 * X -> CLOSE: how the connection ended, from sk_err, which every path to
 * CLOSE sets before tcp_done() and which the process clears again when it
 * reads the error (sock_error()), so it is read now and not at destroy.
 * - From SYN_SENT: tcp_reset() sets ECONNREFUSED, tcp_write_err() ETIMEDOUT
 *   (or a soft error an ICMP left, such as EHOSTUNREACH), tcp_v4_err() the
 *   ICMP's errno; 0 is a process that closed before an answer came.
 * - A received reset: ECONNRESET, or EPIPE in CLOSE_WAIT (tcp_reset()).
 * - A reset sent: tcp_disconnect() (SO_LINGER 0, or unread data at close)
 *   moves ESTABLISHED, CLOSE_WAIT or FIN_WAIT1 to CLOSE before it sends the
 *   RST and sets ECONNRESET, so sk_err is still 0 here; tcp_abort() (ss -K)
 *   sets ECONNABORTED first. FIN_WAIT2 is left out: tcp_time_wait() closes
 *   it the same way after an orderly FIN exchange.
 * An orderly close (LAST_ACK, CLOSING, FIN_WAIT2, TIME_WAIT -> CLOSE, no
 * error) costs one field read and no lookup.
 */
static __always_inline void on_close_state(const struct sock *sk, bool btf,
					   u64 key, int oldstate)
{
	struct svcmap_sock_state *st;
	int err = KREAD(btf, sk, sk_err);
	bool abortable = oldstate == TCP_ESTABLISHED ||
			 oldstate == TCP_CLOSE_WAIT || oldstate == TCP_FIN_WAIT1;

	if (oldstate != TCP_SYN_SENT && !abortable && err != ECONNRESET &&
	    err != EPIPE)
		return;
	st = bpf_map_lookup_elem(&socks, &key);
	if (!st)
		return;
	if (tcp_health) {
		struct tcp_health h = {};

		if (oldstate == TCP_SYN_SENT)
			st->outcome =
				err == ECONNREFUSED ? SVCMAP_OUTCOME_REFUSED :
				err == ETIMEDOUT    ? SVCMAP_OUTCOME_TIMED_OUT :
						      SVCMAP_OUTCOME_ERROR;
		else if (err == ECONNRESET || err == EPIPE)
			st->reset_received = 1;
		else if (abortable && (err == 0 || err == ECONNABORTED))
			st->reset_sent = 1;
		/* A failed connect() and an abort both go on to
		 * tcp_disconnect(), which zeroes what destroy would read. */
		sock_tcp_health(sk, btf, &h);
		st->close_retrans = h.total_retrans;
		st->close_srtt_us = h.srtt_us;
		st->close_rtt_min_us = h.rtt_min_us;
	}
	if (st->established && st->role != SVCMAP_ROLE_UNKNOWN) {
		u64 sent, received;

		sock_tcp_payload(sk, btf, st->role, st->fin_sent, &sent,
				 &received);
		st->tcp_bytes_sent = sent;
		st->tcp_bytes_received = received;
	}
	st->closed = 1;
}

/* The transitions on_set_state acts on. Half of all (FIN_WAIT2,
 * CLOSE_WAIT, TIME_WAIT, ...) change nothing we keep. */
static __always_inline bool state_wanted(int oldstate, int newstate)
{
	switch (newstate) {
	case TCP_SYN_SENT:
		return oldstate == TCP_CLOSE && !connect_hooked;
	case TCP_SYN_RECV:
		return oldstate == TCP_LISTEN;
	case TCP_LISTEN:
	case TCP_ESTABLISHED:
	case TCP_FIN_WAIT1:
	case TCP_LAST_ACK:
	case TCP_CLOSE:
		return true;
	default:
		return false;
	}
}

static __always_inline int on_set_state(const struct sock *sk, bool btf,
					int oldstate, int newstate)
{
	struct svcmap_sock_state *st;
	struct listen_key lk = {};
	u64 key = (u64)sk;

	/* Before any helper or map call: most transitions change nothing. */
	if (!sk || !state_wanted(oldstate, newstate) || !sock_is_tcp(sk, btf))
		return 0;

	if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) {
		/* connect(): process context. The source port is not chosen
		 * yet (inet_hash_connect runs after this); ESTABLISHED fills it. */
		track_insert(key, sk, btf, SVCMAP_ROLE_CLIENT, SVCMAP_F_OWNED, NULL,
			     BPF_ANY);
		return 0;
	}
	if (newstate == TCP_LISTEN) {
		/* listen(): process context. */
		st = track(key, sk, btf, SVCMAP_ROLE_LISTENER, SVCMAP_F_OWNED, NULL,
			   BPF_ANY);
		if (!st)
			return 0;
		lk.netns = st->netns;
		lk.port = st->tuple.sport;
		bpf_map_update_elem(&listeners, &lk, &st->owner, BPF_ANY);
		emit(SVCMAP_EV_LISTEN, key, st, 0, 0, 0, NULL, first_of_process(&st->owner));
		return 0;
	}
	if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV) {
		/* A child cloned from a listener (inet_csk_clone_lock), in
		 * softirq: borrow the listener's owner, do not take current. */
		struct svcmap_owner *lo;

		lk.netns = sock_netns(sk, btf);
		lk.port = sock_local_port(sk, btf);
		lo = bpf_map_lookup_elem(&listeners, &lk);
		if (lo)
			track_insert(key, sk, btf, SVCMAP_ROLE_SERVER, 0, lo,
				     BPF_ANY);
		return 0;
	}

	if (newstate == TCP_CLOSE && oldstate != TCP_LISTEN) {
		on_close_state(sk, btf, key, oldstate);
		return 0;
	}
	st = bpf_map_lookup_elem(&socks, &key);
	if (!st)
		return 0;
	if (newstate == TCP_ESTABLISHED) {
		sock_read_tuple(sk, btf, &st->tuple);
		st->established = 1;
		if (st->role == SVCMAP_ROLE_CLIENT) {
			/* open_ns is when connect() sent the SYN; a seeded
			 * socket's is when the seed found it. */
			if (tcp_health && !st->seeded && !st->connect_us) {
				u64 us = (bpf_ktime_get_boot_ns() - st->open_ns) / 1000;

				st->connect_us = us ? (us > ~0U ? ~0U : us) : 1;
			}
			announce(SVCMAP_EV_CONNECT, key, st);
		} else if (st->role == SVCMAP_ROLE_SERVER && !io_hooks &&
			   !accept_hooked && !st->accept_sent) {
			st->accept_sent = 1;
			announce(SVCMAP_EV_ACCEPT, key, st);
		}
	} else if (newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK) {
		st->fin_sent = 1;
		/* Without I/O hooks a socket's live bytes are TCP's counters,
		 * which the live walk finds through its process's files. A
		 * close() leaves it an orphan that no fd table holds until
		 * its FIN exchange ends (by default tcp_time_wait() destroys
		 * an orphan as it reaches FIN_WAIT2, and destroy reads the
		 * final counts): keep its counters now. Data still unacked
		 * here shows at destroy. tcp_close() and tcp_shutdown() set
		 * the state before tcp_send_fin() queues the FIN, so no FIN
		 * is in the counters yet. */
		if (!io_hooks && st->established && st->role != SVCMAP_ROLE_UNKNOWN) {
			u64 sent, received;

			sock_tcp_payload(sk, btf, st->role, 0, &sent, &received);
			st->tcp_bytes_sent = sent;
			st->tcp_bytes_received = received;
		}
	} else if (oldstate == TCP_LISTEN && newstate == TCP_CLOSE) {
		struct svcmap_owner *lo;

		lk.netns = st->netns;
		lk.port = st->tuple.sport;
		lo = bpf_map_lookup_elem(&listeners, &lk);
		/* With SO_REUSEPORT another process may own the entry now. */
		if (lo && lo->tgid == st->owner.tgid)
			bpf_map_delete_elem(&listeners, &lk);
	}
	return 0;
}

static __always_inline int on_io(const struct sock *sk, bool btf, int ret,
				 int flags, bool send)
{
	struct svcmap_sock_state *st;
	u64 key = (u64)sk;

	if (ret <= 0 || !sk || !sock_is_tcp(sk, btf))
		return 0;
	/* MSG_PEEK leaves the data queued: it is counted when really read. */
	if (!send && (flags & MSG_PEEK))
		return 0;

	st = bpf_map_lookup_elem(&socks, &key);
	if (!st) {
		/* Refused once already: the map was full. */
		if (bpf_map_lookup_elem(&refused, &key))
			return 0;
		/* Older than the tracer. I/O is process context, so the
		 * current process owns it; NOEXIST keeps a racing creator's. */
		st = track(key, sk, btf, SVCMAP_ROLE_UNKNOWN,
			   SVCMAP_F_OWNED | SVCMAP_F_ESTABLISHED, NULL,
			   BPF_NOEXIST);
		if (!st)
			return 0;
	} else if (!st->owned) {
		/* First I/O on an accepted socket: this is the accepting
		 * process, the one the connection really belongs to. */
		current_owner(&st->owner, btf);
		st->owned = 1;
		if (st->role == SVCMAP_ROLE_SERVER && !st->accept_sent) {
			st->accept_sent = 1;
			announce(SVCMAP_EV_ACCEPT, key, st);
		}
	}
	if (send)
		__sync_fetch_and_add(&st->bytes_sent, ret);
	else
		__sync_fetch_and_add(&st->bytes_received, ret);
	return 0;
}

static __always_inline int on_destroy(const struct sock *sk, bool btf)
{
	struct svcmap_sock_state *st;
	u64 key = (u64)sk;
	u64 tcp_sent = 0, tcp_received = 0;
	struct tcp_health health = {};
	u8 extra = 0;

	if (!sk)
		return 0;
	st = bpf_map_lookup_elem(&socks, &key);
	if (!st) {
		/* Its address may come back as another socket. */
		bpf_map_delete_elem(&refused, &key);
		return 0;
	}
	if (st->role == SVCMAP_ROLE_LISTENER) {
		struct listen_key lk = { .netns = st->netns,
					 .port = st->tuple.sport };
		struct svcmap_owner *lo = bpf_map_lookup_elem(&listeners, &lk);

		if (lo && lo->tgid == st->owner.tgid)
			bpf_map_delete_elem(&listeners, &lk);
	}
	/* Either end of a connection whose move to ESTABLISHED we did not see
	 * (a run the kernel skipped, see recursion_misses) but which did
	 * establish, its SYN or SYN-ACK acked: what it moved is still in
	 * TCP's counters, and its tuple in the socket. */
	if ((st->role == SVCMAP_ROLE_CLIENT || st->role == SVCMAP_ROLE_SERVER) &&
	    !st->established && !st->closed && sock_syn_acked(sk, btf)) {
		sock_read_tuple(sk, btf, &st->tuple);
		st->established = 1;
		stat_inc(SVCMAP_STAT_ESTABLISHED_UNSEEN);
	}
	/* Without the role we cannot tell whether bytes_acked holds a SYN. */
	if (st->established && st->role != SVCMAP_ROLE_UNKNOWN) {
		if (st->closed) {
			tcp_sent = st->tcp_bytes_sent;
			tcp_received = st->tcp_bytes_received;
		} else {
			sock_tcp_payload(sk, btf, st->role, st->fin_sent,
					 &tcp_sent, &tcp_received);
		}
		extra = SVCMAP_F_TCP_COUNTERS;
	}
	if (tcp_health && st->role != SVCMAP_ROLE_LISTENER) {
		if (st->closed) {
			health.total_retrans = st->close_retrans;
			health.srtt_us = st->close_srtt_us;
			health.rtt_min_us = st->close_rtt_min_us;
		} else {
			sock_tcp_health(sk, btf, &health);
		}
	}
	if (st->role == SVCMAP_ROLE_SERVER && !st->owned)
		stat_inc(SVCMAP_STAT_UNOWNED_CLOSE);
	if (tcp_health && st->role == SVCMAP_ROLE_CLIENT && !st->established &&
	    !st->closed)
		stat_inc(SVCMAP_STAT_CONNECT_END_UNSEEN);
	/* Before the record is visible: see svcmap_sock_state.destroyed. */
	st->destroyed = 1;
	emit(SVCMAP_EV_CLOSE, key, st, tcp_sent, tcp_received, extra, &health, false);
	bpf_map_delete_elem(&socks, &key);
	return 0;
}

/* tcp_connect(): process context, source port already chosen. */
static __always_inline int on_connect(const struct sock *sk, bool btf)
{
	if (!sk || !sock_is_tcp(sk, btf))
		return 0;
	track_insert((u64)sk, sk, btf, SVCMAP_ROLE_CLIENT, SVCMAP_F_OWNED, NULL,
		     BPF_ANY);
	return 0;
}

/* inet_csk_accept() returning: in the accepting process, so the socket is
 * its own from now on, before any I/O. */
static __always_inline int on_accept(const struct sock *sk, bool btf,
				     bool task_btf, bool tcp_known)
{
	struct svcmap_sock_state *st;
	struct svcmap_owner owner;
	u64 key = (u64)sk;

	if (!sk || (!tcp_known && !sock_is_tcp(sk, btf)))
		return 0;
	st = bpf_map_lookup_elem(&socks, &key);
	if (st && st->owned)
		goto owned;
	/* Accepted by the process that listens (most servers): the owner
	 * the socket has from its listener is already right, and that
	 * process was announced with its listen. */
	if (st && st->owner.tgid == bpf_get_current_pid_tgid() >> 32) {
		st->owned = 1;
		if (!st->accept_sent) {
			st->accept_sent = 1;
			if (lifecycle_events)
				emit(SVCMAP_EV_ACCEPT, key, st, 0, 0, 0, NULL, false);
		}
		return 0;
	}
	/* `task_btf`: the current task through BTF even where the socket
	 * came through the helper path (the accept syscalls' exit). */
	current_owner(&owner, task_btf);
	if (!st) {
		st = track(key, sk, btf, SVCMAP_ROLE_SERVER,
			   SVCMAP_F_OWNED | SVCMAP_F_ESTABLISHED, &owner, BPF_NOEXIST);
		if (!st)
			return 0;
	} else {
		st->owner = owner;
		st->owned = 1;
	}
owned:
	if (!st->accept_sent) {
		st->accept_sent = 1;
		announce(SVCMAP_EV_ACCEPT, key, st);
	}
	return 0;
}

/*
 * accept(2) and accept4(2) returning, for the tracepoint backend: the
 * accepting process, once per connection, so that no program has to run
 * per send or receive to find it (the fentry and kprobe backends see
 * inet_csk_accept instead). The new descriptor is looked up in the
 * caller's own table: raw pointers, so through the helper path. Another
 * thread may close that fd meanwhile; file_tcp_sock() then finds some
 * other file or none, and a socket it finds is that process's anyway.
 * An accept that no syscall makes (io_uring) leaves the socket with its
 * listener's owner.
 */
static __always_inline int on_accept_fd(long fd)
{
	struct file *file = NULL;
	struct fdtable *fdt;
	struct file **fds;
	u32 max_fds;

	if (fd < 0)
		return 0;
	/* The task through BTF where the helper exists (5.11): plain loads
	 * instead of a helper call per field (measured: the accept program
	 * cost 1.2 us per call through the helper path on 6.18). */
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)) {
		struct task_struct *task = bpf_get_current_task_btf();

		fdt = task->files->fdt;
		max_fds = fdt->max_fds;
		fds = fdt->fd;
	} else {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();

		fdt = BPF_CORE_READ(task, files, fdt);
		max_fds = BPF_CORE_READ(fdt, max_fds);
		fds = BPF_CORE_READ(fdt, fd);
	}
	if (!fds || fd >= max_fds)
		return 0;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	return on_accept(file_tcp_sock(file), false, true, true);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int tp_accept4(struct syscall_trace_exit *ctx)
{
	return on_accept_fd(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int tp_accept(struct syscall_trace_exit *ctx)
{
	return on_accept_fd(ctx->ret);
}

/* kprobe -> kretprobe hand-over of the arguments, per thread. */
struct io_args {
	u64 sk;
	int flags;
	int _pad;
};

/* LRU: a thread that exits between the kprobe and its kretprobe (killed
 * mid-call) never takes its entry back out; the oldest go first instead of
 * the map filling up for good. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, u64);
	__type(value, struct io_args);
} inflight SEC(".maps");

static __always_inline void stash(const struct sock *sk, int flags)
{
	u64 id = bpf_get_current_pid_tgid();
	struct io_args a = { .sk = (u64)sk, .flags = flags };

	bpf_map_update_elem(&inflight, &id, &a, BPF_ANY);
}

static __always_inline int unstash_io(int ret, bool send)
{
	u64 id = bpf_get_current_pid_tgid();
	struct io_args *a = bpf_map_lookup_elem(&inflight, &id);
	struct io_args copy;

	if (!a)
		return 0;
	copy = *a;
	bpf_map_delete_elem(&inflight, &id);
	return on_io((const struct sock *)copy.sk, false, ret, copy.flags, send);
}

SEC("fentry/tcp_connect")
int BPF_PROG(fentry_connect, struct sock *sk)
{
	return on_connect(sk, true);
}

SEC("kprobe/tcp_connect")
int BPF_KPROBE(kprobe_connect, struct sock *sk)
{
	return on_connect(sk, false);
}

/*
 * ctx[n] for a constant n, as one load with a fixed offset. Choosing between
 * two slots in C lets clang load through a computed offset, which the
 * verifier refuses ("dereference of modified ctx ptr"). The verifier types
 * the loaded slot from the kernel's own prototype, so a pointer argument or
 * return value is a BTF pointer.
 */
#define CTX_SLOT(ctx, n)                                                    \
	({                                                                  \
		u64 __v;                                                    \
		asm volatile("%0 = *(u64 *)(%1 + %2)"                       \
			     : "=r"(__v)                                    \
			     : "r"(ctx), "i"((n) * 8));                     \
		__v;                                                        \
	})

SEC("fexit/inet_csk_accept")
int fexit_accept(u64 *ctx)
{
	if (accept_nargs == 2)
		return on_accept((struct sock *)CTX_SLOT(ctx, 2), true, true, false);
	return on_accept((struct sock *)CTX_SLOT(ctx, 4), true, true, false);
}

SEC("kretprobe/inet_csk_accept")
int BPF_KRETPROBE(kretprobe_accept, struct sock *sk)
{
	return on_accept(sk, false, false, false);
}

SEC("fexit/tcp_sendmsg")
int BPF_PROG(fexit_send, struct sock *sk, struct msghdr *msg, size_t size, int ret)
{
	return on_io(sk, true, ret, 0, true);
}

SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(kprobe_send, struct sock *sk)
{
	stash(sk, 0);
	return 0;
}

SEC("kretprobe/tcp_sendmsg")
int BPF_KRETPROBE(kretprobe_send, int ret)
{
	return unstash_io(ret, true);
}

/*
 * Received bytes from tcp_recvmsg's return value, not from tcp_cleanup_rbuf:
 * tcp_cleanup_rbuf(sk, copied) also runs for MSG_PEEK reads and after a
 * partial read is retried, so summing `copied` over-counts (bcc issue 5352,
 * tcptop). The return value is what the application really consumed.
 */
SEC("fexit/tcp_recvmsg")
int fexit_recv(u64 *ctx)
{
	struct sock *sk = (struct sock *)CTX_SLOT(ctx, 0);

	if (recvmsg_nargs == 6)  /* before 5.19: ..., nonblock, flags, addr_len */
		return on_io(sk, true, (int)CTX_SLOT(ctx, 6), (int)CTX_SLOT(ctx, 4), false);
	return on_io(sk, true, (int)CTX_SLOT(ctx, 5), (int)CTX_SLOT(ctx, 3), false);
}

SEC("kprobe/tcp_recvmsg")
int BPF_KPROBE(kprobe_recv, struct sock *sk)
{
	/* Through the CO-RE readers: a ctx offset picked at run time would be
	 * refused, as in fexit_recv. */
	int flags = recvmsg_nargs == 6 ? (int)PT_REGS_PARM5_CORE(ctx)
				       : (int)PT_REGS_PARM4_CORE(ctx);

	stash(sk, flags);
	return 0;
}

SEC("kretprobe/tcp_recvmsg")
int BPF_KRETPROBE(kretprobe_recv, int ret)
{
	return unstash_io(ret, false);
}

/* Close at destruction, not at tcp_close(): a child socket that was never
 * accepted is destroyed without tcp_close(), and after tcp_close() TCP may
 * still deliver (FIN_WAIT2, TIME_WAIT). tcp_v6_destroy_sock calls this one. */
SEC("fentry/tcp_v4_destroy_sock")
int BPF_PROG(fentry_destroy, struct sock *sk)
{
	return on_destroy(sk, true);
}

SEC("kprobe/tcp_v4_destroy_sock")
int BPF_KPROBE(kprobe_destroy, struct sock *sk)
{
	return on_destroy(sk, false);
}

static __always_inline void count_seed(u32 verdict)
{
	u64 *n = bpf_map_lookup_elem(&seed_counts, &verdict);

	if (n)
		__sync_fetch_and_add(n, 1);
}

/*
 * Start-up seed of one socket that may predate svcmap: an entry as if a hook
 * had seen it open, with `owner` (the process holding it, or NULL when none
 * is known). Its byte totals so far are TCP's own counters, which the close
 * event and live reads take whenever they are larger, so the bytes the hooks
 * count from now on are never added twice. Returns an SVCMAP_SEED_* verdict.
 */
static __always_inline u32 seed_one(const struct sock *sk, bool btf,
				    const struct svcmap_owner *owner,
				    u32 seeded_verdict)
{
	struct svcmap_sock_state *st;
	const struct svcmap_owner *lo;
	struct listen_key lk = {};
	u64 key = (u64)sk;
	u8 state, role, flags;

	state = KREAD(btf, sk, __sk_common.skc_state);
	if (state == TCP_CLOSE || state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV)
		return 0;
	lk.netns = sock_netns(sk, btf);
	lk.port = sock_local_port(sk, btf);
	if (state == TCP_LISTEN) {
		if (!owner)
			return SVCMAP_SEED_UNOWNED;
		if (bpf_map_lookup_elem(&socks, &key))
			return SVCMAP_SEED_KEPT;
		st = track(key, sk, btf, SVCMAP_ROLE_LISTENER,
			   SVCMAP_F_OWNED | SVCMAP_F_SEEDED, owner, BPF_NOEXIST);
		/* A listen() since attach keeps its own entry. */
		bpf_map_update_elem(&listeners, &lk, owner, BPF_NOEXIST);
		if (!st)
			return SVCMAP_SEED_FULL;
		/* As if listen() had just run: the port is known even if the
		 * listener closes before anything reads the live table. */
		emit(SVCMAP_EV_LISTEN, key, st, 0, 0, 0, NULL, first_of_process(&st->owner));
		return SVCMAP_SEED_LISTENER;
	}

	lo = bpf_map_lookup_elem(&listeners, &lk);
	role = lo ? SVCMAP_ROLE_SERVER : SVCMAP_ROLE_CLIENT;
	flags = SVCMAP_F_SEEDED;
	if (state != TCP_SYN_SENT && state != TCP_SYN_RECV)
		flags |= SVCMAP_F_ESTABLISHED;
	if (state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 ||
	    state == TCP_CLOSING || state == TCP_LAST_ACK)
		flags |= SVCMAP_F_FIN_SENT;

	st = bpf_map_lookup_elem(&socks, &key);
	if (st) {
		/* Tracked by its first I/O since attach, role unknown: the role
		 * found here lets its close use TCP's lifetime counters. */
		if (st->role == SVCMAP_ROLE_UNKNOWN) {
			st->role = role;
			st->seeded = 1;
			if (flags & SVCMAP_F_ESTABLISHED)
				st->established = 1;
			if (flags & SVCMAP_F_FIN_SENT)
				st->fin_sent = 1;
		}
		return SVCMAP_SEED_KEPT;
	}
	if (owner) {
		flags |= SVCMAP_F_OWNED;
	} else if (lo && !(flags & SVCMAP_F_FIN_SENT)) {
		/* Still in the accept queue: its listener's, until accepted. */
		owner = lo;
	} else {
		return SVCMAP_SEED_UNOWNED;	/* closed by its process, lingering */
	}
	st = track(key, sk, btf, role, flags, owner, BPF_NOEXIST);
	return st ? seeded_verdict : SVCMAP_SEED_FULL;
}

/* Start-up seed: one walk over the TCP sockets of the reader's netns
 * (iter/tcp lists listeners before connections, and finds sockets still in
 * an accept queue), run once per netns right after the hooks are attached,
 * with the owners userspace found through /proc in seed_owners. Nothing is
 * written to the seq file: output that fills the seq buffer stops the walk
 * and resumes it by an offset into the bucket, which loses sockets. */
SEC("iter/tcp")
int seed_socks(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct svcmap_owner *owner = NULL;
	const struct sock *sk;
	struct tcp_sock *tp;
	struct socket *sock;
	u64 ino = 0;
	u32 verdict;

	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);	/* NULL for TIME_WAIT and requests */
	if (!tp)
		return 0;
	sk = (const struct sock *)tp;
	sock = sk->sk_socket;
	if (sock && sock->file)
		ino = sock->file->f_inode->i_ino;
	if (ino)
		owner = bpf_map_lookup_elem(&seed_owners, &ino);
	verdict = seed_one(sk, true, owner, SVCMAP_SEED_SOCK);
	if (verdict)
		count_seed(verdict);
	return 0;
}

/* Which job the next walk_files walk does (enum svcmap_walk_mode); written
 * by userspace between walks. */
volatile __u32 walk_mode = SVCMAP_WALK_REFRESH;

/*
 * One walk over every open file of every process (all network namespaces at
 * once), for the TCP sockets among them:
 *
 * - SVCMAP_WALK_REFRESH copies TCP's own payload counts into each tracked
 *   socket's entry, which userspace then reads with a batch lookup. On
 *   kernels before 6.3 (no sock_send_length / sock_recv_length) these are
 *   the only byte counts of an open connection; on every kernel they carry
 *   what a socket sent before svcmap started.
 * - SVCMAP_WALK_SEED, once after the iter/tcp seed, tracks every socket a
 *   process holds that is still untracked, owned by that process. iter/tcp
 *   can skip a socket: tcp_seek_last_pos() falls from the listening hash
 *   into the established one with its offset at -1 and, when the two bucket
 *   numbers happen to match, steps over the first socket (seen on Debian's
 *   6.1 for a netns without listeners: 1 of 10,000, on every walk; not seen
 *   on 5.10, which has no batching, nor on 6.12).
 *
 * Not iter/bpf_map_elem over socks: its key is a sock address that may be
 * freed under us, and the 6.18 development hosts refuse that iterator
 * (EPERM) while allowing this one. Nothing is written to the seq file, so
 * one read() runs the whole walk.
 */
SEC("iter/task_file")
int walk_files(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct svcmap_sock_state *st;
	struct svcmap_owner owner = {};
	const struct sock *sk;
	u64 key, sent, received;
	u32 verdict;

	if (!task)
		return 0;
	sk = file_tcp_sock(ctx->file);
	if (!sk)
		return 0;
	key = (u64)sk;
	if (walk_mode == SVCMAP_WALK_SEED) {
		task_owner(task, true, &owner);
		owner.cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
		verdict = seed_one(sk, false, &owner, SVCMAP_SEED_RESCUED);
		/* Everything iter/tcp saw is counted already. */
		if (verdict != SVCMAP_SEED_KEPT && verdict)
			count_seed(verdict);
		return 0;
	}
	st = bpf_map_lookup_elem(&socks, &key);
	/* Without the role we cannot tell whether bytes_acked holds a SYN. */
	/* A closed socket's counters were kept as it closed: what the tcp_sock
	 * holds now may be tcp_disconnect()'s zeroes. */
	if (!st || !st->established || st->closed ||
	    st->role == SVCMAP_ROLE_UNKNOWN || st->role == SVCMAP_ROLE_LISTENER)
		return 0;
	sock_tcp_payload(sk, false, st->role, st->fin_sent, &sent, &received);
	/* Each u64 is stored whole; a racing reader sees the old or the new. */
	st->tcp_bytes_sent = sent;
	st->tcp_bytes_received = received;
	return 0;
}

/*
 * A new process: a child that has not exec'd runs its parent's program with
 * its parent's arguments, so userspace names it as its parent. Short-lived
 * children (a pre-fork server's, a load generator's) are gone before their
 * /proc can be read. Threads are not processes: skipped. tp_btf only (5.5+):
 * the classic tracepoint carries no start time to key the child by.
 */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(btf_fork, struct task_struct *parent, struct task_struct *child)
{
	struct svcmap_sock_state st = {};
	struct svcmap_owner p = {};

	if (child->pid != child->tgid)
		return 0;
	task_owner(child, true, &st.owner);
	st.owner.cgroup_id = bpf_get_current_cgroup_id();
	task_owner(parent, true, &p);
	st.open_ns = p.start_ns;
	st.tuple.family = AF_INET;  /* unused, but a valid value */
	emit(SVCMAP_EV_FORK, p.tgid, &st, 0, 0, 0, NULL, false);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(btf_set_state, const struct sock *sk, int oldstate, int newstate)
{
	return on_set_state(sk, true, oldstate, newstate);
}

SEC("tracepoint/sock/inet_sock_set_state")
int tp_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	return on_set_state(ctx->skaddr, false, ctx->oldstate, ctx->newstate);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(btf_send, struct sock *sk, int ret, int flags)
{
	return on_io(sk, true, ret, flags, true);
}

SEC("tracepoint/sock/sock_send_length")
int tp_send(struct trace_event_raw_sock_msg_length *ctx)
{
	return on_io(ctx->sk, false, ctx->ret, ctx->flags, true);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(btf_recv, struct sock *sk, int ret, int flags)
{
	return on_io(sk, true, ret, flags, false);
}

SEC("tracepoint/sock/sock_recv_length")
int tp_recv(struct trace_event_raw_sock_msg_length *ctx)
{
	return on_io(ctx->sk, false, ctx->ret, ctx->flags, false);
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(btf_destroy, struct sock *sk)
{
	return on_destroy(sk, true);
}

SEC("tracepoint/tcp/tcp_destroy_sock")
int tp_destroy(struct trace_event_raw_tcp_event_sk *ctx)
{
	return on_destroy(ctx->skaddr, false);
}
