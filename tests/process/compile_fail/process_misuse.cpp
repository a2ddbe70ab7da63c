// Each CASE must fail to compile with the message its test expects
// (tests/CMakeLists.txt): misuse of atask::process() is a compile-time error
// that says what is wrong.
#include <atask/process.hpp>

struct NoJson {
  int x = 0;
};
int takes_no_json(NoJson n) {
  return n.x;
}
NoJson returns_no_json(int x) {
  return {x};
}
int square(int x) {
  return x * x;
}

void use(atask::Supervisor& sv) {
#if CASE == 1
  (void)sv.submit({}, atask::process(&takes_no_json), NoJson{});
#elif CASE == 2
  (void)sv.submit({}, atask::process(&returns_no_json), 1);
#elif CASE == 3
  int captured = 2;
  (void)sv.submit({}, atask::process([captured](int x) { return x * captured; }), 1);
#elif CASE == 4
  (void)sv.submit({}, atask::process(&square), 1, 2);
#else
  (void)sv.submit({}, atask::process(&square), 1);  // compiles: the control case
#endif
}
