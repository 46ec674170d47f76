// Random ids of studies ("s..."), workers ("w..."), leases ("l...") and exports ("x..."): 64 bits
// from a process-wide generator seeded from the OS, so two coordinators never share one.
#ifndef SCHISM_COORDINATOR_MANAGER_IDS_H_
#define SCHISM_COORDINATOR_MANAGER_IDS_H_

#include <string>

namespace schism::coordinator {

std::string RandomId(const char* prefix);

}  // namespace schism::coordinator

#endif  // SCHISM_COORDINATOR_MANAGER_IDS_H_
