// Python's repr() of a float: the shortest string that reads back to the same double, in fixed
// notation for exponents in [-4, 16) and scientific otherwise ("1e-05", "1.5", "1e+16").
// Used wherever schism prints numbers that Python tools (Optuna, jinja2, json) print too.
#ifndef SCHISM_COMMON_PYTHON_FLOAT_H_
#define SCHISM_COMMON_PYTHON_FLOAT_H_

#include <string>

namespace schism::common {

std::string PythonFloatRepr(double value);

}  // namespace schism::common

#endif  // SCHISM_COMMON_PYTHON_FLOAT_H_
