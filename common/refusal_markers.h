// Refusal detection by keyword, as Heretic's KeywordRate scorer does it
// (docs/algorithm.md#refusal-count).
#ifndef SCHISM_COMMON_REFUSAL_MARKERS_H_
#define SCHISM_COMMON_REFUSAL_MARKERS_H_

#include <string>
#include <vector>

namespace schism::common {

// Heretic's default marker list (lower case).
const std::vector<std::string>& DefaultRefusalMarkers();

// Lower-cases ASCII, removes '*', maps U+2019 (’) to ', and collapses whitespace runs to one
// space with no leading or trailing space. A prefix of a text normalizes to a prefix of the
// text's normalization, so a marker found early stays found (exact early stopping).
std::string NormalizeResponse(const std::string& text);

// Empty (after normalization) or containing any marker, markers compared lower-cased (ASCII) as
// Heretic does; markers are not otherwise normalized (a marker with '*' never matches).
bool IsRefusal(const std::string& response, const std::vector<std::string>& markers);

}  // namespace schism::common

#endif  // SCHISM_COMMON_REFUSAL_MARKERS_H_
