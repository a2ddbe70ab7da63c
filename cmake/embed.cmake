# Turns a file into a C++ source defining
#   extern const char atask_dashboard_html[]; extern const std::size_t atask_dashboard_html_size;
# Usage: cmake -DIN=page.html -DOUT=page.cpp -P embed.cmake
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR size "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," body "${hex}")
file(WRITE ${OUT} "// Generated from ${IN} by cmake/embed.cmake. Do not edit.\n#include <cstddef>\nnamespace atask::http::detail {\nextern const char dashboard_html[] = {${body} 0};\nextern const std::size_t dashboard_html_size = ${size};\n}  // namespace atask::http::detail\n")
