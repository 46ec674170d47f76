// Sizes as Heretic's max_shard_size and `--max-shard-size` spell them (the common spellings are
// in ExportCommand.ByteSizesSpellLikeHuggingFace).
#include "common/byte_size.h"

#include <gtest/gtest.h>

#include <string>

namespace schism::common {
namespace {

// Found by study_config_fuzz (max_shard_size = "1999...9"): beyond 2^64 the conversion was
// undefined behaviour; now it is an error that says so.
TEST(ByteSize, SizesBeyondSixtyFourBitsAreRefusedNotWrapped) {
  for (const std::string& text :
       {std::string(57, '9'), std::string("18446744073709551616"), std::string("20000000TB"),
        std::string("1") + std::string(300, '0') + "TiB"}) {
    auto size = ParseByteSize(text);
    ASSERT_FALSE(size.ok()) << text << " -> " << *size;
    EXPECT_NE(size.status().message().find("too large"), std::string::npos) << size.status();
  }
  EXPECT_EQ(*ParseByteSize("16TiB"), 16ull << 40);
  EXPECT_EQ(*ParseByteSize("18446744073709549568"),
            18446744073709549568ull);  // largest double < 2^64
}

TEST(ByteSize, LessThanOneByteIsRefused) {
  auto tiny = ParseByteSize("0.4B");
  ASSERT_FALSE(tiny.ok());
  EXPECT_NE(tiny.status().message().find("less than one byte"), std::string::npos);
  EXPECT_EQ(*ParseByteSize("1.5KB"), 1500u);
}

}  // namespace
}  // namespace schism::common
