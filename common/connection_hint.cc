#include "common/connection_hint.h"

namespace schism::common {

std::string ConnectionHint(std::string_view message) {
  auto has = [&](std::string_view text) { return message.find(text) != std::string_view::npos; };
  if (has("certificate verify failed")) {
    return "; the coordinator's certificate is not signed by the CA this side trusts (--tls-ca), "
           "or it has expired";
  }
  if (has("Peer name") && has("is not in peer certificate")) {
    return "; the coordinator's certificate was issued for another name: connect with a name it "
           "lists (--coordinator HOST:PORT)";
  }
  if (has("wrong version number")) {
    return "; the coordinator does not speak TLS: connect without --tls-ca, or start it with "
           "--tls-cert and --tls-key";
  }
  if (has("Connection refused")) return "; nothing listens at that address: is the coordinator up?";
  if (has("Socket closed") || has("Connection reset")) {
    return "; the coordinator closed the connection: a TLS coordinator needs --tls-ca (and, with "
           "mutual TLS, --tls-cert/--tls-key signed by its CA); a plaintext one needs neither";
  }
  return "";
}

}  // namespace schism::common
