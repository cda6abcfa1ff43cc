// What this binary is: the release it carries and the commit it was built
// from, for `svcmap --version` and the agent's svcmap_build_info series.
#pragma once

#include <string_view>

namespace svcmap::base {

// The project's version, from CMakeLists.txt's project().
std::string_view Version();

// The git commit (12 hex digits), with "-dirty" when the tree had
// uncommitted changes; "unknown" when built outside a git checkout.
std::string_view Revision();

}  // namespace svcmap::base
