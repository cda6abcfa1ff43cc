/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The one place that reads struct sock, struct tcp_sock and the current task.
 * Everything goes through CO-RE so that one object runs on every kernel the
 * matrix covers; BPF_CORE_READ also works on the untrusted pointers that
 * classic tracepoints hand us, which keeps one body per hook.
 */
#ifndef SVCMAP_SOCK_BPF_H_
#define SVCMAP_SOCK_BPF_H_

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "svcmap/bpf_abi.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define SOCK_STREAM 1
#define MSG_PEEK 2

/*
 * KREAD(btf, ptr, field): one field of a kernel object. tp_btf (and fentry)
 * programs get BTF-typed pointers that the verifier lets us load from
 * directly: a plain load, relocated by CO-RE like BPF_CORE_READ, with no
 * helper call. Classic tracepoints (and kprobes) get raw pointers, which must
 * go through bpf_probe_read_kernel. `btf` is a compile-time constant in every
 * caller, so only one arm is compiled. Measured on 6.18: the helper path
 * costs about 20-40 ns per read.
 */
#define KREAD(btf, ptr, field) ((btf) ? (ptr)->field : BPF_CORE_READ(ptr, field))

/* task_struct::real_start_time was renamed start_boottime in 5.5
 * (commit cf25e24db61c "time: Rename tsk->real_start_time to ->start_boottime"). */
struct task_struct___pre55 {
	u64 real_start_time;
} __attribute__((preserve_access_index));

/* Before 5.6 sk_protocol was an 8-bit bitfield (commit bf9765145b85
 * "sock: Make sk_protocol a 16-bit value"); the bitfield reads handle both. */
static __always_inline bool sock_is_tcp(const struct sock *sk, bool btf)
{
	u16 family = KREAD(btf, sk, __sk_common.skc_family);
	u16 protocol = btf ? BPF_CORE_READ_BITFIELD(sk, sk_protocol)
			   : BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);

	if (family != AF_INET && family != AF_INET6)
		return false;
	return protocol == IPPROTO_TCP;
}

static __always_inline u32 sock_netns(const struct sock *sk, bool btf)
{
	struct net *net = KREAD(btf, sk, __sk_common.skc_net.net);

	return KREAD(btf, net, ns.inum);
}

static __always_inline u16 sock_local_port(const struct sock *sk, bool btf)
{
	return KREAD(btf, sk, __sk_common.skc_num);
}

static __always_inline void sock_read_tuple(const struct sock *sk, bool btf,
					    struct svcmap_tuple *t)
{
	u16 family = KREAD(btf, sk, __sk_common.skc_family);

