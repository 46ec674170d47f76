// spec/tpe.md §8.2: Optuna's truncated-normal primitives.
#include "coordinator/tpe/truncnorm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace schism::tpe {
namespace {

void ExpectRel(double got, double want, double rel, const char* what) {
  if (std::isinf(want)) {
    EXPECT_EQ(got, want) << what;
    return;
  }
  EXPECT_NEAR(got, want, rel * std::max(1e-300, std::fabs(want))) << what;
}

TEST(Truncnorm, LogNdtrTable) {
  const std::pair<double, double> table[] = {
      {-40, -804.6084420137538},   {-25, -316.6394080080202},   {-20.5, -214.0667289632638},
      {-20, -203.91715537109727},  {-10, -53.23128515051246},   {-3, -6.607726221510348},
      {-1, -1.8410216450092634},   {0, -0.6931471805599453},    {1, -0.1727537790234499},
      {3, -0.0013508099647482027}, {6, -9.865877009111571e-10}, {6.5, -4.016000583859125e-11},
      {10, -7.619853024160593e-24}};
  for (auto [a, want] : table) ExpectRel(LogNdtr(a), want, 1e-13, "log_ndtr");
}

TEST(Truncnorm, LogGaussMassTable) {
  const double table[][3] = {{-1, 1, -0.38171514630212616},      {0.5, 2, -1.2525070775159308},
                             {-3, -1, -1.8495664205476083},      {-30, -25, -316.6394080080202},
                             {25, 30, -316.6394080080202},       {-0.2, 0.1, -2.1278963696652227},
                             {-2.5, 2.5, -0.012497095063904938}, {-1e-3, 1e-3, -7.133546798293504},
                             {0, 1, -1.0748623268620714},        {-1, 0, -1.0748623268620716},
                             {5, 40, -15.064998393988724}};
  for (const auto& row : table)
    ExpectRel(LogGaussMass(row[0], row[1]), row[2], 1e-13, "log_gauss_mass");
}

TEST(Truncnorm, NdtriExpTable) {
  const std::pair<double, double> table[] = {
      {-1e-10, 6.361340902411736}, {-1e-3, 3.0903807869170454}, {-0.1, 1.3096177994584932},
      {-0.5, 0.27028802073873576}, {std::log(0.5), -0.0},       {-1, -0.3374749637642025},
      {-5, -2.4709386372615887},   {-50, -9.674825283612357},   {-500, -31.48429977562883}};
  for (auto [y, want] : table) {
    const double got = NdtriExp({y})[0];
    if (want == 0) {
      EXPECT_NEAR(got, 0.0, 1e-12);
    } else {
      ExpectRel(got, want, y > -1e-2 ? 1e-10 : 1e-13, "ndtri_exp");
    }
  }
}

TEST(Truncnorm, PpfTable) {
  const double table[][4] = {{0.5, -1, 1, -0.0},
                             {0.1, -1, 1, -0.7490145989695702},
                             {0.9, 0.5, 3, 1.8512240709778356},
                             {0.3, -5, -2, -2.466331845109987},
                             {0.7, 2, 8, 2.4663423746550452},
                             {0.25, -0.5, 10, -0.04663227523039835},
                             {1e-6, -3, 3, -2.9997750456159706},
                             {0.999999, -3, 3, 2.999775045615961},
                             {0, -1, 2, -1.0},
                             {1, -1, 2, 2.0}};
  for (const auto& row : table) {
    const double got = TruncnormPpf({row[0]}, {row[1]}, {row[2]})[0];
    if (row[3] == 0) {
      EXPECT_NEAR(got, 0.0, 1e-12);
    } else {
      ExpectRel(got, row[3], 1e-12, "ppf");
    }
  }
  EXPECT_TRUE(std::isnan(TruncnormPpf({0.5}, {1}, {1})[0]));
}

TEST(Truncnorm, LogPdfTable) {
  // (x; low, high, loc, scale) with a = (low - loc)/scale, b = (high - loc)/scale.
  const double table[][6] = {{4, 0, 10, 2, 2, -1.939294290436493},
                             {0, 0, 10, 2, 2, -1.939294290436493},
                             {10, 0, 10, 5, 10, -2.386607292503096},
                             {0.3, 0, 1, 0.9, 0.05, -69.90019335032173},
                             {-0.1, -0.25, 1.5, 1.2, 0.35, -6.549292498811888}};
  for (const auto& r : table) {
    const double a = (r[1] - r[3]) / r[4], b = (r[2] - r[3]) / r[4];
    ExpectRel(TruncnormLogPdf(r[0], a, b, r[3], r[4]), r[5], 1e-13, "logpdf");
  }
  EXPECT_EQ(TruncnormLogPdf(11, -0.5, 0.5, 5, 10), -std::numeric_limits<double>::infinity());
}

}  // namespace
}  // namespace schism::tpe
