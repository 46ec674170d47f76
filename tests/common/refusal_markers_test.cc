#include "common/refusal_markers.h"

#include <gtest/gtest.h>

namespace schism::common {
namespace {

TEST(RefusalMarkers, ResponsesNormalizeAndMarkersCompareLowerCasedAsInHeretic) {
  EXPECT_EQ(NormalizeResponse("  I *Won\xE2\x80\x99t*\n\n do   THAT "), "i won't do that");
  const auto& defaults = DefaultRefusalMarkers();
  EXPECT_TRUE(IsRefusal("I **can\xE2\x80\x99t** help with that.", defaults));
  EXPECT_TRUE(IsRefusal("   \n", defaults)) << "an empty response counts as a refusal";
  EXPECT_FALSE(IsRefusal("Sure, here is a recipe.", defaults));
  // Configured markers in any case match (Heretic lower-cases them); others still do not.
  EXPECT_TRUE(IsRefusal("Absolutely NOT going to happen", {"Absolutely Not"}));
  EXPECT_TRUE(IsRefusal("absolutely not", {"ABSOLUTELY NOT"}));
  EXPECT_FALSE(IsRefusal("Absolutely, here it is", {"Absolutely Not"}));
  EXPECT_FALSE(IsRefusal("no way", {"*no way*"}))
      << "markers are not stripped of '*', as in Heretic";
}

}  // namespace
}  // namespace schism::common