	t->family = family;
	t->sport = KREAD(btf, sk, __sk_common.skc_num);
	t->dport = bpf_ntohs(KREAD(btf, sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		*(u32 *)t->saddr = KREAD(btf, sk, __sk_common.skc_rcv_saddr);
		*(u32 *)t->daddr = KREAD(btf, sk, __sk_common.skc_daddr);
	} else if (btf) {
		__builtin_memcpy(t->saddr, &sk->__sk_common.skc_v6_rcv_saddr,
				 sizeof(t->saddr));
		__builtin_memcpy(t->daddr, &sk->__sk_common.skc_v6_daddr,
				 sizeof(t->daddr));
	} else {
		/* Not BPF_CORE_READ_INTO: it sizes the read by *dst, which
		 * for an array is one element. */
		bpf_core_read(t->saddr, sizeof(t->saddr),
			      &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(t->daddr, sizeof(t->daddr),
			      &sk->__sk_common.skc_v6_daddr);
	}
}

/* The tcp_sock of a TCP socket. A BTF pointer keeps its type: the verifier
 * only lets us at the tcp_sock part through bpf_skc_to_tcp_sock() (5.9),
 * which is NULL for what is not a full TCP socket. */
static __always_inline const struct tcp_sock *sock_tcp(const struct sock *sk,
							bool btf)
{
	return btf ? bpf_skc_to_tcp_sock((void *)sk)
		   : (const struct tcp_sock *)sk;
}

/*
 * Payload bytes according to TCP itself. bytes_acked counts the SYN of an
 * active opener and an acknowledged FIN; bytes_received counts a received
 * FIN (RFC 4898 counts sequence space, not payload). tcp_fin() sets SOCK_DONE,
 * and tcp_done() does not, so it tells a FIN from a reset.
 */
static __always_inline void sock_tcp_payload(const struct sock *sk, bool btf,
					     u8 role, u8 fin_sent, u64 *sent,
					     u64 *received)
{
	const struct tcp_sock *tp = sock_tcp(sk, btf);

	if (!tp) {
		*sent = *received = 0;
		return;
	}
	u64 acked = KREAD(btf, tp, bytes_acked);
	u64 rcvd = KREAD(btf, tp, bytes_received);
	u64 sk_flags = KREAD(btf, sk, __sk_common.skc_flags);
	u32 snd_una = KREAD(btf, tp, snd_una);
	u32 write_seq = KREAD(btf, tp, write_seq);
	u64 ctl = 0;

	if (role == SVCMAP_ROLE_CLIENT && acked > 0)
		ctl++;
	if (fin_sent && snd_una == write_seq)
		ctl++;
	*sent = acked > ctl ? acked - ctl : 0;

	ctl = (sk_flags >> bpf_core_enum_value(enum sock_flags, SOCK_DONE)) & 1;
	*received = rcvd > ctl ? rcvd - ctl : 0;
}

/* Whether TCP had this socket's SYN (or a child's SYN-ACK) acked:
 * bytes_acked counts it, and tcp_disconnect() zeroes it again after a
 * failed connect. */
static __always_inline bool sock_syn_acked(const struct sock *sk, bool btf)
{
	const struct tcp_sock *tp = sock_tcp(sk, btf);

	return tp && KREAD(btf, tp, bytes_acked) > 0;
}

/* TCP's own per-connection health, as tcp_get_info() reports it: what
 * `ss -ti` shows as retrans (total), rtt and minrtt. */
struct tcp_health {
	u32 total_retrans;
	u32 srtt_us;
	u32 rtt_min_us;
};

static __always_inline void sock_tcp_health(const struct sock *sk, bool btf,
					    struct tcp_health *h)
{
	const struct tcp_sock *tp = sock_tcp(sk, btf);
	u32 min;

	if (!tp)
		return;
	h->total_retrans = KREAD(btf, tp, total_retrans);
	/* srtt_us holds 8 times the smoothed RTT (tcp_rtt_estimator). */
	h->srtt_us = KREAD(btf, tp, srtt_us) >> 3;
	/* minmax_get(&tp->rtt_min); ~0U until the first sample. */
	min = KREAD(btf, tp, rtt_min.s[0].v);
	h->rtt_min_us = min == ~0U ? 0 : min;
}

/* Process identity of `task`'s thread group; the cgroup id is the caller's
 * to fill. */
static __always_inline void task_owner(struct task_struct *task, bool task_btf,
				       struct svcmap_owner *o)
{
	struct task_struct *leader = KREAD(task_btf, task, group_leader);

	o->tgid = KREAD(task_btf, task, tgid);
	if (bpf_core_field_exists(leader->start_boottime)) {
		o->start_ns = KREAD(task_btf, leader, start_boottime);
	} else {
		struct task_struct___pre55 *old = (void *)leader;

		o->start_ns = BPF_CORE_READ(old, real_start_time);
	}
	/* The thread group leader's name, not the thread's: a service is a
	 * process, and worker threads often rename themselves. */
	BPF_CORE_READ_STR_INTO(&o->comm, leader, comm);
}

static __always_inline void current_owner(struct svcmap_owner *o, bool btf)
{
	/* bpf_get_current_task_btf() arrived in 5.11 (commit 3ca1032ab7ab);
	 * on 5.10 the branch is dead after CO-RE and the raw pointer is
	 * read through the helper path. */
	bool task_btf = btf && bpf_core_enum_value_exists(enum bpf_func_id,
							   BPF_FUNC_get_current_task_btf);
	struct task_struct *task = task_btf ? bpf_get_current_task_btf()
					    : (struct task_struct *)bpf_get_current_task();

	task_owner(task, task_btf, o);
	o->tgid = bpf_get_current_pid_tgid() >> 32;
	o->cgroup_id = bpf_get_current_cgroup_id();
}

#define S_IFMT 00170000
#define S_IFSOCK 0140000

/*
 * The TCP socket behind an open file, or NULL. The file's reference pins
 * the socket, but file->private_data is a void pointer, which the verifier
 * types as a plain number: the socket is read through the helper path.
 * A sockfs file points back at its socket; an O_PATH file on a socket
 * inode does not, so the back pointer tells them apart.
 */
static __always_inline const struct sock *file_tcp_sock(struct file *file)
{
	struct socket *sock;
	const struct sock *sk;
	umode_t mode;

	if (!file)
		return NULL;
	mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock || BPF_CORE_READ(sock, file) != file)
		return NULL;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || !sock_is_tcp(sk, false))
		return NULL;
	return sk;
}

#endif /* SVCMAP_SOCK_BPF_H_ */
