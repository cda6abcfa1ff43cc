#include "svcmap/export/json_escape.h"

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace svcmap::exporter {
namespace {

std::string J(std::string_view s) {
  std::string out;
  AppendJsonString(out, s);
  return out;
}

TEST(JsonEscapeTest, PlainAndSpecialCharacters) {
  EXPECT_EQ(J("nginx"), "\"nginx\"");
  EXPECT_EQ(J("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(J(std::string_view("t\x01\n", 3)), "\"t\\u0001\\u000a\"");
  EXPECT_EQ(J("caf\xC3\xA9"), "\"caf\xC3\xA9\"");
}

TEST(JsonEscapeTest, InvalidUtf8BecomesReplacementCharacter) {
  EXPECT_EQ(J("a\xFF" "b"), "\"a\xEF\xBF\xBD" "b\"");
  EXPECT_EQ(J("\xC3"), "\"\xEF\xBF\xBD\"");              // truncated
  EXPECT_EQ(J("\xC0\xAF"), "\"\xEF\xBF\xBD\xEF\xBF\xBD\"");  // overlong
  EXPECT_EQ(J("\xED\xA0\x80"), "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");  // surrogate
}

TEST(JsonEscapeTest, EveryByteStringParsesAsJson) {
  std::string all;
  for (int b = 1; b < 256; ++b) all.push_back(static_cast<char>(b));
  nlohmann::json parsed = nlohmann::json::parse(J(all), nullptr, false);
  ASSERT_FALSE(parsed.is_discarded());
  EXPECT_TRUE(parsed.is_string());
}

}  // namespace
}  // namespace svcmap::exporter
