// What to check when a call to the coordinator fails before it reached it: gRPC reports TLS and
// connection failures in its transport's words ("certificate verify failed", "Peer name ... is
// not in peer certificate", "Socket closed"); this names the likely cause in schism's flags.
#ifndef SCHISM_COMMON_CONNECTION_HINT_H_
#define SCHISM_COMMON_CONNECTION_HINT_H_

#include <string>
#include <string_view>

namespace schism::common {

// A hint ("; ...") for a failed call's message, or "" when the message names nothing it knows.
std::string ConnectionHint(std::string_view message);

}  // namespace schism::common

#endif  // SCHISM_COMMON_CONNECTION_HINT_H_
