#ifndef SVCMAP_EXPORT_JSON_ESCAPE_H_
#define SVCMAP_EXPORT_JSON_ESCAPE_H_

#include <string>
#include <string_view>

namespace svcmap::exporter {

// Appends `s` as a JSON string literal (with quotes). Process names are
// arbitrary bytes: control characters are escaped, and bytes that are not
// valid UTF-8 become U+FFFD, so the output is always valid JSON.
void AppendJsonString(std::string& out, std::string_view s);

// `s` with every byte that is not part of valid UTF-8 replaced by U+FFFD:
// Prometheus label values and protobuf strings must be UTF-8.
std::string ToValidUtf8(std::string_view s);

}  // namespace svcmap::exporter

#endif  // SVCMAP_EXPORT_JSON_ESCAPE_H_
