// Pins the layout of include/svcmap/bpf_abi.h, which the BPF programs and
// this code both compile: a change on one side that is not mirrored here
// fails the build instead of corrupting events.
#include <cstddef>

#include "svcmap/bpf_abi.h"

static_assert(sizeof(struct svcmap_owner) == 40);
static_assert(offsetof(struct svcmap_owner, start_ns) == 8);
static_assert(offsetof(struct svcmap_owner, comm) == 24);

static_assert(sizeof(struct svcmap_tuple) == 40);
static_assert(offsetof(struct svcmap_tuple, daddr) == 16);
static_assert(offsetof(struct svcmap_tuple, sport) == 32);
static_assert(offsetof(struct svcmap_tuple, family) == 36);

static_assert(sizeof(struct svcmap_sock_state) == 152);
static_assert(offsetof(struct svcmap_sock_state, tuple) == 40);
static_assert(offsetof(struct svcmap_sock_state, bytes_sent) == 80);
static_assert(offsetof(struct svcmap_sock_state, netns) == 104);
static_assert(offsetof(struct svcmap_sock_state, role) == 108);
static_assert(offsetof(struct svcmap_sock_state, owned) == 109);
static_assert(offsetof(struct svcmap_sock_state, seeded) == 113);
static_assert(offsetof(struct svcmap_sock_state, tcp_bytes_sent) == 120);
static_assert(offsetof(struct svcmap_sock_state, outcome) == 114);
static_assert(offsetof(struct svcmap_sock_state, reset_sent) == 116);
static_assert(offsetof(struct svcmap_sock_state, tcp_bytes_received) == 128);
static_assert(offsetof(struct svcmap_sock_state, connect_us) == 136);
static_assert(offsetof(struct svcmap_sock_state, closed) == 117);
static_assert(offsetof(struct svcmap_sock_state, destroyed) == 118);
static_assert(offsetof(struct svcmap_sock_state, close_rtt_min_us) == 148);

static_assert(offsetof(struct svcmap_event, type) == 0, "event type first");
static_assert(offsetof(struct svcmap_event, sock_id) == 16);
static_assert(offsetof(struct svcmap_event, owner) == 24);
static_assert(offsetof(struct svcmap_event, tuple) == 64);
static_assert(offsetof(struct svcmap_event, role) == 104);
static_assert(offsetof(struct svcmap_event, open_ns) == 112);
static_assert(offsetof(struct svcmap_event, tcp_bytes_received) == 144);
static_assert(offsetof(struct svcmap_event, total_retrans) == 152);
static_assert(offsetof(struct svcmap_event, connect_us) == 164);
static_assert(offsetof(struct svcmap_event, outcome) == 168);
static_assert(offsetof(struct svcmap_event, reset_sent) == 170);
static_assert(sizeof(struct svcmap_event) == 176);
static_assert(sizeof(struct svcmap_event) % 8 == 0, "ring buffer records stay 8-aligned");

