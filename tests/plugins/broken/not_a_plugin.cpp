// A shared library that is not an atask plugin (no handshake).
extern "C" int some_other_library_function() {
  return 4;
}
