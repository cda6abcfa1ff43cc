#include "svcmap/flow/sock.h"

#include <algorithm>

namespace svcmap::flow {

std::string_view EventTypeName(EventType t) {
  switch (t) {
    case EventType::kListen: return "listen";
    case EventType::kConnect: return "connect";
    case EventType::kAccept: return "accept";
    case EventType::kClose: return "close";
    case EventType::kFork: return "fork";
  }
  return "unknown";
}

std::string_view RoleName(Role r) {
  switch (r) {
    case Role::kUnknown: return "unknown";
    case Role::kClient: return "client";
    case Role::kServer: return "server";
    case Role::kListener: return "listener";
  }
  return "unknown";
}

std::string_view OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kNone: return "established";
    case Outcome::kRefused: return "refused";
    case Outcome::kTimedOut: return "timed_out";
    case Outcome::kError: return "error";
  }
  return "error";
}

bool ReconcileBytes(const TcpCounters& tcp, SockRecord& sock) {
  bool corrected = tcp.sent > sock.bytes_sent || tcp.received > sock.bytes_received;
  sock.bytes_sent = std::max(sock.bytes_sent, tcp.sent);
  sock.bytes_received = std::max(sock.bytes_received, tcp.received);
  return corrected;
}

}  // namespace svcmap::flow
