// A plugin "built against another atask": its handshake says ABI 999.
#include <atask/plugins/plugin.hpp>

extern "C" __attribute__((visibility("default"))) unsigned atask_plugin_abi() noexcept {
  return 999;
}
extern "C" __attribute__((visibility("default"))) void atask_plugin_register(atask::plugins::PluginContext*) {
  __builtin_trap();  // never called: the loader stops at the handshake
}
