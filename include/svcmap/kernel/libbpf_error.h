#ifndef SVCMAP_KERNEL_LIBBPF_ERROR_H_
#define SVCMAP_KERNEL_LIBBPF_ERROR_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace svcmap::kernel {

// "EPERM (Operation not permitted)" for 1 or -1.
std::string ErrnoText(int err);

// Converts a libbpf/kernel error, once, into a Status that says what was
// being done: LibbpfError(-EPERM, "attach tp_btf/inet_sock_set_state") ->
// "attach tp_btf/inet_sock_set_state: EPERM (Operation not permitted)".
absl::Status LibbpfError(int err, std::string_view what);

// Routes libbpf's own log lines: dropped unless verbose, so that an expected
// probe failure does not spray the terminal.
void SetLibbpfVerbose(bool verbose);

}  // namespace svcmap::kernel

#endif  // SVCMAP_KERNEL_LIBBPF_ERROR_H_
