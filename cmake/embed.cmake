# Turns a file, or several put together in order, into a C++ source defining
#   extern const char NS::NAME[]; extern const std::size_t NS::NAME_size;
# (NUL-terminated; the size leaves the NUL out).
# Usage: cmake -DIN=page.html -DOUT=page.cpp [-DNS=atask::http::detail] [-DNAME=dashboard_html] -P embed.cmake
#        cmake "-DIN=a.lua|b.lua" ...   (several files, joined with '|')
if(NOT NS)
  set(NS atask::http::detail)
endif()
if(NOT NAME)
  set(NAME dashboard_html)
endif()
string(REPLACE "|" ";" files "${IN}")
set(hex "")
foreach(f IN LISTS files)
  file(READ ${f} part HEX)
  string(APPEND hex "${part}")
endforeach()
string(LENGTH "${hex}" n)
math(EXPR size "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," body "${hex}")
list(JOIN files ", " shown)
file(WRITE ${OUT} "// Generated from ${shown} by cmake/embed.cmake. Do not edit.\n#include <cstddef>\nnamespace ${NS} {\nextern const char ${NAME}[] = {${body} 0};\nextern const std::size_t ${NAME}_size = ${size};\n}  // namespace ${NS}\n")
